// Element types: fp16/bf16 conversion, dequantisation, quantisation, and the fused
// matrix product on quantised weights (weights are never expanded to a full f32 copy).
// Kernels are compiled for scalar, AVX2 and AVX-512 and picked at run time (cpu_features()).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>
#include <string>

#include "core/ggml_types.h"
#include "core/gguf.h"

namespace lro {

class ThreadPool;

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);       // round to nearest even, as ggml
// Inline so that loops over them vectorise (as calls, rounding a 64-token bf16 prefill's activations
// took ~2% of its perf samples, model load included).
inline float bf16_to_fp32(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline uint16_t fp32_to_bf16(float f) {  // round to nearest even, NaN kept quiet, as ggml
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1)) >> 16;
  // NaN: keep it, force quiet. A select, not a branch, so that loops over it vectorise.
  return uint16_t((u & 0x7FFFFFFFu) > 0x7F800000u ? (u >> 16) | 64 : rounded);
}

// dst[0..n) = value of the n elements at src. n must be a multiple of the type's block size.
// Bit-exact with ggml's to_float for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);
// rows x row_len values of any type, dequantised row by row into one f32 vector.
std::vector<float> dequantize_rows(GgmlType type, const void* src, int64_t row_len, int64_t rows);
// Quantises n floats into dst (row_size(type, n) bytes). Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);
// The first element (a block's first, for a quantised type) of n whose value or block scale is
// inf or NaN; -1 when none. Quantised types: only the f16 scales are read (cheap); f16 / bf16 /
// f32: every value.
int64_t first_nonfinite(GgmlType type, const void* src, int64_t n);
// Throws GgufError naming the file and tensor when first_nonfinite finds something in it.
void require_finite(const std::string& path, const GgufTensorInfo& t);
bool can_quantize(GgmlType type);

// y[t * ldy + o] = sum_i W[o, i] * x[t * n_in + i]  for o in [0, n_out), t in [0, n_tok)
// W: n_out rows of n_in elements of `wtype`, row stride row_size(wtype, n_in) bytes.
// x: [n_tok, n_in] f32, y: [n_tok, ldy] f32 (ldy >= n_out). Parallel over output rows.
// If accumulate, adds to y instead of overwriting.
// Integer weight types quantise x per block first (Q8_0 / Q4_0: blocks of 32; K-quants: 256); BF16
// weights round x to bf16 (round to nearest even) first: on every path, as llama.cpp does.
void matmul(GgmlType wtype, const void* w, int64_t n_out, int64_t n_in, const float* x, int64_t n_tok,
            float* y, int64_t ldy, ThreadPool& pool, bool accumulate = false);

// A linear layer's weight gradient: dw[o, i] += sum_t dy[t, o] x[t, i]  (dy [n, n_out], x [n, n_in],
// dw [n_out, n_in], all f32), straight from the row-major operands (no transposes), parallel over
// rows of dw. Every element sums its tokens in the same order for any thread count.
void weight_grad_f32(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in, ThreadPool& pool);

// The instruction set the kernels use on this CPU: "avx512 vnni bf16", "avx512 vnni", "avx512", "avx2"
// or "scalar".
std::string cpu_features();

// Forces the kernel path for this process: "scalar", "avx2", "avx512" (best AVX-512 variant),
// "avx512-novnni", "avx512-nobf16" (VNNI without BF16), or "auto" (the best the CPU has). Returns false, changing nothing, if the name is
// unknown or the CPU lacks it. Applies to matmul calls that start after it returns (tests, benchmarks).
// The environment variable LRO_SIMD (same names) sets the initial path, never above the CPU's best.
bool set_simd_path(const std::string& name);

}  // namespace lro
