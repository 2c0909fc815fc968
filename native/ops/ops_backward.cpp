// Backward passes of the ops in ops.h (training). Each *_backward sits under the same name as its
// forward; shapes are repeated beside each function. Gradients accumulate (+=) unless noted, so
// that residual streams and shared inputs (q, k, v all read the same normed x) sum naturally.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

namespace {

// Work items of uneven cost (causal attention rows): thread i takes items i, i+T, i+2T, ... so every
// thread gets a similar mix of short and long rows. Each item is independent: deterministic.
template <typename F>
void strided_for(ThreadPool& pool, int64_t n_items, F&& fn) {
  if (n_items <= 0) return;
  if (pool.size() <= 1 || n_items == 1) {
    for (int64_t u = 0; u < n_items; ++u) fn(u);
    return;
  }
  pool.run_on_all([&](int ti, int nt) {
    for (int64_t u = ti; u < n_items; u += nt) fn(u);
  });
}

// dst[cols, rows] = src[rows, cols]^T, in 32 x 32 tiles (one side of a tile is always a short stride).
void transpose(float* dst, const float* src, int64_t rows, int64_t cols, ThreadPool& pool) {
  const int64_t B = 32, nb = (cols + B - 1) / B;
  auto work = [&](int, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * B, c1 = std::min(cols, c0 + B);
      for (int64_t r0 = 0; r0 < rows; r0 += B) {
        const int64_t r1 = std::min(rows, r0 + B);
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
      }
    }
  };
  if (rows * cols < (int64_t(1) << 16)) work(0, 0, nb);
  else pool.parallel_for(nb, 1, work);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// rmsnorm: y = x * r * w, r = (mean(x^2) + eps)^-1/2.
// dx_i = r * w_i * g_i - x_i * r^3 / d * sum_j g_j w_j x_j      (g = dout)
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight, int64_t n,
                      int64_t d, float eps, ThreadPool& pool) {
  // dweight sums over rows: each thread keeps its own, added in thread order afterwards.
  std::vector<std::vector<double>> dw_part(dweight ? static_cast<size_t>(pool.size()) : 0);
  pool.parallel_for(n, 1, [&](int ti, int64_t t0, int64_t t1) {
    std::vector<double>* dw = nullptr;
    if (dweight) {
      dw = &dw_part[static_cast<size_t>(ti)];
      dw->assign(static_cast<size_t>(d), 0.0);
    }
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * d;
      const float* g = dout + t * d;
      float* o = dx + t * d;
      double ss = 0, gwx = 0;
      for (int64_t i = 0; i < d; ++i) {
        ss += static_cast<double>(xr[i]) * xr[i];
        gwx += static_cast<double>(g[i]) * weight[i] * xr[i];
      }
      const double r = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
      const double c = r * r * r * gwx / static_cast<double>(d);
      for (int64_t i = 0; i < d; ++i) o[i] += static_cast<float>(r * weight[i] * g[i] - c * xr[i]);
      if (dw)
        for (int64_t i = 0; i < d; ++i) (*dw)[static_cast<size_t>(i)] += static_cast<double>(g[i]) * xr[i] * r;
    }
  });
  if (dweight)
    for (const auto& part : dw_part)
      for (size_t i = 0; i < part.size(); ++i) dweight[i] += static_cast<float>(part[i]);
}

// ---------------------------------------------------------------------------------------------
// embedding: dtable[vocab, d] += dout[n, d] at rows ids[t]
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t d) {
  for (int64_t t = 0; t < n; ++t) axpy_f32(dtable + static_cast<int64_t>(ids[t]) * d, 1.0f, dout + t * d, d);
}

// ---------------------------------------------------------------------------------------------
// rope: forward rotates each pair by +theta; its Jacobian is that rotation, so the gradient goes
// back through R^T = R(-theta). The angles must be computed exactly as rope_forward does.
void rope_backward(float* dx, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                   float base, const float* freq_factors) {
  std::vector<float> cs(static_cast<size_t>(n_rot));  // cos, sin per pair
  for (int64_t t = 0; t < n; ++t) {
    rope_cos_sin(cs.data(), pos[t], n_rot, base, freq_factors);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* g = dx + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float g0 = g[2 * i], g1 = g[2 * i + 1];
        g[2 * i] = g0 * c + g1 * s;
        g[2 * i + 1] = -g0 * s + g1 * c;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// swiglu: out = silu(g) * u, silu(g) = g * sigmoid(g), silu'(g) = s * (1 + g * (1 - s)).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     int64_t d) {
  const int64_t total = n * d;
  for (int64_t i = 0; i < total; ++i) {
    float g = gate[i];
    float s = 1.0f / (1.0f + std::exp(-g));
    dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] += dout[i] * g * s;
  }
}

void residual_backward(float* dy, const float* dout, int64_t n, int64_t d) { axpy_f32(dy, 1.0f, dout, n * d); }

// ---------------------------------------------------------------------------------------------
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

  strided_for(pool, nq * n_head, [&](int64_t u) {
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

  strided_for(pool, n * n_head_kv, [&](int64_t u) {
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

// ---------------------------------------------------------------------------------------------
// matmul backward, input side: dx[n, n_in] += dy[n, n_out] W[n_out, n_in].
// Per block of rows o0..o0+R: dequantise the rows, transposed, into WT[n_in, R], and let the
// forward kernel do dx += dy[:, block] WT^T (a plain f32 matmul with n_in "rows" and R inputs).
// Blocks run one after another, so the sum over o has a fixed order whatever the thread count.
void matmul_backward(float* dx, const float* dy, GgmlType wtype, const void* w, int64_t n_out, int64_t n_in, int64_t n,
                     ThreadPool& pool, int64_t block_rows) {
  if (n <= 0 || n_out <= 0 || n_in <= 0) return;
  // A few rows of an f32 W (a latent step is one row): transposing all of W would cost more than the
  // product itself, so each row of dx sums the rows of W directly, threads owning column slices.
  if (wtype == GgmlType::F32 && n <= 4) {
    const float* W = static_cast<const float*>(w);
    const int64_t slice = 64;
    pool.parallel_for((n_in + slice - 1) / slice, 1, [&](int, int64_t c0, int64_t c1) {
      const int64_t i0 = c0 * slice, i1 = std::min(n_in, c1 * slice);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t o = 0; o < n_out; ++o) {
          const float g = dy[t * n_out + o];
          if (g != 0.0f) axpy_f32(dx + t * n_in + i0, g, W + o * n_in + i0, i1 - i0);
        }
    });
    return;
  }
  const size_t rs = row_size(wtype, n_in);
  int64_t R = block_rows > 0 ? block_rows : std::max<int64_t>(16, (int64_t(1) << 20) / n_in / 16 * 16);
  R = std::min(R, n_out);
  thread_local std::vector<float> wt, dyb;
  wt.resize(static_cast<size_t>(R * n_in));
  dyb.resize(static_cast<size_t>(n * R));
  const auto* wb = static_cast<const uint8_t*>(w);
  float* wtp = wt.data();
  // Groups of 16 rows: dequantised into a small per-thread buffer, then written out transposed so that
  // each store is 16 consecutive floats (a cache line) of wt.
  const int64_t G = 16;
  for (int64_t o0 = 0; o0 < n_out; o0 += R) {
    const int64_t rb = std::min(R, n_out - o0);
    pool.parallel_for((rb + G - 1) / G, 1, [&](int, int64_t g0, int64_t g1) {
      thread_local std::vector<float> tmp;
      tmp.resize(static_cast<size_t>(G * n_in));
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t j0 = g * G, nj = std::min(G, rb - j0);
        for (int64_t j = 0; j < nj; ++j)
          dequantize_row(wtype, wb + static_cast<size_t>(o0 + j0 + j) * rs, tmp.data() + j * n_in, n_in);
        for (int64_t i = 0; i < n_in; ++i) {
          float* dst = wtp + i * rb + j0;
          for (int64_t j = 0; j < nj; ++j) dst[j] = tmp[static_cast<size_t>(j * n_in + i)];
        }
      }
    });
    for (int64_t t = 0; t < n; ++t) std::memcpy(dyb.data() + t * rb, dy + t * n_out + o0, static_cast<size_t>(rb) * sizeof(float));
    matmul(GgmlType::F32, wtp, n_in, rb, dyb.data(), n, dx, n_in, pool, true);  // dx[n, n_in] += dyb wt^T
  }
}

// Weight side: dw[o, i] += sum_t dy[t, o] x[t, i]. As a forward product with xT[n_in, n] for weights
// and dyT[n_out, n] for tokens, out[o, i] lands at dw + o * n_in + i, i.e. dw itself, and the SIMD
// kernels do the work; the two transposes are blocked so neither side is read with a long stride.
void matmul_backward_weight(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in,
                            ThreadPool& pool) {
  if (n <= 0 || n_out <= 0 || n_in <= 0) return;
  thread_local std::vector<float> xt, dyt;
  xt.resize(static_cast<size_t>(n_in * n));
  dyt.resize(static_cast<size_t>(n_out * n));
  transpose(xt.data(), x, n, n_in, pool);
  transpose(dyt.data(), dy, n, n_out, pool);
  matmul(GgmlType::F32, xt.data(), n_in, n, dyt.data(), n_out, dw, n_in, pool, true);
}

// ---------------------------------------------------------------------------------------------
// cross-entropy over the full vocabulary. logsumexp in double: a 128k-term sum of exp in float loses
// ~1e-4 relative, which would show in the loss the goldens give to 8 digits.
namespace {
double row_logsumexp(const float* l, int64_t V) {
  float m = -INFINITY;
  for (int64_t j = 0; j < V; ++j) m = std::max(m, l[j]);
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(static_cast<double>(l[j]) - m);
  return m + std::log(s);
}
}  // namespace

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab,
                          ThreadPool& pool) {
  pool.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (targets[t] < 0) {
        losses[t] = 0;
        continue;
      }
      const float* l = logits + t * n_vocab;
      losses[t] = static_cast<float>(row_logsumexp(l, n_vocab) - l[targets[t]]);
    }
  });
}

void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab,
                           float scale, ThreadPool& pool) {
  pool.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* g = dlogits + t * n_vocab;
      if (targets[t] < 0) {
        std::fill(g, g + n_vocab, 0.0f);
        continue;
      }
      const float* l = logits + t * n_vocab;
      const double lse = row_logsumexp(l, n_vocab);
      for (int64_t j = 0; j < n_vocab; ++j) g[j] = scale * static_cast<float>(std::exp(static_cast<double>(l[j]) - lse));
      g[targets[t]] -= scale;
    }
  });
}

namespace {
int64_t ce_chunk(int64_t chunk_rows, int64_t n, int64_t n_vocab) {
  // ~64 MB of logits per chunk: big enough for the head matmul to run at full speed.
  int64_t c = chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, (int64_t(16) << 20) / std::max<int64_t>(1, n_vocab));
  return std::min(c, n);
}

// The head's cross-entropy a chunk of rows at a time; with dx, also its backward (dw optional).
double head_crossentropy(const float* x, const int32_t* targets, int64_t n, int64_t d, GgmlType wtype, const void* w,
                         int64_t n_vocab, int64_t chunk_rows, ThreadPool& pool, float* dx, float scale, float* dw) {
  if (n <= 0) return 0;
  const int64_t C = ce_chunk(chunk_rows, n, n_vocab);
  std::vector<float> logits(static_cast<size_t>(C * n_vocab)), losses(static_cast<size_t>(C));
  double total = 0;
  for (int64_t t0 = 0; t0 < n; t0 += C) {
    const int64_t c = std::min(C, n - t0);
    matmul(wtype, w, n_vocab, d, x + t0 * d, c, logits.data(), n_vocab, pool);  // [c, V]
    crossentropy_forward(losses.data(), logits.data(), targets + t0, c, n_vocab, pool);
    for (int64_t t = 0; t < c; ++t) total += losses[t];
    if (!dx) continue;
    // dlogits overwrite the logits in place: both are [c, V] and the logits are no longer needed.
    crossentropy_backward(logits.data(), logits.data(), targets + t0, c, n_vocab, scale, pool);
    matmul_backward(dx + t0 * d, logits.data(), wtype, w, n_vocab, d, c, pool);  // [c, d] += [c, V] W
    if (dw) matmul_backward_weight(dw, logits.data(), x + t0 * d, c, n_vocab, d, pool);  // [V, d] += dlogits^T x
  }
  return total;
}
}  // namespace

double head_crossentropy_forward(const float* x, const int32_t* targets, int64_t n, int64_t d, GgmlType wtype,
                                 const void* w, int64_t n_vocab, int64_t chunk_rows, ThreadPool& pool) {
  return head_crossentropy(x, targets, n, d, wtype, w, n_vocab, chunk_rows, pool, nullptr, 0, nullptr);
}

double head_crossentropy_backward(float* dx, const float* x, const int32_t* targets, int64_t n, int64_t d,
                                  GgmlType wtype, const void* w, int64_t n_vocab, float scale, int64_t chunk_rows,
                                  ThreadPool& pool, float* dw) {
  return head_crossentropy(x, targets, n, d, wtype, w, n_vocab, chunk_rows, pool, dx, scale, dw);
}

// ---------------------------------------------------------------------------------------------
// injection (Activation Oracles steering)
void inject_forward(float* x, int64_t d, const int64_t* rows, const float* vectors, int64_t n_vec, float coef,
                    float eps, bool replace, float* terms) {
  std::vector<float> term(static_cast<size_t>(d));
  for (int64_t k = 0; k < n_vec; ++k) {
    float* h = x + rows[k] * d;
    const float* v = vectors + k * d;
    double hn = 0, vn = 0;
    for (int64_t i = 0; i < d; ++i) {
      hn += static_cast<double>(h[i]) * h[i];
      vn += static_cast<double>(v[i]) * v[i];
    }
    // As torch: ||h|| in the activation's precision, v / max(||v||, eps) (F.normalize).
    const float hnorm = static_cast<float>(std::sqrt(hn));
    const float vnorm = std::max(static_cast<float>(std::sqrt(vn)), eps);
    for (int64_t i = 0; i < d; ++i) term[i] = v[i] / vnorm * hnorm * coef;
    for (int64_t i = 0; i < d; ++i) h[i] = replace ? term[i] : h[i] + term[i];
    if (terms) std::memcpy(terms + k * d, term.data(), static_cast<size_t>(d) * sizeof(float));
  }
}

void inject_backward(float* dx, int64_t d, const int64_t* rows, int64_t n_vec, bool replace) {
  if (!replace) return;
  for (int64_t k = 0; k < n_vec; ++k) std::fill(dx + rows[k] * d, dx + (rows[k] + 1) * d, 0.0f);
}

}  // namespace lro
