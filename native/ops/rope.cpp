// rope: rotary position embedding in place, then its backward (the inverse rotation).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

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

}  // namespace lro
