// layernorm (CODI's head): forward, then backward (ops.h has the shapes).
#include <cmath>
#include <cstdint>

#include "ops/ops.h"

namespace lro {

void layernorm_forward(float* out, const float* x, const float* w, const float* b, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* r = x + t * d;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += r[i];
    mean /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= static_cast<double>(d);
    float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<float>(r[i] - mean) * inv * w[i] + b[i];
  }
}

// With xhat = (x - mean) * r:  dx = r * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * w.
void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w, int64_t n,
                        int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* r = x + t * d;
    const float* go = dout + t * d;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += r[i];
    mean /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= static_cast<double>(d);
    const double inv = 1.0 / std::sqrt(var + eps);
    double mg = 0, mgx = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double xh = (r[i] - mean) * inv, g = static_cast<double>(go[i]) * w[i];
      mg += g;
      mgx += g * xh;
      if (dw) dw[i] += static_cast<float>(go[i] * xh);
      if (db) db[i] += go[i];
    }
    mg /= static_cast<double>(d);
    mgx /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) {
      const double xh = (r[i] - mean) * inv, g = static_cast<double>(go[i]) * w[i];
      dx[t * d + i] += static_cast<float>(inv * (g - mg - xh * mgx));
    }
  }
}

}  // namespace lro
