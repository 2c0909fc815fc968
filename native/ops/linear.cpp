// linear: the matmul backward (input and weight sides; the forward is quants.h matmul, the LoRA
// linear built on both is model/block).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

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

// Weight side: dw[o, i] += sum_t dy[t, o] x[t, i], by the SIMD weight-gradient kernels.
void matmul_backward_weight(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in,
                            ThreadPool& pool) {
  weight_grad_f32(dw, dy, x, n, n_out, n_in, pool);
}

}  // namespace lro
