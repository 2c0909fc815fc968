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
// Work items: (sequence, kv head), so that no two threads add into the same dk / dv rows. An item
// takes its query rows in blocks of kBlock; per block, with Qb / Gb the block's queries / output
// gradients for the kv head's `group` query heads (m = row * group + head) and K, V the sequence's
// keys up to the block's last row, five GEMMs on the worker's thread:
//   S = Qb K^T, P = softmax(scale S) (causal),  dP = Gb V^T,  dS = P (dP - D) with D = sum_c P dP a row,
//   dQb = dS K,  dK += dS^T Qb,  dV += P^T Gb   (scale applied to dQb, dK).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const int64_t* seq_start, const int32_t* pos, int64_t n, int64_t n_head,
                        int64_t n_head_kv, int64_t hd, float scale, ThreadPool& pool, int64_t q0) {
  const int64_t group = n_head / n_head_kv;
  const int64_t q_w = n_head * hd, kv_w = n_head_kv * hd;
  constexpr int64_t kBlock = 64;
  // Sequences with query rows: [first row, end).
  std::vector<std::pair<int64_t, int64_t>> seqs;
  for (int64_t t = std::max<int64_t>(q0, 0); t < n; ++t)
    if (seqs.empty() || seq_start[t] != seqs.back().first) seqs.push_back({seq_start[t], t + 1});
    else seqs.back().second = t + 1;
  const int64_t n_items = static_cast<int64_t>(seqs.size()) * n_head_kv;
  op_util::strided_for(pool, n_items, [&](int64_t u) {
    const int64_t si = u / n_head_kv, kh = u % n_head_kv;
    const int64_t s0 = seqs[si].first, e = seqs[si].second, qa = std::max(q0, s0);
    thread_local ThreadPool solo(1);
    thread_local std::vector<float> buf;
    const int64_t nk_max = e - s0, m_max = std::min(kBlock, e - qa) * group;
    // Qb, Gb [m, hd]; QbT, GbT [hd, m]; K, V [nk, hd]; KT [hd, nk]; S, dP [m, nk]; ST [nk, m]; dQb [m, hd]; dKb, dVb [nk, hd]
    const int64_t sizes[] = {m_max * hd, m_max * hd, hd * m_max, hd * m_max, nk_max * hd, nk_max * hd, hd * nk_max,
                             m_max * nk_max, m_max * nk_max, nk_max * m_max, m_max * hd, nk_max * hd, nk_max * hd};
    int64_t total = 0;
    for (int64_t z : sizes) total += z;
    if (static_cast<int64_t>(buf.size()) < total) buf.resize(static_cast<size_t>(total));
    float* p = buf.data();  // plain pointers: a thread_local read in a loop costs a __tls_get_addr
    float* ptr[13];
    for (int i = 0; i < 13; ++i) ptr[i] = p, p += sizes[i];
    float *Qb = ptr[0], *Gb = ptr[1], *QbT = ptr[2], *GbT = ptr[3], *K = ptr[4], *V = ptr[5], *KT = ptr[6];
    float *S = ptr[7], *dP = ptr[8], *ST = ptr[9], *dQb = ptr[10], *dKb = ptr[11], *dVb = ptr[12];
    int64_t nk_done = 0;  // keys copied so far (K, V, KT grow with the blocks)
    std::fill(dKb, dKb + nk_max * hd, 0.0f);
    std::fill(dVb, dVb + nk_max * hd, 0.0f);
    for (int64_t ta = qa; ta < e; ta += kBlock) {
      const int64_t tb = std::min(e, ta + kBlock), m = (tb - ta) * group, nk = tb - s0;
      for (int64_t c = nk_done; c < nk; ++c) {
        std::memcpy(K + c * hd, k + (s0 + c) * kv_w + kh * hd, sizeof(float) * hd);
        std::memcpy(V + c * hd, v + (s0 + c) * kv_w + kh * hd, sizeof(float) * hd);
      }
      nk_done = nk;
      // KT with this block's key count as its row stride
      for (int64_t i = 0; i < hd; ++i)
        for (int64_t c = 0; c < nk; ++c) KT[i * nk + c] = K[c * hd + i];
      for (int64_t t = ta; t < tb; ++t) {
        std::memcpy(Qb + (t - ta) * group * hd, q + (t - q0) * q_w + kh * group * hd, sizeof(float) * group * hd);
        std::memcpy(Gb + (t - ta) * group * hd, dout + (t - q0) * q_w + kh * group * hd, sizeof(float) * group * hd);
      }
      matmul(GgmlType::F32, K, nk, hd, Qb, m, S, nk, solo);
      matmul(GgmlType::F32, V, nk, hd, Gb, m, dP, nk, solo);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t t = ta + r / group;
        float* srow = S + r * nk;
        float* drow = dP + r * nk;
        float mx = -INFINITY;
        for (int64_t c = 0; c <= t - s0; ++c) {
          if (pos[s0 + c] > pos[t]) {
            srow[c] = -INFINITY;
            continue;
          }
          mx = std::max(mx, srow[c] *= scale);
        }
        std::fill(srow + (t - s0 + 1), srow + nk, -INFINITY);
        double sum = 0;
        for (int64_t c = 0; c < nk; ++c) sum += (srow[c] = srow[c] == -INFINITY ? 0.0f : std::exp(srow[c] - mx));
        const float iv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
        double dd = 0;
        for (int64_t c = 0; c < nk; ++c) dd += static_cast<double>(srow[c] *= iv) * drow[c];
        const float Dr = static_cast<float>(dd);
        for (int64_t c = 0; c < nk; ++c) drow[c] = srow[c] == 0.0f ? 0.0f : srow[c] * (drow[c] - Dr);  // dS
      }
      // dQb = dS K (K^T as the weights)
      matmul(GgmlType::F32, KT, hd, nk, dP, m, dQb, hd, solo);
      for (int64_t r = 0; r < m; ++r) {
        float* dst = dq + (ta + r / group - q0) * q_w + (kh * group + r % group) * hd;
        axpy_f32(dst, scale, dQb + r * hd, hd);
      }
      // dK += dS^T Qb, dV += P^T Gb: Qb^T, Gb^T as the weights, dS^T, P^T as the tokens
      for (int64_t r = 0; r < m; ++r)
        for (int64_t i = 0; i < hd; ++i) {
          QbT[i * m + r] = Qb[r * hd + i];
          GbT[i * m + r] = Gb[r * hd + i];
        }
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < nk; ++c) ST[c * m + r] = dP[r * nk + c];
      matmul(GgmlType::F32, QbT, hd, m, ST, nk, dKb, hd, solo, true);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < nk; ++c) ST[c * m + r] = S[r * nk + c];
      matmul(GgmlType::F32, GbT, hd, m, ST, nk, dVb, hd, solo, true);
    }
    for (int64_t c = 0; c < nk_max; ++c) {
      axpy_f32(dk + (s0 + c) * kv_w + kh * hd, scale, dKb + c * hd, hd);
      axpy_f32(dv + (s0 + c) * kv_w + kh * hd, 1.0f, dVb + c * hd, hd);
    }
  });
}

}  // namespace lro
