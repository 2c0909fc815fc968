// swiglu: silu(gate) * up, then its backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, int64_t d) {
  swiglu_f32(out, gate, up, n * d);
}

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

}  // namespace lro
