// Internal interface between the matmul driver (quants.cpp) and the per-ISA kernel translation
// units (quants_avx2.cpp, quants_avx512.cpp, quants_avx512_vnni.cpp, quants_avx512_bf16.cpp). Not part of the public API.
//
// Kept to plain structs and function pointers on purpose: the SIMD translation units are compiled
// with -mavx2 / -mavx512*, and any inline function or template they instantiate from a shared header
// could be emitted there with wide instructions and then picked by the linker for the whole program
// (an ODR trap that crashes AVX2-only CPUs). So they include nothing but this header, the block
// layouts and <immintrin.h>, and everything they define lives in their own namespace.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

// The x86 SIMD kernels are built on x86-64 unless LRO_NO_SIMD is defined (which leaves the portable
// scalar path, as on other CPUs; useful to check that build).
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(LRO_NO_SIMD)
#define LRO_X86_SIMD 1
#endif

namespace lro {
namespace qk {

// Activations for the integer kernels, quantised once per matmul call (identically on every path,
// so that all paths compute the same integer dot products).
//   Q8_0 / Q4_0 weights ("a32"): per token, blocks of 32: qs int8 [n_in], d float [n_in/32],
//     s int16 [n_in/32] (sum of the block's qs).
//   Q4_K / Q6_K weights ("a256"): per token, blocks of 256: qs int8 [n_in], d float [n_in/256],
//     s int16 [n_in/16] (sums over 16).
// Token t's data starts at qs + t*n_in, d + t*(n_in/bs), s + t*(n_in/16 or n_in/32).
struct MatmulArgs {
  const uint8_t* w;     // weight rows
  size_t w_stride;      // bytes per weight row
  int64_t n_in;
  int64_t n_tok;
  const float* x;       // [n_tok, n_in] f32 (float weight types)
  const int8_t* aq;     // quantised activations (integer weight types)
  const float* ad;
  const int16_t* as;
  const float* amin;    // Q4_K only: [n_tok][n_in/32], d_x * (sum of the 32 quantised activations of
                        // each sub-block), for the mins term dmin*m_j*sum(x) of the panel kernels
  float* y;
  int64_t ldy;
  bool accumulate;
};

// Computes rows [r0, r1) of y for all n_tok tokens.
typedef void (*MatmulFn)(const MatmulArgs& a, int64_t r0, int64_t r1);
// Quantises one token's n floats (n a multiple of the block size) into qs/d/s as described above.
typedef void (*QuantActFn)(const float* x, int64_t n, int8_t* qs, float* d, int16_t* s);

// A linear layer's weight gradient, rows [o0, o1):
//   dw[o * n_in + i] += sum_t dy[t * n_out + o] * x[t * n_in + i]   (dy [n, n_out], x [n, n_in])
// Each element sums its tokens in the same order on every path and for any row split.
typedef void (*OuterFn)(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in,
                        int64_t o0, int64_t o1);

struct KernelTable {
  const char* name;  // what cpu_features() reports
  MatmulFn f32, f16, bf16, q8_0, q4_0, q4_K, q6_K;
  QuantActFn act32, act256;
  OuterFn outer_f32;
};

// Per-thread scratch that grows on demand and lives as long as its thread (aligned_alloc). In an
// unnamed namespace: internal linkage in each translation unit (see above).
namespace {
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  template <class T>
  T* get(size_t count) {
    const size_t bytes = (sizeof(T) * count + 63) / 64 * 64;
    if (bytes > cap) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      cap = p ? bytes : 0;
      if (!p) throw std::bad_alloc();
    }
    return static_cast<T*>(p);
  }
};
}  // namespace

// Tokens per chunk of the weight-gradient kernels: a chunk's partial sums are added into dw in
// token order, one chunk after another (the same chunks on every path).
constexpr int64_t kOuterTokens = 128;
// Rows of dw a SIMD weight-gradient kernel holds in registers at once; the driver splits rows among
// threads in multiples of it.
constexpr int kOuterRows = 6;

// Token chunk so that one chunk of quantised activations (n_in bytes a token) stays in L2 while every
// weight row of a thread's range streams past it. Shared by all paths (static: internal linkage
// in each translation unit, see above).
static inline int64_t token_chunk(int64_t n_in, int64_t n_tok, int64_t mult) {
  int64_t tc = (int64_t(256) * 1024) / (n_in > 0 ? n_in : 1);
  tc = tc / mult * mult;
  if (tc < mult) tc = mult;
  return tc < n_tok ? tc : n_tok;
}

// Decode (one token) reads the rows of [r0, r1) as two sequential streams, one from each half of the
// range, a row of each a step: two(r, step) computes rows r and r + step, one(r) the odd last row.
// On the Zen 5 VM of the thirteenth stop the prefetchers served two streams of whole rows faster
// than tiles of 4-8 rows read side by side. Decode passes over the 1B-shaped files, alternating in
// one process, against those tiles, at 1 / 2 threads:
//   AVX2: f16 1.19x / 1.20x, bf16 1.26x / 1.27x, q8_0 1.14x / 1.29x;
//   AVX-512: f16 1.14x / 1.12x, bf16 (vdpbf16ps) 1.09-1.24x / 1.13-1.27x (the same 8-row tiles
//   from the two halves in turn: 0.87x), q8_0 1.08x / 1.19x, q6_K 1.06x / 1.23x, q4_0 without
//   VNNI 1.08x / 1.05x; q4_K (with its four-block heads) one stream 1.17x / 1.08x, two 1.21x / 1.18x.
// Kernels that already read one row at a time gained nothing from a second stream (the q4_0 GEMVs,
// AVX2 q6_K: 0.95-1.02x; AVX2 q6_K again in the fifteenth stop: 0.93-0.99x at 1 thread, 1.05x at 2),
// and keep one. The AVX2 q4_K decode GEMV of the fifteenth stop takes two: 1.05-1.07x over the
// same kernel on single rows at 1 thread.
// (Static: internal linkage in each translation unit, see above.)
template <class Two, class One>
static inline void two_streams(int64_t r0, int64_t r1, Two two, One one) {
  const int64_t half = (r1 - r0) / 2;
  for (int64_t r = r0; r < r0 + half; ++r) two(r, half);
  if ((r1 - r0) % 2) one(r1 - 1);
}
// The same with a tile kernel K of a SIMD file, whose tile<R, T>(a, r, t, row_step) computes rows
// r + i * row_step.
template <class K>
static inline void decode_two_streams(const MatmulArgs& a, int64_t r0, int64_t r1) {
  two_streams(
      r0, r1, [&](int64_t r, int64_t step) { K::template tile<2, 1>(a, r, 0, step); },
      [&](int64_t r) { K::template tile<1, 1>(a, r, 0); });
}

extern const KernelTable kScalarKernels;
#if defined(LRO_X86_SIMD)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
extern const KernelTable kAvx512VnniKernels;
extern const KernelTable kAvx512Bf16Kernels;
#endif

}  // namespace qk
}  // namespace lro
