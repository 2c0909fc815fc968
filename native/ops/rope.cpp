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

namespace {

// cos, sin per pair for each row's position, by rope_cos_sin (so the angles are exactly its own),
// once per distinct position when the positions span at most 2n values (packed sequences repeat
// 0..T-1; a decode row is one position); otherwise once per row.
class RowAngles {
 public:
  RowAngles(const int32_t* pos, int64_t n, int64_t n_rot, float base, const float* freq_factors)
      : pos_(pos), n_rot_(n_rot), base_(base), ff_(freq_factors) {
    if (n <= 0) return;
    lo_ = *std::min_element(pos, pos + n);
    const int32_t hi = *std::max_element(pos, pos + n);
    dense_ = static_cast<int64_t>(hi) - lo_ + 1 <= 2 * n;
    if (!dense_) {
      table_.resize(static_cast<size_t>(n_rot));
      return;
    }
    table_.resize(static_cast<size_t>((hi - lo_ + 1) * n_rot));
    done_.assign(static_cast<size_t>(hi - lo_ + 1), 0);
  }
  const float* row(int64_t t) {
    if (!dense_) {
      rope_cos_sin(table_.data(), pos_[t], n_rot_, base_, ff_);
      return table_.data();
    }
    const int64_t j = pos_[t] - lo_;
    float* cs = table_.data() + j * n_rot_;
    if (!done_[static_cast<size_t>(j)]) {
      rope_cos_sin(cs, pos_[t], n_rot_, base_, ff_);
      done_[static_cast<size_t>(j)] = 1;
    }
    return cs;
  }

 private:
  const int32_t* pos_;
  int64_t n_rot_;
  float base_;
  const float* ff_;
  int32_t lo_ = 0;
  bool dense_ = false;
  std::vector<float> table_;
  std::vector<uint8_t> done_;
};

}  // namespace

void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  float base, const float* freq_factors) {
  RowAngles angles(pos, n, n_rot, base, freq_factors);
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = angles.row(t);  // cos, sin per pair
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
  RowAngles angles(pos, n, n_rot, base, freq_factors);
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = angles.row(t);  // cos, sin per pair
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
