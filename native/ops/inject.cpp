// inject: Activation Oracles steering of rows, then its (stop-gradient) backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

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
