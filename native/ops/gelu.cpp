// gelu, exact (erf), as CODI's head: forward, then backward.
#include <cmath>
#include <cstdint>

#include "ops/ops.h"

namespace lro {

void gelu_forward(float* out, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0))));
}

void gelu_backward(float* dx, const float* dout, const float* x, int64_t n) {
  const double inv_sqrt_2pi = 0.3989422804014327;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
    dx[i] += static_cast<float>(dout[i] * (cdf + v * inv_sqrt_2pi * std::exp(-0.5 * v * v)));
  }
}

}  // namespace lro
