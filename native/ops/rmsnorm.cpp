// rmsnorm: forward, then backward (ops.h has the shapes).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

void rmsnorm_forward(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps, ThreadPool& pool) {
  pool.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * d;
      float* o = out + t * d;
      // Sum in double: the residual stream reaches |x| ~ 40 and the mean feeds every later op.
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
      for (int64_t i = 0; i < d; ++i) o[i] = xr[i] * scale * weight[i];
    }
  });
}

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

}  // namespace lro
