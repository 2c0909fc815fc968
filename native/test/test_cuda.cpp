// Every CUDA op against its CPU twin (needs a GPU; exits 0 with "skipped" when none is visible).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "../../kernels/ops_cuda.h"
#include "op_cases.h"
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
  // The inputs test_ops checks the CPU ops on (op_cases.h); each CUDA twin must match its CPU op.
  lro::ThreadPool pool(1);
  const auto nc = op_cases::norm_case();
  std::vector<float> ref(nc.x.size());
  lro::rmsnorm_forward(ref.data(), nc.x.data(), nc.w.data(), nc.n, nc.d, 1e-5f, pool);
  float *dx = dev(nc.x), *dw = dev(nc.w), *dout = dev(ref);
  lro::rmsnorm_forward_cuda(dout, dx, dw, nc.n, nc.d, 1e-5f);
  check(maxdiff(host(dout, ref.size()), ref), 1e-5f, "rmsnorm_forward_cuda");

  const auto sc = op_cases::swiglu_case();
  ref.assign(sc.gate.size(), 0);
  lro::swiglu_forward(ref.data(), sc.gate.data(), sc.up.data(), sc.n, sc.d);
  float *dg = dev(sc.gate), *du = dev(sc.up), *dsw = dev(ref);
  lro::swiglu_forward_cuda(dsw, dg, du, sc.n, sc.d);
  check(maxdiff(host(dsw, ref.size()), ref), 1e-4f, "swiglu_forward_cuda");

  const auto rc = op_cases::rope_case();
  int32_t* dpos;
  cudaMalloc(&dpos, rc.pos.size() * sizeof(int32_t));
  cudaMemcpy(dpos, rc.pos.data(), rc.pos.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
  ref = rc.x;
  lro::rope_forward(ref.data(), rc.pos.data(), rc.n, rc.heads, rc.hd, rc.n_rot, rc.base, nullptr);
  float* dr = dev(rc.x);
  lro::rope_forward_cuda(dr, dpos, rc.n, rc.heads, rc.hd, rc.n_rot, rc.base, nullptr);
  check(maxdiff(host(dr, ref.size()), ref), 1e-4f, "rope_forward_cuda");

  ref = sc.gate;
  lro::residual_forward(ref.data(), sc.up.data(), sc.n, sc.d);
  lro::residual_forward_cuda(dg, du, sc.n, sc.d);
  check(maxdiff(host(dg, ref.size()), ref), 0, "residual_forward_cuda");

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
