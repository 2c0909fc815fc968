// Every CUDA op against its CPU twin (needs a GPU; exits 0 with "skipped" when none is visible).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../kernels/ops_cuda.h"
#include "ops/ops.h"
#include "core/thread_pool.h"

namespace {
int failures = 0;
void check(float err, float tol, const char* what) {
  std::printf("%s %s max|diff| %.3g (tol %.3g)\n", err <= tol ? "ok  " : "FAIL", what, err, tol);
  if (!(err <= tol)) ++failures;
}
float* dev(const std::vector<float>& h) {
  float* d;
  cudaMalloc(&d, h.size() * sizeof(float));
  cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
  return d;
}
std::vector<float> host(const float* d, size_t n) {
  std::vector<float> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
  return h;
}
float maxdiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
  return m;
}
}  // namespace

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  const int64_t n = 7, d = 256, heads = 4, hd = 64;
  std::vector<float> x(n * d), w(d), y(n * d);
  for (auto& v : x) v = nd(rng) * 10;
  for (auto& v : w) v = 1 + 0.1f * nd(rng);
  for (auto& v : y) v = nd(rng);
  lro::ThreadPool pool(1);

  std::vector<float> ref(n * d);
  lro::rmsnorm_forward(ref.data(), x.data(), w.data(), n, d, 1e-5f, pool);
  float *dx = dev(x), *dw = dev(w), *dout = dev(ref), *dy = dev(y);
  lro::rmsnorm_forward_cuda(dout, dx, dw, n, d, 1e-5f);
  check(maxdiff(host(dout, n * d), ref), 1e-5f, "rmsnorm_forward_cuda");

  lro::swiglu_forward(ref.data(), x.data(), y.data(), n, d);
  lro::swiglu_forward_cuda(dout, dx, dy, n, d);
  check(maxdiff(host(dout, n * d), ref), 1e-4f, "swiglu_forward_cuda");

  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(3 * i);
  int32_t* dpos;
  cudaMalloc(&dpos, n * sizeof(int32_t));
  cudaMemcpy(dpos, pos.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice);
  ref = x;
  lro::rope_forward(ref.data(), pos.data(), n, heads, hd, hd, 500000.0f, nullptr);
  float* dr = dev(x);
  lro::rope_forward_cuda(dr, dpos, n, heads, hd, hd, 500000.0f, nullptr);
  check(maxdiff(host(dr, n * d), ref), 1e-4f, "rope_forward_cuda");

  ref = x;
  lro::residual_forward(ref.data(), y.data(), n, d);
  lro::residual_forward_cuda(dx, dy, n, d);
  check(maxdiff(host(dx, n * d), ref), 0, "residual_forward_cuda");

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
