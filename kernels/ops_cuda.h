// CUDA versions of the forward ops in native/ops/ops.h, same names with _cuda, device pointers.
// Built only with -DLRO_CUDA=ON; the CPU path never needs them. Each is checked against its
// CPU twin by native/test/test_cuda.cpp on a machine with a GPU.
#pragma once
#include <cstdint>

namespace lro {

// out[n, d] = x[n, d] / sqrt(mean(x^2) + eps) * weight[d]
void rmsnorm_forward_cuda(float* out, const float* x, const float* weight, int64_t n, int64_t d, float eps);
// out[n, d] = silu(gate[n, d]) * up[n, d]
void swiglu_forward_cuda(float* out, const float* gate, const float* up, int64_t n, int64_t d);
// In place on x[n, n_heads * head_dim], adjacent pairs, as rope_forward.
void rope_forward_cuda(float* x, const int32_t* pos, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                       float base, const float* freq_factors);
// x[n, d] += y[n, d]
void residual_forward_cuda(float* x, const float* y, int64_t n, int64_t d);

}  // namespace lro
