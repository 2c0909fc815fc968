// Row-level helpers shared by the forward and backward ops: dot products and axpy over short rows
// (AVX2/FMA picked at run time; the baseline target cannot vectorise a float reduction without
// reassociation), and the rotary angles, which forward and backward must compute identically.
#pragma once
#include <cstdint>

namespace lro {

float dot_f32(const float* a, const float* b, int64_t n);
// y[n] += a * x[n]
void axpy_f32(float* y, float a, const float* x, int64_t n);
// x[i] = exp(x[i] - shift) for i < n (AVX2: within 2 ulp of std::exp); returns their sum in double.
double exp_sub_sum(float* x, int64_t n, float shift);
// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i] (AVX2: exp as above).
void swiglu_f32(float* out, const float* gate, const float* up, int64_t n);
// cs[2i], cs[2i+1] = cos, sin of pos * base^(-2i/n_rot) / freq_factors[i], i < n_rot/2 (freq_factors may be null)
void rope_cos_sin(float* cs, int32_t pos, int64_t n_rot, float base, const float* freq_factors);

}  // namespace lro
