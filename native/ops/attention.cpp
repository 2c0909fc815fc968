// attention: causal grouped-query attention over KV cells, then its backward on packed sequences.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "ops/op_util.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

// dst[hd] = head `kh`'s part of cell c of a cache row array (f16 converted exactly, or f32 copied).
static void cell_head_row(const void* cells, bool f16, int64_t c, int64_t kv_width, int64_t kh, int64_t hd, float* dst) {
  if (f16)
    dequantize_row(GgmlType::F16, static_cast<const uint16_t*>(cells) + c * kv_width + kh * hd, dst, hd);
  else
    std::memcpy(dst, static_cast<const float*>(cells) + c * kv_width + kh * hd, sizeof(float) * hd);
}

void attention_forward(float* out, const float* q, const AttentionRows& kv, bool kv_f16, int64_t n, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool) {
  const int64_t group = n_head / n_head_kv;
  const int64_t kv_width = n_head_kv * hd;
  // Work items: (block of up to kBlock consecutive query rows over the same cells, kv head). The
  // cells' keys and values are copied (an f16 cache's converted exactly) once per item and serve the
  // block's rows and the kv head's `group` query heads, through the matmul kernels.
  constexpr int64_t kBlock = 32;
  constexpr int64_t kGemmRows = 16;  // fewer query rows x heads per item: the direct path
  std::vector<int64_t> block_start;
  for (int64_t t = 0; t < n; ++t)
    if (block_start.empty() || t - block_start.back() == kBlock || kv.k_cells[t] != kv.k_cells[t - 1] ||
        kv.v_cells[t] != kv.v_cells[t - 1] || kv.cell_pos[t] != kv.cell_pos[t - 1])
      block_start.push_back(t);
  const int64_t n_blocks = static_cast<int64_t>(block_start.size());
  block_start.push_back(n);
  // Later blocks see more cells: strided_for hands them out round-robin, longest first.
  op_util::strided_for(pool, n_blocks * n_head_kv, [&](int64_t u) {
    const int64_t item = n_blocks * n_head_kv - 1 - u;
    const int64_t b = item / n_head_kv, kh = item % n_head_kv;
    const int64_t t0 = block_start[b], t1 = block_start[b + 1];
    // Cells are sorted by position, so each row's causal bound is a prefix.
    std::vector<int64_t> ncs(static_cast<size_t>(t1 - t0));
    int64_t nc_max = 0;
    for (int64_t t = t0; t < t1; ++t) {
      const int32_t* cpos = kv.cell_pos[t];
      int64_t nc = kv.n_cells[t];
      while (nc > 0 && cpos[nc - 1] > kv.qpos[t]) --nc;
      ncs[t - t0] = nc;
      nc_max = std::max(nc_max, nc);
    }
    thread_local std::vector<float> qb, kb, vt, sc, ob;
    const int64_t m_rows = (t1 - t0) * group;
    if (m_rows < kGemmRows) {
      // Few queries (decode): dot products and axpys on the cells in place, an f16 cache's rows
      // converted once per item; copying K and V for two GEMMs would cost more than it saves.
      const float* kbase = static_cast<const float*>(kv.k_cells[t0]) + kh * hd;
      const float* vbase = static_cast<const float*>(kv.v_cells[t0]) + kh * hd;
      int64_t stride = kv_width;
      if (kv_f16) {
        kb.resize(static_cast<size_t>(nc_max * hd));
        vt.resize(static_cast<size_t>(nc_max * hd));
        for (int64_t c = 0; c < nc_max; ++c) {
          cell_head_row(kv.k_cells[t0], true, c, kv_width, kh, hd, kb.data() + c * hd);
          cell_head_row(kv.v_cells[t0], true, c, kv_width, kh, hd, vt.data() + c * hd);
        }
        kbase = kb.data(), vbase = vt.data(), stride = hd;
      }
      sc.resize(static_cast<size_t>(nc_max));
      ob.resize(static_cast<size_t>(hd));
      // Plain pointers: in a shared library every thread_local access in a loop around a call
      // costs a __tls_get_addr.
      float* const scores = sc.data();
      float* const acc = ob.data();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t nc = ncs[t - t0];
        for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
          const float* qv = q + t * n_head * hd + h * hd;
          float mx = -INFINITY;
          for (int64_t c = 0; c < nc; ++c) mx = std::max(mx, scores[c] = dot_f32(qv, kbase + c * stride, hd) * scale);
          const double sum = exp_sub_sum(scores, nc, mx);
          const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
          std::fill(acc, acc + hd, 0.0f);
          for (int64_t c = 0; c < nc; ++c) axpy_f32(acc, scores[c], vbase + c * stride, hd);
          float* o = out + t * n_head * hd + h * hd;
          for (int64_t i = 0; i < hd; ++i) o[i] = acc[i] * inv;
        }
      }
      return;
    }
    // Otherwise the item as two small GEMMs on this thread: S = Qb K^T, then O = P V, with Qb the
    // block's rows x the kv head's query heads (m = row * group + head) and K, V^T packed contiguous.
    thread_local ThreadPool solo(1);
    qb.resize(static_cast<size_t>(m_rows * hd));
    kb.resize(static_cast<size_t>(nc_max * hd));
    vt.resize(static_cast<size_t>(hd * nc_max));
    sc.resize(static_cast<size_t>(m_rows * nc_max));
    ob.resize(static_cast<size_t>(m_rows * hd));
    float* const qp = qb.data();  // plain pointers, as above
    float* const kp = kb.data();
    float* const vtp = vt.data();
    float* const sp = sc.data();
    float* const op = ob.data();
    for (int64_t t = t0; t < t1; ++t)
      std::memcpy(qp + (t - t0) * group * hd, q + t * n_head * hd + kh * group * hd, sizeof(float) * group * hd);
    for (int64_t c = 0; c < nc_max; ++c) {
      float* vr = op;  // scratch row for the transpose below
      cell_head_row(kv.k_cells[t0], kv_f16, c, kv_width, kh, hd, kp + c * hd);
      cell_head_row(kv.v_cells[t0], kv_f16, c, kv_width, kh, hd, vr);
      for (int64_t i = 0; i < hd; ++i) vtp[i * nc_max + c] = vr[i];
    }
    if (nc_max > 0) matmul(GgmlType::F32, kp, nc_max, hd, qp, m_rows, sp, nc_max, solo);
    std::vector<float> inv(static_cast<size_t>(m_rows));
    for (int64_t m = 0; m < m_rows; ++m) {
      const int64_t nc = ncs[m / group];
      float* srow = sp + m * nc_max;
      float mx = -INFINITY;
      for (int64_t c = 0; c < nc; ++c) mx = std::max(mx, srow[c] *= scale);
      const double sum = exp_sub_sum(srow, nc, mx);
      std::fill(srow + nc, srow + nc_max, 0.0f);  // past the row's causal bound
      inv[m] = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
    }
    if (nc_max > 0)
      matmul(GgmlType::F32, vtp, hd, nc_max, sp, m_rows, op, hd, solo);
    else
      std::fill(op, op + m_rows * hd, 0.0f);
    for (int64_t m = 0; m < m_rows; ++m) {
      float* o = out + (t0 + m / group) * n_head * hd + (kh * group + m % group) * hd;
      for (int64_t i = 0; i < hd; ++i) o[i] = op[m * hd + i] * inv[m];
    }
  });
}

// attention. Forward per (row t, head h): s_c = scale q.k_c, P = softmax(s), o = sum_c P_c v_c.
// Backward: dv_c += P_c do, dP_c = do.v_c, dS_c = P_c (dP_c - sum_c' P_c' dP_c'), dq += scale sum_c dS_c k_c,
// dk_c += scale dS_c q.
// Pass 1 (per query row and head): the softmax statistics, D = sum P dP, and dq.
// Pass 2 (per key row and kv head): dk and dv, summing over the queries that see the key; the
// scores are recomputed with the same dot_f32() as pass 1, so P agrees exactly between passes.
// Splitting by key in pass 2 means no two threads ever add into the same dk/dv row.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const int64_t* seq_start, const int32_t* pos, int64_t n, int64_t n_head,
                        int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool, int64_t q0) {
  const int64_t group = n_head / n_head_kv;
  const int64_t q_w = n_head * hd, kv_w = n_head_kv * hd;
  const int64_t nq = n - q0;
  // Row stats per (query row t - q0, h): max score, 1/sum, D.
  std::vector<float> mx(static_cast<size_t>(nq * n_head)), inv(mx.size()), dsum(mx.size());
  // seq_end[t]: one past the last row of t's sequence (keys are seen by the rows after them up to there).
  std::vector<int64_t> seq_end(static_cast<size_t>(n));
  for (int64_t t = n - 1; t >= 0; --t)
    seq_end[t] = (t + 1 < n && seq_start[t + 1] == seq_start[t]) ? seq_end[t + 1] : t + 1;

  op_util::strided_for(pool, nq * n_head, [&](int64_t u) {
    // Reverse order: the longest rows (largest t) start first.
    const int64_t r = nq * n_head - 1 - u;
    const int64_t t = q0 + r / n_head, h = r % n_head, kh = h / group;
    const float* qv = q + (t - q0) * q_w + h * hd;
    const float* g = dout + (t - q0) * q_w + h * hd;
    const int64_t c0 = seq_start[t], nc = t - c0 + 1;
    thread_local std::vector<float> p, dp;
    p.assign(static_cast<size_t>(nc), 0.0f);
    dp.assign(static_cast<size_t>(nc), 0.0f);
    float m = -INFINITY;
    for (int64_t c = 0; c < nc; ++c) {
      if (pos[c0 + c] > pos[t]) continue;
      p[c] = scale * dot_f32(qv, k + (c0 + c) * kv_w + kh * hd, hd);
      m = std::max(m, p[c]);
    }
    double sum = 0;
    for (int64_t c = 0; c < nc; ++c) {
      float e = pos[c0 + c] > pos[t] ? 0.0f : std::exp(p[c] - m);
      p[c] = e;
      sum += e;
    }
    const float iv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
    double dd = 0;
    for (int64_t c = 0; c < nc; ++c) {
      p[c] *= iv;
      if (p[c] == 0.0f) continue;
      dp[c] = dot_f32(g, v + (c0 + c) * kv_w + kh * hd, hd);
      dd += static_cast<double>(p[c]) * dp[c];
    }
    const float D = static_cast<float>(dd);
    float* dqv = dq + (t - q0) * q_w + h * hd;
    for (int64_t c = 0; c < nc; ++c) {
      if (p[c] == 0.0f) continue;
      axpy_f32(dqv, scale * p[c] * (dp[c] - D), k + (c0 + c) * kv_w + kh * hd, hd);
    }
    mx[r] = m;
    inv[r] = iv;
    dsum[r] = D;
  });

  op_util::strided_for(pool, n * n_head_kv, [&](int64_t u) {
    const int64_t kh = u % n_head_kv, c = u / n_head_kv;
    const float* kr = k + c * kv_w + kh * hd;
    const float* vr = v + c * kv_w + kh * hd;
    thread_local std::vector<float> gk, gv;
    gk.assign(static_cast<size_t>(hd), 0.0f);
    gv.assign(static_cast<size_t>(hd), 0.0f);
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
      for (int64_t t = std::max(c, q0); t < seq_end[c]; ++t) {
        if (pos[c] > pos[t]) continue;
        const int64_t r = (t - q0) * n_head + h;
        const float* qv = q + (t - q0) * q_w + h * hd;
        const float* g = dout + (t - q0) * q_w + h * hd;
        float pc = std::exp(scale * dot_f32(qv, kr, hd) - mx[r]) * inv[r];
        if (pc == 0.0f) continue;
        float ds = pc * (dot_f32(g, vr, hd) - dsum[r]);
        axpy_f32(gk.data(), scale * ds, qv, hd);
        axpy_f32(gv.data(), pc, g, hd);
      }
    }
    axpy_f32(dk + c * kv_w + kh * hd, 1.0f, gk.data(), hd);
    axpy_f32(dv + c * kv_w + kh * hd, 1.0f, gv.data(), hd);
  });
}

}  // namespace lro
