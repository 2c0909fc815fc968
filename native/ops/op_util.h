// Helpers shared by the ops' backward passes (not part of ops.h).
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/thread_pool.h"

namespace lro {
namespace op_util {

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
inline void transpose(float* dst, const float* src, int64_t rows, int64_t cols, ThreadPool& pool) {
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

}  // namespace op_util
}  // namespace lro
