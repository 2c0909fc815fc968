#include <cuda_runtime.h>

#include "ops_cuda.h"

namespace lro {

namespace {

// One block per row; the sum of squares is reduced in shared memory (in float, like the CPU
// path's double only matters at d >> 10^4).
__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int64_t d, float eps) {
  extern __shared__ float partial[];
  const float* r = x + blockIdx.x * d;
  float s = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += r[i] * r[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  float scale = rsqrtf(partial[0] / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[blockIdx.x * d + i] = r[i] * scale * w[i];
}

__global__ void swiglu_kernel(float* out, const float* g, const float* u, int64_t total) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void rope_kernel(float* x, const int32_t* pos, int64_t n_heads, int64_t head_dim, int64_t n_rot, float base,
                            const float* ff) {
  int64_t t = blockIdx.x, h = blockIdx.y;
  float* v = x + (t * n_heads + h) * head_dim;
  for (int64_t i = threadIdx.x; i < n_rot / 2; i += blockDim.x) {
    double theta = static_cast<double>(pos[t]) * pow(static_cast<double>(base), -2.0 * i / static_cast<double>(n_rot));
    if (ff) theta /= ff[i];
    float c = static_cast<float>(cos(theta)), s = static_cast<float>(sin(theta));
    float x0 = v[2 * i], x1 = v[2 * i + 1];
    v[2 * i] = x0 * c - x1 * s;
    v[2 * i + 1] = x0 * s + x1 * c;
  }
}

__global__ void residual_kernel(float* x, const float* y, int64_t total) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) x[i] += y[i];
}

unsigned blocks_for(int64_t total, unsigned threads) { return static_cast<unsigned>((total + threads - 1) / threads); }

}  // namespace

void rmsnorm_forward_cuda(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps) {
  const unsigned threads = 256;
  rmsnorm_kernel<<<static_cast<unsigned>(n), threads, threads * sizeof(float)>>>(out, x, weight, d, eps);
}

void swiglu_forward_cuda(float* out, const float* gate, const float* up, int64_t n, int64_t d) {
  swiglu_kernel<<<blocks_for(n * d, 256), 256>>>(out, gate, up, n * d);
}

void rope_forward_cuda(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                       float base, const float* freq_factors) {
  dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(n_heads));
  rope_kernel<<<grid, 64>>>(x, pos, n_heads, head_dim, n_rot, base, freq_factors);
}

void residual_forward_cuda(float* x, const float* y, int64_t n, int64_t d) {
  residual_kernel<<<blocks_for(n * d, 256), 256>>>(x, y, n * d);
}

}  // namespace lro
