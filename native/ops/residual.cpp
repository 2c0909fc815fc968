// residual: x += y, then its backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

void residual_forward(float* x, const float* y, int64_t n, int64_t d) {
  int64_t total = n * d;
  for (int64_t i = 0; i < total; ++i) x[i] += y[i];
}

void residual_backward(float* dy, const float* dout, int64_t n, int64_t d) { axpy_f32(dy, 1.0f, dout, n * d); }

}  // namespace lro
