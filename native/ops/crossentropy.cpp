// cross-entropy: over full logits, and through the output head in chunks; forward and backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

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

}  // namespace lro
