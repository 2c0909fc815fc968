#include "ops/ops.h"


#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

void rmsnorm_forward(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps, ThreadPool& pool) {
  pool.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * d;
      float* o = out + t * d;
      // Sum in double: the residual stream reaches |x| ~ 40 and the mean feeds every later op.
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
      for (int64_t i = 0; i < d; ++i) o[i] = xr[i] * scale * weight[i];
    }
  });
}

void embedding_forward(float* out, const int32_t* ids, int64_t n, GgmlType type, const void* table, int64_t d) {
  size_t rs = row_size(type, d);
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(type, static_cast<const uint8_t*>(table) + rs * static_cast<size_t>(ids[t]), out + t * d, d);
}

void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  float base, const float* freq_factors) {
  std::vector<float> cs(static_cast<size_t>(n_rot));  // cos, sin per pair
  for (int64_t t = 0; t < n; ++t) {
    rope_cos_sin(cs.data(), pos[t], n_rot, base, freq_factors);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s;
        v[2 * i + 1] = x0 * s + x1 * c;
      }
    }
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, int64_t d) {
  int64_t total = n * d;
  for (int64_t i = 0; i < total; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void residual_forward(float* x, const float* y, int64_t n, int64_t d) {
  int64_t total = n * d;
  for (int64_t i = 0; i < total; ++i) x[i] += y[i];
}


void attention_forward(float* out, const float* q, const AttentionRows& kv, bool kv_f16, int64_t n, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool) {
  const int64_t group = n_head / n_head_kv;
  const int64_t kv_width = n_head_kv * hd;
  pool.parallel_for(n * n_head, 1, [&](int, int64_t r0, int64_t r1) {
    std::vector<float> scores, row(static_cast<size_t>(hd)), acc(static_cast<size_t>(hd));
    for (int64_t r = r0; r < r1; ++r) {
      int64_t t = r / n_head, h = r % n_head, kh = h / group;
      const float* qv = q + t * n_head * hd + h * hd;
      // Cells are sorted by position, so the causal bound is a prefix.
      const int32_t* cpos = kv.cell_pos[t];
      int64_t nc = kv.n_cells[t];
      while (nc > 0 && cpos[nc - 1] > kv.qpos[t]) --nc;
      scores.resize(static_cast<size_t>(nc));
      float mx = -INFINITY;
      for (int64_t c = 0; c < nc; ++c) {
        const float* kr;
        if (kv_f16) {
          const uint16_t* k16 = static_cast<const uint16_t*>(kv.k_cells[t]) + c * kv_width + kh * hd;
          for (int64_t i = 0; i < hd; ++i) row[i] = fp16_to_fp32(k16[i]);
          kr = row.data();
        } else {
          kr = static_cast<const float*>(kv.k_cells[t]) + c * kv_width + kh * hd;
        }
        float s = dot_f32(qv, kr, hd) * scale;
        scores[c] = s;
        mx = std::max(mx, s);
      }
      double sum = 0;
      for (int64_t c = 0; c < nc; ++c) {
        float e = std::exp(scores[c] - mx);
        scores[c] = e;
        sum += e;
      }
      float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t c = 0; c < nc; ++c) {
        const float* vr;
        if (kv_f16) {
          const uint16_t* v16 = static_cast<const uint16_t*>(kv.v_cells[t]) + c * kv_width + kh * hd;
          for (int64_t i = 0; i < hd; ++i) row[i] = fp16_to_fp32(v16[i]);
          vr = row.data();
        } else {
          vr = static_cast<const float*>(kv.v_cells[t]) + c * kv_width + kh * hd;
        }
        axpy_f32(acc.data(), scores[c], vr, hd);
      }
      float* o = out + t * n_head * hd + h * hd;
      for (int64_t i = 0; i < hd; ++i) o[i] = acc[i] * inv;
    }
  });
}

}  // namespace lro
