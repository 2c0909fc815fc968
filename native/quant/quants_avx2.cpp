// AVX2 + FMA + F16C kernels, used only when the CPU reports those features (see quants.cpp).
// The instruction set is enabled for this file's functions by the target pragma below, so no
// per-file compiler flags are needed (and the file builds the same with any -m flags or none).
// Includes nothing that defines shared inline code (see quants_kernels.h for why).
#include "quant/quants_kernels.h"
#if defined(LRO_X86_SIMD)
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>

#include "core/ggml_types.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace lro {
namespace qk {
namespace {

// How far ahead in a row's stream the single-stream decode kernels prefetch: about what one core
// has in flight to memory at full speed (8 KB; 512 B left the Q4_0 GEMV waiting on memory).
constexpr int64_t kDecodeAhead = 8192;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum8i(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline void store(const MatmulArgs& a, int64_t t, int64_t r, float v) {
  float* p = a.y + t * a.ldy + r;
  *p = a.accumulate ? *p + v : v;
}

// Walks the row range in tiles of R rows x T tokens (T tokens per weight read), with token chunks
// sized by token_chunk(). Remainders use the <1, T> and <R|1, tt> instantiations.
template <class K, int R, int T>
void drive(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t tc = token_chunk(a.n_in, a.n_tok, T);
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += tc) {
    const int64_t t1 = t0 + tc < a.n_tok ? t0 + tc : a.n_tok;
    int64_t r = r0;
    for (; r + R <= r1; r += R) {
      int64_t t = t0;
      for (; t + T <= t1; t += T) K::template tile<R, T>(a, r, t);
      switch (t1 - t) {
        case 1: K::template tile<R, 1>(a, r, t); break;
        case 2: if (T > 2) K::template tile<R, (T > 2 ? 2 : 1)>(a, r, t); break;
        case 3: if (T > 3) K::template tile<R, (T > 3 ? 3 : 1)>(a, r, t); break;
        default: break;
      }
    }
    for (; r < r1; ++r) {
      int64_t t = t0;
      for (; t + T <= t1; t += T) K::template tile<1, T>(a, r, t);
      for (; t < t1; ++t) K::template tile<1, 1>(a, r, t);
    }
  }
}

// Decode uses R rows x 1 token; prefill R x T. Tokens beyond 3 in a remainder are impossible with T <= 4.
template <class K, int RD, int RP, int TP>
void run(const MatmulArgs& a, int64_t r0, int64_t r1) {
  static_assert(TP <= 4, "remainder switch handles T <= 4");
  if (a.n_tok == 1)
    drive<K, RD, 1>(a, r0, r1);
  else
    drive<K, RP, TP>(a, r0, r1);
}

// ---- activation quantisation (bit-identical to the scalar definition in quants.cpp)

// 32 floats -> 32 int8 (round to nearest even), returns the sums of the two halves of 16.
inline void quant32(const float* x, __m256 id, int8_t* q, int& s0, int& s1) {
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
  const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
  const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
  const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
  s0 = hsum8i(_mm256_add_epi32(i0, i1));
  s1 = hsum8i(_mm256_add_epi32(i2, i3));
  // packs work per 128-bit lane; the dword permute restores element order.
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
}

// max |x| over n floats; NaN when any of them is not finite (max_ps alone can drop a NaN, so
// x - x, 0 for finite values and NaN otherwise, is summed beside it).
inline float amax_n(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    bad = _mm256_add_ps(bad, _mm256_sub_ps(v, v));
  }
  if (_mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q))) return std::numeric_limits<float>::quiet_NaN();
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void act32(const float* x, int64_t n, int8_t* qs, float* d, int16_t* s) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float amax = amax_n(x + 32 * b, 32);
    if (amax != amax) {  // a non-finite activation: a zero block whose scale carries the NaN
      std::fill(qs + 32 * b, qs + 32 * b + 32, int8_t(0));
      d[b] = amax;
      s[b] = 0;
      continue;
    }
    d[b] = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    int s0, s1;
    quant32(x + 32 * b, id, qs + 32 * b, s0, s1);
    s[b] = int16_t(s0 + s1);
  }
}

void act256(const float* x, int64_t n, int8_t* qs, float* d, int16_t* s) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const float* xb = x + 256 * b;
    const float amax = amax_n(xb, 256);
    if (amax != amax) {
      std::fill(qs + 256 * b, qs + 256 * b + 256, int8_t(0));
      d[b] = amax;
      std::fill(s + 16 * b, s + 16 * b + 16, int16_t(0));
      continue;
    }
    d[b] = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    for (int j = 0; j < 8; ++j) {
      int s0, s1;
      quant32(xb + 32 * j, id, qs + 256 * b + 32 * j, s0, s1);
      s[16 * b + 2 * j] = int16_t(s0);
      s[16 * b + 2 * j + 1] = int16_t(s1);
    }
  }
}

// ---- float weights: W [rows, n_in] (f32 | f16 | bf16) x X [T, n_in] f32, 8 elements a step.

template <int WT>
inline __m256 loadw8(const uint8_t* w, int64_t i) {
  if (WT == 0) return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i));
  if (WT == 1) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <int WT>
inline float loadw1(const uint8_t* w, int64_t i) {
  if (WT == 0) return reinterpret_cast<const float*>(w)[i];
  uint16_t h;
  __builtin_memcpy(&h, w + 2 * i, 2);
  if (WT == 1) return h2f(h);
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

template <int WT>
struct FloatK {
  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t, int64_t row_step = 1) {
    const uint8_t* w[R];
    const float* x[T];
    for (int i = 0; i < R; ++i) w[i] = a.w + (r + i * row_step) * a.w_stride;
    for (int j = 0; j < T; ++j) x[j] = a.x + (t + j) * a.n_in;
    const int64_t ahead = (row_step == 1 ? R : 1) * int64_t(a.w_stride);  // the rows read next
    // Decode (T == 1) keeps a second set of accumulators for the second half of each step: with one,
    // each row's FMAs formed one chain, 8 weights per FMA latency, which capped a core at ~26 GB/s
    // (decode passes over the 1B-shaped files at 1 thread: f16 1.17x, and bf16 1.12x before it got
    // its own GEMV, bf16_gemv; Zen 5).
    constexpr int H = T == 1 ? 2 : 1;
    __m256 acc[H][R][T];
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < T; ++j) acc[h][i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    constexpr int64_t esize = WT == 0 ? 4 : 2;
    for (; k + 16 <= a.n_in; k += 16) {
      // Decode reads each weight once: also ask for this stretch of the rows read next (`ahead`), non-temporal
      // (f16 GEMV 16384 x 2048 on one Zen 5 core: 19 -> 21-27 GB/s with 8-row tiles, as AVX-512).
      // One prefetch a cache line: a step of 16-bit weights is half a line, and a prefetch every step
      // left f16 decode 2-10% slower (alternating builds, Zen 5).
      if (T == 1 && (k * esize) % 64 == 0)
        for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(w[i] + ahead + k * esize), _MM_HINT_NTA);
      for (int h = 0; h < 2; ++h) {
        __m256 xv[T];
        for (int j = 0; j < T; ++j) xv[j] = _mm256_loadu_ps(x[j] + k + 8 * h);
        for (int i = 0; i < R; ++i) {
          const __m256 wv = loadw8<WT>(w[i], k + 8 * h);
          for (int j = 0; j < T; ++j) acc[h % H][i][j] = _mm256_fmadd_ps(wv, xv[j], acc[h % H][i][j]);
        }
      }
    }
    for (; k + 8 <= a.n_in; k += 8) {
      __m256 xv[T];
      for (int j = 0; j < T; ++j) xv[j] = _mm256_loadu_ps(x[j] + k);
      for (int i = 0; i < R; ++i) {
        const __m256 wv = loadw8<WT>(w[i], k);
        for (int j = 0; j < T; ++j) acc[0][i][j] = _mm256_fmadd_ps(wv, xv[j], acc[0][i][j]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) {
        float s = hsum8(H == 2 ? _mm256_add_ps(acc[0][i][j], acc[H - 1][i][j]) : acc[0][i][j]);
        for (int64_t kk = k; kk < a.n_in; ++kk) s += loadw1<WT>(w[i], kk) * x[j][kk];
        store(a, t + j, r + i * row_step, s);
      }
  }
};

// ---- Q8_0 / Q4_0 weights x a32 activations, one block (32) a step.
// Both are turned into signed int8 weights; the sign trick (|w| as u8, x with w's sign) lets
// maddubs (u8 x s8) do a signed dot without saturation: |w| <= 128, |x| <= 127.

template <bool Q4>
struct Q32K {
  static inline __m256i weights(const uint8_t* row, int64_t b, float& dw) {
    if (Q4) {
      const block_q4_0* blk = reinterpret_cast<const block_q4_0*>(row) + b;
      dw = h2f(blk->d);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
      const __m256i n = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
      return _mm256_sub_epi8(n, _mm256_set1_epi8(8));
    }
    const block_q8_0* blk = reinterpret_cast<const block_q8_0*>(row) + b;
    dw = h2f(blk->d);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
  }

  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t, int64_t row_step = 1) {
    const int64_t nb = a.n_in / 32;
    const uint8_t* w[R];
    const int8_t* xq[T];
    const float* xd[T];
    for (int i = 0; i < R; ++i) w[i] = a.w + (r + i * row_step) * a.w_stride;
    const size_t ahead = size_t(row_step == 1 ? R : 1) * a.w_stride;  // the rows read next
    for (int j = 0; j < T; ++j) xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb;
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t bb = Q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    for (int64_t b = 0; b < nb; ++b) {
      // Decode reads every weight once and this loop does little work per byte, so the hardware
      // prefetcher alone leaves it waiting on memory: also ask for this block of the rows read next
      // (`ahead`; a prefetch past the end of the matrix is harmless).
      for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(w[i]) + ahead + size_t(b) * bb, _MM_HINT_T0);
      for (int i = 0; i < R; ++i) {
        float dw;
        const __m256i wv = weights(w[i], b, dw);
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        for (int j = 0; j < T; ++j) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[j] + 32 * b));
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv)), ones);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xd[j][b]), acc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i * row_step, hsum8(acc[i][j]));
  }
};

// ---- Q4_K weights x a256 activations, one super-block (256) a step.
// Per 32-element sub-block j: maddubs(q, x) then madd with the 6-bit scale sc_j broadcast as int16
// folds the scale into the pairwise add; the int32 sum over the super-block (<= 31M) cannot
// overflow. d and dmin are one f16 -> f32 conversion, times (d_x, 1) per token; the mins term is a
// float product of the 8 mins with amin (d_x times each 32's activation sum, laid out by the driver)
// into an accumulator of its own (it was int16 pairs against the sums of 16 and two scalar
// conversions: decode passes over the q4_K file 1.05-1.07x at 1 thread, L3-resident 1.08x, Zen 5).

// Unpacks the 12 packed bytes into 8 scales (low 8 bytes of sc) and 8 mins (of mn).
inline void q4k_scales(const uint8_t* s, uint64_t& sc, uint64_t& mn) {
  uint32_t w0, w1, w2;
  __builtin_memcpy(&w0, s, 4);
  __builtin_memcpy(&w1, s + 4, 4);
  __builtin_memcpy(&w2, s + 8, 4);
  const uint32_t lo_sc = w0 & 0x3F3F3F3Fu, lo_mn = w1 & 0x3F3F3F3Fu;
  const uint32_t hi_sc = (w2 & 0x0F0F0F0Fu) | (((w0 >> 6) & 0x03030303u) << 4);
  const uint32_t hi_mn = ((w2 >> 4) & 0x0F0F0F0Fu) | (((w1 >> 6) & 0x03030303u) << 4);
  sc = uint64_t(lo_sc) | (uint64_t(hi_sc) << 32);
  mn = uint64_t(lo_mn) | (uint64_t(hi_mn) << 32);
}

// kQ4kScaleSel[j]: a byte shuffle that puts byte j, zero-extended, in every int16 lane.
alignas(32) constexpr int8_t kQ4kScaleSel[8][32] = {
#define LRO_SEL(j) {j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1, j, -1}
    LRO_SEL(0), LRO_SEL(1), LRO_SEL(2), LRO_SEL(3), LRO_SEL(4), LRO_SEL(5), LRO_SEL(6), LRO_SEL(7)
#undef LRO_SEL
};

struct Q4KK {
  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t, int64_t row_step = 1) {
    const int64_t nb = a.n_in / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const block_q4_K* w[R];
    const int8_t* xq[T];
    const float *xd[T], *am[T];
    for (int j = 0; j < T; ++j)
      xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb, am[j] = a.amin + (t + j) * (a.n_in / 32);
    __m256 acc[R][T], macc[R][T];
    for (int i = 0; i < R; ++i) {
      w[i] = reinterpret_cast<const block_q4_K*>(a.w + (r + i * row_step) * a.w_stride);
      for (int j = 0; j < T; ++j) acc[i][j] = macc[i][j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; ++b) {
      __m256 amin[T];
      __m128 dx[T];  // (d_x, 1): amin holds d_x already
      for (int j = 0; j < T; ++j) {
        amin[j] = _mm256_loadu_ps(am[j] + 8 * b);
        dx[j] = _mm_setr_ps(xd[j][b], 1.0f, 0.0f, 0.0f);
      }
      for (int i = 0; i < R; ++i) {
        const block_q4_K& blk = w[i][b];
        const char* nxt = reinterpret_cast<const char*>(&blk) + kDecodeAhead;  // further on in the stream
        for (int o = 0; o < int(sizeof(block_q4_K)); o += 64) _mm_prefetch(nxt + o, _MM_HINT_T0);
        uint64_t sc, mn;
        q4k_scales(blk.scales, sc, mn);
        const __m256i scb = _mm256_set1_epi64x(int64_t(sc));  // the 8 scale bytes, in every 8-byte group
        __m256i iacc[T];
        for (int j = 0; j < T; ++j) iacc[j] = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
          const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
          const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
          // Scale 2c and 2c+1 as int16 lanes: one byte shuffle each against a constant.
          const __m256i slo = _mm256_shuffle_epi8(scb, _mm256_load_si256(reinterpret_cast<const __m256i*>(kQ4kScaleSel[2 * c])));
          const __m256i shi = _mm256_shuffle_epi8(scb, _mm256_load_si256(reinterpret_cast<const __m256i*>(kQ4kScaleSel[2 * c + 1])));
          for (int j = 0; j < T; ++j) {
            const int8_t* x = xq[j] + QK_K * b + 64 * c;
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32));
            iacc[j] = _mm256_add_epi32(iacc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), slo));
            iacc[j] = _mm256_add_epi32(iacc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), shi));
          }
        }
        uint32_t dd;  // d, dmin: adjacent halves
        __builtin_memcpy(&dd, &blk.d, 4);
        const __m128 dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(int(dd)));
        const __m256 mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn))));
        for (int j = 0; j < T; ++j) {
          const __m128 dm = _mm_mul_ps(dmin, dx[j]);  // d d_x, dmin
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[j]), _mm256_broadcastss_ps(dm), acc[i][j]);
          macc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(mins, amin[j]), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)), macc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i * row_step, hsum8(_mm256_sub_ps(acc[i][j], macc[i][j])));
  }
};

// Scale vector for 32-element chunk k (0..7) of a Q6_K super-block: int16 lanes 0-7 = scale 2k,
// lanes 8-15 = scale 2k+1 (maddubs lane l covers elements 2l, 2l+1). sc16 holds the 16 scales as
// int16, so dword k is the pair (2k, 2k+1): broadcast it, then spread each half within its lane.
inline __m256i q6k_scale_vec(__m256i sc16, int k) {
  const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(k));
  return _mm256_shuffle_epi8(pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                                    2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
}

// ---- Q6_K weights x a256 activations, one super-block a step.
// q6 in [0, 63] as u8 (maddubs pairs <= 16002, no saturation), int8 scale per 16 elements applied by
// madd; the -32 offset is removed once per super-block with the activation sums over 16.
// Each chunk's scale vector is one byte shuffle of the super-block's scales as words, the half it
// needs in both lanes (a lane permute and a shuffle before: L3-resident decode 1.11-1.12x, decode
// passes over the q6_K file 1.02x, Zen 5).

// kQ6kPairSel[k]: a byte shuffle that spreads int16 word 2k over the low lane and word 2k + 1 over the
// high lane of a vector holding the same 8 words in both lanes (chunk k's two scales, as maddubs lays
// out its 32 elements).
alignas(32) constexpr int8_t kQ6kPairSel[4][32] = {
#define LRO_SEL(k) {4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, \
                    4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,    \
                    4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3}
    LRO_SEL(0), LRO_SEL(1), LRO_SEL(2), LRO_SEL(3)
#undef LRO_SEL
};

struct Q6KK {
  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.n_in / QK_K;
    const block_q6_K* w[R];
    const int8_t* xq[T];
    const float* xd[T];
    const int16_t* xs[T];
    for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const block_q6_K*>(a.w + (r + i) * a.w_stride);
    for (int j = 0; j < T; ++j)
      xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb, xs[j] = a.as + (t + j) * (a.n_in / 16);
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; ++b) {
      for (int i = 0; i < R; ++i) {  // as in Q32K: this block of the next tile's rows
        const char* nxt = reinterpret_cast<const char*>(w[i] + b) + std::max<int64_t>(R * a.w_stride, kDecodeAhead);
        for (int o = 0; o < int(sizeof(block_q6_K)); o += 64) _mm_prefetch(nxt + o, _MM_HINT_T0);
      }
      __m256i iacc[R][T], sc16[R], sclo[R], schi[R];
      for (int i = 0; i < R; ++i) {
        for (int j = 0; j < T; ++j) iacc[i][j] = _mm256_setzero_si256();
        sc16[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b].scales)));
        sclo[i] = _mm256_permute2x128_si256(sc16[i], sc16[i], 0x00);  // scales 0-7 in both lanes
        schi[i] = _mm256_permute2x128_si256(sc16[i], sc16[i], 0x11);  // 8-15
      }
      for (int h = 0; h < 2; ++h) {
        for (int i = 0; i < R; ++i) {
          const block_q6_K& blk = w[i][b];
          const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h));
          const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h + 32));
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
          // Four 32-element chunks of this half, in element order (see the block layout).
          __m256i q[4];
          q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
          q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
          q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
          q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                 _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
          for (int k = 0; k < 4; ++k) {
            const __m256i sv = _mm256_shuffle_epi8(h == 0 ? sclo[i] : schi[i],
                                                   _mm256_load_si256(reinterpret_cast<const __m256i*>(kQ6kPairSel[k])));
            for (int j = 0; j < T; ++j) {
              const __m256i xv =
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[j] + QK_K * b + 128 * h + 32 * k));
              iacc[i][j] = _mm256_add_epi32(iacc[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), sv));
            }
          }
        }
      }
      for (int i = 0; i < R; ++i) {
        const float d = h2f(w[i][b].d);
        // 32 * scale fits int16 (|.| <= 4096); madd with the sums gives the offset correction.
        const __m256i sc32 = _mm256_slli_epi16(sc16[i], 5);
        for (int j = 0; j < T; ++j) {
          const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs[j] + 16 * b));
          const __m256i v = _mm256_sub_epi32(iacc[i][j], _mm256_madd_epi16(sc32, bs));
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(d * xd[j][b]), acc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i, hsum8(acc[i][j]));
  }
};

// =============================================================================================
// Prefill (n_tok >= 4): panel kernels, as in quants_avx512_impl.h. The R weight rows of a tile are
// unpacked once per slab of n_in into an L1-resident panel laid out as the micro-kernel consumes it,
// and every token tile of the chunk runs over that panel, so unpacking is paid once per row per
// token chunk rather than once per row per T tokens.

inline void put(const MatmulArgs& a, int64_t t, int64_t r, float v, bool first) {
  float* p = a.y + t * a.ldy + r;
  *p = (first && !a.accumulate) ? v : *p + v;
}

template <class P, int RR, int TT>
void micro_dispatch(int rr, int tt, const MatmulArgs& a, const typename P::Unit* panel, int64_t nu, int64_t u0,
                    int64_t r, int64_t t) {
  if constexpr (RR > 1) {
    if (rr < RR) return micro_dispatch<P, RR - 1, TT>(rr, tt, a, panel, nu, u0, r, t);
  }
  if constexpr (TT > 1) {
    if (tt < TT) return micro_dispatch<P, RR, TT - 1>(rr, tt, a, panel, nu, u0, r, t);
  }
  P::template micro<RR, TT>(a, panel, nu, u0, r, t);
}

template <class P, int R, int T>
void gemm(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nunits = (a.n_in + P::kUnitElems - 1) / P::kUnitElems;
  const int64_t tc = token_chunk(a.n_in, a.n_tok, T);
  alignas(64) typename P::Unit panel[R * P::kSlabUnits];
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += tc) {
    const int64_t t1 = t0 + tc < a.n_tok ? t0 + tc : a.n_tok;
    for (int64_t r = r0; r < r1; r += R) {
      const int rr = int(r1 - r < R ? r1 - r : R);
      for (int64_t u0 = 0; u0 < nunits; u0 += P::kSlabUnits) {
        const int64_t nu = nunits - u0 < P::kSlabUnits ? nunits - u0 : P::kSlabUnits;
        for (int i = 0; i < rr; ++i) P::pack(a, r + i, u0, nu, panel + i * nu);
        for (int64_t t = t0; t < t1; t += T) {
          const int tt = int(t1 - t < T ? t1 - t : T);
          micro_dispatch<P, R, T>(rr, tt, a, panel, nu, u0, r, t);
        }
      }
    }
  }
}

// The integer part both K-quant panels share: for panel rows i < R and activation rows j < T,
// iacc[i][j] = the super-block's 8 chunks of 32 u8 weights times s8 activations, each chunk's
// pair sums weighted by its int16 scale vector.
template <int R, int T, class Unit>
inline void kquant_dots(__m256i (&iacc)[R][T], const Unit* panel, int64_t nu, int64_t u, const int8_t* const (&xq)[T]) {
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) iacc[i][j] = _mm256_setzero_si256();
  for (int k = 0; k < 8; ++k) {
    for (int i = 0; i < R; ++i) {
      const Unit& p = panel[i * nu + u];
      const __m256i wq = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.q[k]));
      const __m256i sv = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.sv[k]));
      for (int j = 0; j < T; ++j) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[j] + QK_K * u + 32 * k));
        iacc[i][j] = _mm256_add_epi32(iacc[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xv), sv));
      }
    }
  }
}

// The micro-kernel both K-quant panels share: activation rows t..t+T against panel rows r..r+R,
// over the units (super-blocks) u0..u0+nu. side(row, unit) loads an activation row's per-unit
// correction input; combine folds one unit's integer dots into a float accumulator (vectors by
// reference: GCC warns that passing them by value from a lambda changes the ABI).
template <int R, int T, class Unit, class Side, class Combine>
inline void kquant_micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t, Side side,
                         Combine combine) {
  const int64_t nsb = a.n_in / QK_K;
  const int8_t* xq[T];
  const float* xd[T];
  for (int j = 0; j < T; ++j) {
    xq[j] = a.aq + (t + j) * a.n_in + QK_K * u0;
    xd[j] = a.ad + (t + j) * nsb + u0;
  }
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t u = 0; u < nu; ++u) {
    __m256i iacc[R][T];
    kquant_dots<R, T>(iacc, panel, nu, u, xq);
    for (int j = 0; j < T; ++j) {
      const __m256 dx = _mm256_set1_ps(xd[j][u]);
      const auto sd = side(t + j, u0 + u);
      for (int i = 0; i < R; ++i) combine(panel[i * nu + u], iacc[i][j], dx, sd, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) put(a, t + j, r + i, hsum8(acc[i][j]), u0 == 0);
}

// ---- Q4_K panel: per row and super-block, the 8 sub-blocks of 32 nibbles as u8 in activation
// order, each sub-block's scale as an int16 vector, d, and dmin*m_j as floats. Per (row, token,
// sub-block): maddubs + madd(scale) + add; per super-block acc += cvt(iacc) * d*dx minus the mins
// term (dmin*m) . (dx*sum32(x)) taken from the driver's a.amin.
struct PanelQ4K {
  struct alignas(64) Unit {
    uint8_t q[8][32];
    int16_t sv[8][16];
    float mins[8];
    float d;
    float pad[7];
  };
  static constexpr int64_t kUnitElems = 256, kSlabUnits = 8;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const block_q4_K* w = reinterpret_cast<const block_q4_K*>(a.w + row * a.w_stride) + u0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t u = 0; u < nu; ++u) {
      uint64_t sc, mn;
      q4k_scales(w[u].scales, sc, mn);
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].qs + 32 * c));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].q[2 * c]), _mm256_and_si256(q, m4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].q[2 * c + 1]), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      }
      for (int j = 0; j < 8; ++j)
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].sv[j]), _mm256_set1_epi16(int16_t((sc >> (8 * j)) & 0xFF)));
      const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn))));
      _mm256_store_ps(dst[u].mins, _mm256_mul_ps(m, _mm256_set1_ps(h2f(w[u].dmin))));
      dst[u].d = h2f(w[u].d);
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    // Per activation row and super-block: the 8 sub-block sums times the activation scale (amin).
    kquant_micro<R, T>(
        a, panel, nu, u0, r, t, [&](int64_t row, int64_t u) { return _mm256_loadu_ps(a.amin + row * (a.n_in / 32) + 8 * u); },
        [](const Unit& p, const __m256i& dots, const __m256& dx, const __m256& bx, __m256& acc) {
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_mul_ps(dx, _mm256_set1_ps(p.d)), acc);
          acc = _mm256_fnmadd_ps(_mm256_load_ps(p.mins), bx, acc);
        });
  }
};

// ---- Q6_K panel: per row and super-block, the 8 chunks of 32 six-bit values as u8 in activation
// order, per chunk the int16 scale vector (lanes 0-7 and 8-15: its two 16-element groups), 32*scale
// as int16 for the offset correction, and d.
struct PanelQ6K {
  struct alignas(64) Unit {
    uint8_t q[8][32];
    int16_t sv[8][16];
    int16_t sc32[16];
    float d;
    float pad[7];
  };
  static constexpr int64_t kUnitElems = 256, kSlabUnits = 8;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const block_q6_K* w = reinterpret_cast<const block_q6_K*>(a.w + row * a.w_stride) + u0;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t u = 0; u < nu; ++u) {
      for (int h = 0; h < 2; ++h) {
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].qh + 32 * h));
        __m256i* q = reinterpret_cast<__m256i*>(dst[u].q[4 * h]);
        _mm256_store_si256(q + 0, _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)));
        _mm256_store_si256(q + 1, _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)));
        _mm256_store_si256(q + 2, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2)));
        _mm256_store_si256(q + 3, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                  _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)));
      }
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[u].scales)));
      for (int k = 0; k < 8; ++k)
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].sv[k]), q6k_scale_vec(sc16, k));
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].sc32), _mm256_slli_epi16(sc16, 5));
      dst[u].d = h2f(w[u].d);
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    // Per activation row and super-block: its 16 group sums (the -32 offset's correction).
    kquant_micro<R, T>(
        a, panel, nu, u0, r, t,
        [&](int64_t row, int64_t u) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.as + row * (a.n_in / 16) + 16 * u)); },
        [](const Unit& p, const __m256i& dots, const __m256& dx, const __m256i& bs, __m256& acc) {
          const __m256i v = _mm256_sub_epi32(dots, _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.sc32)), bs));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dx, _mm256_set1_ps(p.d)), acc);
        });
  }
};

// ---- Q8_0 / Q4_0 panel: one unit per block of 32, the weights as signed int8 (Q4_0: q - 8), their
// absolute values (for the sign trick) and d_w.
template <bool Q4>
struct PanelQ32 {
  struct alignas(64) Unit {
    int8_t w[32];
    uint8_t aw[32];
    float dw;
    float pad[15];
  };
  static constexpr int64_t kUnitElems = 32, kSlabUnits = 32;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const uint8_t* rowp = a.w + row * a.w_stride;
    for (int64_t u = 0; u < nu; ++u) {
      float dw;
      const __m256i w = Q32K<Q4>::weights(rowp, u0 + u, dw);
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].w), w);
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].aw), _mm256_sign_epi8(w, w));
      dst[u].dw = dw;
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    const int64_t nb = a.n_in / 32;
    const int8_t* xq[T];
    const float* xd[T];
    for (int j = 0; j < T; ++j) xq[j] = a.aq + (t + j) * a.n_in + 32 * u0, xd[j] = a.ad + (t + j) * nb + u0;
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t u = 0; u < nu; ++u) {
      for (int i = 0; i < R; ++i) {
        const Unit& p = panel[i * nu + u];
        const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.w));
        const __m256i aw = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.aw));
        for (int j = 0; j < T; ++j) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[j] + 32 * u));
          const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, w)), ones);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(p.dw * xd[j][u]), acc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) put(a, t + j, r + i, hsum8(acc[i][j]), u0 == 0);
  }
};

// =============================================================================================
// Prefill from 8 tokens: outer-product GEMMs (no lane reductions), as in quants_avx512_impl.h at
// 8 lanes: a block of weight rows is packed once per token chunk and slab into a panel whose vector
// k holds element k of consecutive rows, and each token tile adds panel vectors times broadcast
// activations into rows x tokens accumulators.

// The rows of a block that exist: masks (all-ones lanes) of its 8-row vectors; full when all do
// (plain loads and stores then: masked stores are slow on some AMD cores).
template <int V>
struct RowMasks {
  __m256i m[V];
  bool full;
  explicit RowMasks(int rows) : full(rows >= 8 * V) {
    for (int v = 0; v < V; ++v) m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows - 8 * v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

// y[0..8V) of each of T tokens (rows of y ldy apart) gets (overwrite) or adds c[v][j]. Inlined and
// unrolled: otherwise GCC keeps the caller's accumulators in memory through its whole k loop.
template <int V, int T>
__attribute__((always_inline)) inline void put_tile(float* y, int64_t ldy, const __m256 (&c)[V][T], const RowMasks<V>& rm, bool overwrite) {
#pragma GCC unroll 16
  for (int j = 0; j < T; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* p = y + j * ldy + 8 * v;
      if (rm.full) {
        _mm256_storeu_ps(p, overwrite ? c[v][j] : _mm256_add_ps(_mm256_loadu_ps(p), c[v][j]));
      } else {
        const __m256 s = overwrite ? c[v][j] : _mm256_add_ps(_mm256_maskload_ps(p, rm.m[v]), c[v][j]);
        _mm256_maskstore_ps(p, rm.m[v], s);
      }
    }
}

// The next block's weights come from memory: a share of its rows is asked for per token tile, so
// that its packing finds them in cache rather than waiting on each row's first load.
struct NextBlockPrefetch {
  const uint8_t* first;  // the next block's first row, at this slab
  size_t stride;
  int64_t rows, bytes, ntiles, done = 0;
  void tile(int64_t t) {
    for (const int64_t end = (t + 1) * rows / ntiles; done < end; ++done)
      for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(first + done * stride + o), _MM_HINT_T0);
  }
};

// In place: r[i] (row i, 8 consecutive k) becomes r[k] (column k, 8 rows).
inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4h + c]: rows 4h..4h+3 of columns c (low lane) and c + 4 (high lane).
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// ---- float weights, prefill. Tokens in chunks of kFgChunk, n_in in slabs of kFgKc. Per slab, the
// chunk's activations are packed transposed, [tile of kFgTok tokens][k][kFgTok]; every block of
// kFgRows weight rows is converted to f32 and transposed into a panel [k][kFgRows] (32 KB, L1); the
// micro-kernel adds panel column k (16 rows, two vectors) times the broadcast x[t][k] into 2 x 6
// accumulators (15 of the 16 registers with the two weight vectors and the broadcast).
// Slabs of 512 (were 256: half the passes of the accumulators through y): f16 prefill of 512 tokens
// at 1 thread +2-5%, of 64 +1%; bf16 of 512 +2-4% (the builds in turn, Zen 5).
constexpr int kFgRows = 16, kFgTok = 6, kFgKc = 512, kFgChunk = 42 * kFgTok;
constexpr int kFgVecs = kFgRows / 8;

// Up to 8 weights from element i as f32, zero beyond n.
template <int WT>
inline __m256 loadw8_part(const uint8_t* w, int64_t i, int64_t n) {
  alignas(32) float f[8] = {};
  for (int64_t e = 0; e < n && e < 8; ++e) f[e] = loadw1<WT>(w, i + e);
  return _mm256_load_ps(f);
}

// panel[k * kFgRows + i] = W[row + i][k0 + k] as f32 for i < rows, k < kc; zero elsewhere up to kcp.
template <int WT>
void fg_pack_panel(const MatmulArgs& a, int64_t row, int rows, int64_t k0, int64_t kc, int64_t kcp, float* panel) {
  for (int g = 0; g < kFgVecs; ++g)
    for (int64_t kb = 0; kb < kcp; kb += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) {
        const int ri = 8 * g + i;
        const uint8_t* w = a.w + (row + ri) * a.w_stride;
        v[i] = ri >= rows ? _mm256_setzero_ps() : kc - kb >= 8 ? loadw8<WT>(w, k0 + kb) : loadw8_part<WT>(w, k0 + kb, kc - kb);
      }
      transpose8(v);
      for (int k = 0; k < 8; ++k) _mm256_store_ps(panel + (kb + k) * kFgRows + 8 * g, v[k]);
    }
}

// y[t][r..r+kFgRows) (+)= panel^T . xt for T tokens.
template <int T>
void fg_micro(const float* panel, const float* xt, int64_t kcp, float* y, int64_t ldy, const RowMasks<kFgVecs>& rm, bool overwrite) {
  __m256 c[kFgVecs][T];
  for (int v = 0; v < kFgVecs; ++v)
    for (int j = 0; j < T; ++j) c[v][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kcp; ++k) {
    __m256 w[kFgVecs];
    for (int v = 0; v < kFgVecs; ++v) w[v] = _mm256_load_ps(panel + k * kFgRows + 8 * v);
    const float* xk = xt + k * kFgTok;
    for (int j = 0; j < T; ++j) {
      const __m256 xb = _mm256_broadcast_ss(xk + j);
      for (int v = 0; v < kFgVecs; ++v) c[v][j] = _mm256_fmadd_ps(w[v], xb, c[v][j]);
    }
  }
  put_tile(y, ldy, c, rm, overwrite);
}

template <int T = kFgTok>
void fg_micro_n(int tt, const float* panel, const float* xt, int64_t kcp, float* y, int64_t ldy, const RowMasks<kFgVecs>& rm,
                bool overwrite) {
  if constexpr (T > 1) {
    if (tt < T) return fg_micro_n<T - 1>(tt, panel, xt, kcp, y, ldy, rm, overwrite);
  }
  fg_micro<T>(panel, xt, kcp, y, ldy, rm, overwrite);
}

// dst[k * kFgTok + j] = x[t + j][k0 + k] for j < tt, k < kc; zero elsewhere up to kcp: 8 x 8 blocks
// transposed, each column stored as 8 lanes whose last two spill into the next column's first two,
// which the next store (k ascending) overwrites; so two floats past the end must be writable.
inline void fg_pack_tokens(const MatmulArgs& a, int64_t t, int tt, int64_t k0, int64_t kc, int64_t kcp, float* dst) {
  static_assert(kFgTok <= 8, "a column is one vector");
  for (int64_t kb = 0; kb < kcp; kb += 8) {
    __m256 v[8];
    for (int j = 0; j < 8; ++j) {
      const float* src = a.x + (t + j) * a.n_in + k0 + kb;
      v[j] = j >= tt ? _mm256_setzero_ps() : kc - kb >= 8 ? _mm256_loadu_ps(src) : loadw8_part<0>(reinterpret_cast<const uint8_t*>(src), 0, kc - kb);
    }
    transpose8(v);
    for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (kb + k) * kFgTok, v[k]);
  }
}

template <int WT>
void float_gemm(const MatmulArgs& a, int64_t r0, int64_t r1) {
  constexpr int64_t wbytes = WT == 0 ? 4 : 2;
  alignas(64) float panel[kFgKc * kFgRows];
  // The packed activations of one chunk and slab (kFgChunk x kFgKc floats, 516 KB: within a 1 MB L2).
  static thread_local Scratch scratch;
  float* const xt = scratch.get<float>(size_t(kFgChunk) * kFgKc + 8);  // + the last column's spill
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += kFgChunk) {
    const int64_t nt = a.n_tok - t0 < kFgChunk ? a.n_tok - t0 : kFgChunk;
    const int64_t ntiles = (nt + kFgTok - 1) / kFgTok;
    for (int64_t k0 = 0; k0 < a.n_in; k0 += kFgKc) {
      const int64_t kc = a.n_in - k0 < kFgKc ? a.n_in - k0 : kFgKc;
      const int64_t kcp = (kc + 7) / 8 * 8;
      for (int64_t tile = 0; tile < ntiles; ++tile)
        fg_pack_tokens(a, t0 + tile * kFgTok, int(nt - tile * kFgTok < kFgTok ? nt - tile * kFgTok : kFgTok), k0, kc, kcp,
                       xt + tile * kcp * kFgTok);
      const bool overwrite = k0 == 0 && !a.accumulate;
      for (int64_t r = r0; r < r1; r += kFgRows) {
        const int rr = int(r1 - r < kFgRows ? r1 - r : kFgRows);
        fg_pack_panel<WT>(a, r, rr, k0, kc, kcp, panel);
        const RowMasks<kFgVecs> rm(rr);
        const int64_t next_rows = r + kFgRows < r1 ? (r1 - r - kFgRows < kFgRows ? r1 - r - kFgRows : kFgRows) : 0;
        NextBlockPrefetch next{a.w + (r + kFgRows) * a.w_stride + k0 * wbytes, a.w_stride, next_rows, kc * wbytes, ntiles};
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          next.tile(tile);
          const int tt = int(nt - tile * kFgTok < kFgTok ? nt - tile * kFgTok : kFgTok);
          fg_micro_n(tt, panel, xt + tile * kcp * kFgTok, kcp, a.y + (t0 + tile * kFgTok) * a.ldy + r, a.ldy, rm, overwrite);
        }
      }
    }
  }
}

// ---- Q8_0 / Q4_0 / Q4_K weights, prefill: an outer-product integer GEMM over blocks of 32 (Q4_K:
// its sub-blocks). Per slab of kQgBlocks blocks, a block of 16 weight rows is packed in 4-byte groups
// interleaved across rows ([block][group of 4][row][4]): Q4_0 and Q4_K as their nibbles (u8 <= 15),
// Q8_0 as int8 beside its absolute values; with per row and block its scale (Q4_K: d * sc_j) and,
// for Q4_K, dmin * m_j. The chunk's s8 activations are packed in the same groups, [tile][k/4][token]
// [4]. Per group of 4 and token, one maddubs covers 8 rows: nibbles x s8 pairs (<= 3810) add up in
// int16 over the block's 8 groups (<= 30480) and widen once per block; Q8_0 takes the sign trick
// (|w| as u8, x with w's sign) and widens every group. Each block then folds into f32: acc +=
// float(dot) * scale[rows] * d_x[token], Q4_0 with its -8 offset as -8 * (the block's x sum), Q4_K
// minus dmin m_j[rows] * amin[token][block]. The integer dot products equal the other paths'.
enum class Qg { Q8_0, Q4_0, Q4_K };
constexpr int kQgRows = 16, kQgTok = 3, kQgBlocks = 16, kQgChunk = 84 * kQgTok;
constexpr int kQgVecs = kQgRows / 8;

struct alignas(32) QgBlock {
  int8_t w[8][kQgRows][4];
  uint8_t aw[8][kQgRows][4];  // Q8_0: |w|
  float d[kQgRows];
  float mn[kQgRows];  // Q4_K: dmin * m_j
};

// Row `row`'s block `blk` as 32 weights in element order (Q4_0 / Q4_K: the nibbles), with its scale
// (and Q4_K's min).
template <Qg K>
inline __m256i qg_row_block(const MatmulArgs& a, int64_t row, int64_t blk, float& d, float& mn) {
  const uint8_t* rp = a.w + row * a.w_stride;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  if (K == Qg::Q4_0) {
    const block_q4_0& q = reinterpret_cast<const block_q4_0*>(rp)[blk];
    d = h2f(q.d);
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), m4);
  }
  if (K == Qg::Q8_0) {
    const block_q8_0& q = reinterpret_cast<const block_q8_0*>(rp)[blk];
    d = h2f(q.d);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.qs));
  }
  // Q4_K sub-block j: the nibbles of qs[32 (j/2) ..], low for even j, high for odd.
  const int64_t j = blk % 8;
  const block_q4_K& q = reinterpret_cast<const block_q4_K*>(rp)[blk / 8];
  uint64_t sc, mins;
  q4k_scales(q.scales, sc, mins);
  d = h2f(q.d) * float((sc >> (8 * j)) & 0xFF);
  mn = h2f(q.dmin) * float((mins >> (8 * j)) & 0xFF);
  const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.qs + 32 * (j / 2)));
  return _mm256_and_si256(j % 2 ? _mm256_srli_epi16(qs, 4) : qs, m4);
}

// Packs blocks b0..b0+nb of rows row..row+rows (zero beyond) into the panel, 8 rows of a block at a
// time as an 8 x 8 transpose of 32-bit groups.
template <Qg K>
void qg_pack_panel(const MatmulArgs& a, int64_t row, int rows, int64_t b0, int64_t nb, QgBlock* panel) {
  for (int v = 0; v < kQgVecs; ++v)
    for (int64_t b = 0; b < nb; ++b) {
      __m256 g[8];
      for (int i = 0; i < 8; ++i) {
        const int ri = 8 * v + i;
        float d = 0, mn = 0;
        const __m256i w = ri < rows ? qg_row_block<K>(a, row + ri, b0 + b, d, mn) : _mm256_setzero_si256();
        panel[b].d[ri] = d, panel[b].mn[ri] = mn;
        g[i] = _mm256_castsi256_ps(w);
      }
      transpose8(g);  // g[k]: 32-bit group k of the 8 rows
      for (int k = 0; k < 8; ++k) {
        const __m256i gk = _mm256_castps_si256(g[k]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(&panel[b].w[k][8 * v][0]), gk);
        if (K == Qg::Q8_0) _mm256_store_si256(reinterpret_cast<__m256i*>(&panel[b].aw[k][8 * v][0]), _mm256_sign_epi8(gk, gk));
      }
    }
}

// xd[j * xd_stride + b >> xd_shift]: token j's activation scale for block b; xs (Q4_0): the block's
// activation sums (a.as rows); am (Q4_K): a.amin rows.
template <Qg K, int T>
void qg_micro(const QgBlock* panel, int64_t nb, const int8_t* xt, const float* xd, int64_t xd_stride, int xd_shift,
              const int16_t* xs, const float* am, int64_t x_stride, float* y, int64_t ldy, const RowMasks<kQgVecs>& rm,
              bool overwrite) {
  __m256 acc[kQgVecs][T];
  for (int v = 0; v < kQgVecs; ++v)
    for (int j = 0; j < T; ++j) acc[v][j] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const QgBlock& p = panel[b];
    __m256i dot[kQgVecs][T];  // Q8_0: int32 lanes; Q4_0 / Q4_K: int16 pairs
    for (int v = 0; v < kQgVecs; ++v)
      for (int j = 0; j < T; ++j) dot[v][j] = _mm256_setzero_si256();
    const int8_t* xb = xt + b * 8 * kQgTok * 4;
#pragma GCC unroll 1
    for (int g = 0; g < 8; ++g) {
      __m256i w[kQgVecs], aw[kQgVecs];
      for (int v = 0; v < kQgVecs; ++v) {
        w[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(&p.w[g][8 * v][0]));
        if (K == Qg::Q8_0) aw[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(&p.aw[g][8 * v][0]));
      }
      for (int j = 0; j < T; ++j) {
        int32_t x4;
        __builtin_memcpy(&x4, xb + (g * kQgTok + j) * 4, 4);
        const __m256i xv = _mm256_set1_epi32(x4);
        for (int v = 0; v < kQgVecs; ++v) {
          if (K == Qg::Q8_0)
            dot[v][j] = _mm256_add_epi32(dot[v][j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw[v], _mm256_sign_epi8(xv, w[v])), ones));
          else
            dot[v][j] = _mm256_add_epi16(dot[v][j], _mm256_maddubs_epi16(w[v], xv));
        }
      }
    }
    for (int v = 0; v < kQgVecs; ++v) {
      const __m256 dw = _mm256_load_ps(p.d + 8 * v);
      for (int j = 0; j < T; ++j) {
        __m256i d32 = K == Qg::Q8_0 ? dot[v][j] : _mm256_madd_epi16(dot[v][j], ones);
        if (K == Qg::Q4_0) d32 = _mm256_add_epi32(d32, _mm256_set1_epi32(-8 * int32_t(xs[j * x_stride + b])));
        acc[v][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d32), _mm256_mul_ps(dw, _mm256_set1_ps(xd[j * xd_stride + (b >> xd_shift)])),
                                    acc[v][j]);
        if (K == Qg::Q4_K) acc[v][j] = _mm256_fnmadd_ps(_mm256_load_ps(p.mn + 8 * v), _mm256_set1_ps(am[j * x_stride + b]), acc[v][j]);
      }
    }
  }
  put_tile(y, ldy, acc, rm, overwrite);
}

template <Qg K, int T = kQgTok>
void qg_micro_n(int tt, const QgBlock* panel, int64_t nb, const int8_t* xt, const float* xd, int64_t xd_stride, int xd_shift,
                const int16_t* xs, const float* am, int64_t x_stride, float* y, int64_t ldy, const RowMasks<kQgVecs>& rm,
                bool overwrite) {
  if constexpr (T > 1) {
    if (tt < T) return qg_micro_n<K, T - 1>(tt, panel, nb, xt, xd, xd_stride, xd_shift, xs, am, x_stride, y, ldy, rm, overwrite);
  }
  qg_micro<K, T>(panel, nb, xt, xd, xd_stride, xd_shift, xs, am, x_stride, y, ldy, rm, overwrite);
}

template <Qg K>
void q32_gemm(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb_row = a.n_in / 32;
  // Activation scales: one per block of 32 (Q8_0 / Q4_0), one per 256 (Q4_K: 8 blocks).
  const int xd_shift = K == Qg::Q4_K ? 3 : 0;
  const int64_t xd_stride = nb_row >> xd_shift;
  QgBlock panel[kQgBlocks];
  static thread_local Scratch scratch;
  int8_t* const xt = scratch.get<int8_t>(size_t(kQgChunk) * 32 * kQgBlocks);
  const int64_t bytes_per_block = K == Qg::Q4_0 ? int64_t(sizeof(block_q4_0)) : K == Qg::Q8_0 ? int64_t(sizeof(block_q8_0))
                                                                                             : int64_t(sizeof(block_q4_K)) / 8;
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += kQgChunk) {
    const int64_t nt = a.n_tok - t0 < kQgChunk ? a.n_tok - t0 : kQgChunk;
    const int64_t ntiles = (nt + kQgTok - 1) / kQgTok;
    for (int64_t b0 = 0; b0 < nb_row; b0 += kQgBlocks) {
      const int64_t nb = nb_row - b0 < kQgBlocks ? nb_row - b0 : kQgBlocks;
      // Activations [tile][k/4][token][4]; absent tokens are zero.
      for (int64_t tile = 0; tile < ntiles; ++tile) {
        int8_t* dst = xt + tile * nb * 32 * kQgTok;
        for (int j = 0; j < kQgTok; ++j) {
          const int64_t t = tile * kQgTok + j;
          const int8_t* src = a.aq + (t0 + t) * a.n_in + 32 * b0;
          for (int64_t g = 0; g < nb * 8; ++g)
            for (int e = 0; e < 4; ++e) dst[(g * kQgTok + j) * 4 + e] = t < nt ? src[4 * g + e] : int8_t(0);
        }
      }
      const bool overwrite = b0 == 0 && !a.accumulate;
      for (int64_t r = r0; r < r1; r += kQgRows) {
        const int rr = int(r1 - r < kQgRows ? r1 - r : kQgRows);
        qg_pack_panel<K>(a, r, rr, b0, nb, panel);
        const RowMasks<kQgVecs> rm(rr);
        const int64_t next_rows = r + kQgRows < r1 ? (r1 - r - kQgRows < kQgRows ? r1 - r - kQgRows : kQgRows) : 0;
        NextBlockPrefetch next{a.w + (r + kQgRows) * a.w_stride + b0 * bytes_per_block, a.w_stride, next_rows,
                               nb * bytes_per_block, ntiles};
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          next.tile(tile);
          const int64_t t = t0 + tile * kQgTok;
          const int tt = int(nt - tile * kQgTok < kQgTok ? nt - tile * kQgTok : kQgTok);
          qg_micro_n<K>(tt, panel, nb, xt + tile * nb * 32 * kQgTok, a.ad + t * xd_stride + (b0 >> xd_shift), xd_stride, xd_shift,
                        K == Qg::Q4_0 ? a.as + t * nb_row + b0 : nullptr, K == Qg::Q4_K ? a.amin + t * nb_row + b0 : nullptr,
                        nb_row, a.y + t * a.ldy + r, a.ldy, rm, overwrite);
        }
      }
    }
  }
}

// ---- Q4_0 decode (one token): four blocks (two pairs, 128 weights) a step, rows one at a time so
// that the weights are read as one sequential stream (x stays in L1). The token's activations are
// first laid out per pair of blocks as the nibbles come: the low halves (elements 0-15) of the two
// blocks, then the high halves, each 32 bytes; per 32-bit lane the block's d_x, and a start of -8 *
// (the block's x sum) in its first lane. maddubs of the raw nibbles (u8) against x (s8) twice, added
// in int16 (<= 7620), widened once: sum (q - 8) x per block in its 4 lanes, without the sign trick.
struct alignas(32) Q40Pair {
  int8_t lo[32], hi[32];
  int32_t init[8];
  float dx[8];
};

// acc plus a pair's sum of (q - 8) x per block (in its 4 lanes) times d_w d_x; dw holds converted
// scales, and `spread` picks the pair's two into their blocks' lanes.
inline __m256 q40_pair_fma(__m256 acc, __m256i q, const Q40Pair& x, __m256 dw, __m256i spread) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(q, m4), _mm256_load_si256(reinterpret_cast<const __m256i*>(x.lo))),
                                     _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                                          _mm256_load_si256(reinterpret_cast<const __m256i*>(x.hi))));
  const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)), _mm256_load_si256(reinterpret_cast<const __m256i*>(x.init)));
  const __m256 scale = _mm256_mul_ps(_mm256_permutevar8x32_ps(dw, spread), _mm256_load_ps(x.dx));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc);
}
inline __m256i q40_load_pair(const block_q4_0* b) {
  return _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)), _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
}

void q4_0_gemv(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32, npairs = (nb + 1) / 2;
  static thread_local Scratch scratch;
  Q40Pair* xp = scratch.get<Q40Pair>(size_t(npairs));
  for (int64_t g = 0; g < npairs; ++g) {
    Q40Pair& x = xp[g];
    for (int k = 0; k < 2; ++k) {
      const int64_t b = 2 * g + k;
      const bool has = b < nb;
      for (int e = 0; e < 16; ++e) {
        x.lo[16 * k + e] = has ? a.aq[32 * b + e] : 0;
        x.hi[16 * k + e] = has ? a.aq[32 * b + 16 + e] : 0;
      }
      for (int l = 0; l < 4; ++l) {
        x.init[4 * k + l] = (l == 0 && has) ? -8 * int32_t(a.as[b]) : 0;
        x.dx[4 * k + l] = has ? a.ad[b] : 0.0f;
      }
    }
  }
  // d of blocks 0, 1 (spread01) or 2, 3 (spread23) of a converted group of four, each in 4 lanes.
  const __m256i spread01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), spread23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
  const int64_t full = nb / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const block_q4_0* w = reinterpret_cast<const block_q4_0*>(a.w + r * a.w_stride);
    // Four blocks a step into two accumulators: with one, each step waited on the last one's FMA
    // (L3-resident 1.08-1.11x, decode passes over the q4_0 file 1.06x / 1.08x at 1 / 2 threads,
    // Zen 5); their four d are one f16 -> f32 conversion.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 2 <= full; g += 2) {
      const block_q4_0* b = w + 2 * g;
      _mm_prefetch(reinterpret_cast<const char*>(b) + kDecodeAhead, _MM_HINT_T0);  // further on in the stream
      _mm_prefetch(reinterpret_cast<const char*>(b) + kDecodeAhead + 64, _MM_HINT_T0);
      const uint64_t d4 = uint64_t(b[0].d) | uint64_t(b[1].d) << 16 | uint64_t(b[2].d) << 32 | uint64_t(b[3].d) << 48;
      const __m256 dw = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(d4))));
      acc0 = q40_pair_fma(acc0, q40_load_pair(b), xp[g], dw, spread01);
      acc1 = q40_pair_fma(acc1, q40_load_pair(b + 2), xp[g + 1], dw, spread23);
    }
    for (; g < npairs; ++g) {  // a last pair, or an odd last block: the absent one is zero weights with zero scale
      const block_q4_0* b = w + 2 * g;
      const bool pair = g < full;
      const __m256i q = pair ? q40_load_pair(b) : _mm256_set_m128i(_mm_setzero_si128(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
      const uint32_t d2 = uint32_t(b[0].d) | (pair ? uint32_t(b[1].d) << 16 : 0u);
      const __m256 dw = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(int(d2))));
      acc0 = q40_pair_fma(acc0, q, xp[g], dw, spread01);
    }
    store(a, 0, r, hsum8(_mm256_add_ps(acc0, acc1)));
  }
}

// ---- BF16 decode (one token): 16 weights (32 bytes) a step, split without a conversion. A bf16 is
// the top half of its f32, so the step's even elements are its 32-bit lanes shifted left by 16 and
// its odd elements the lanes with their low halves cleared: a shift and an and, against a widening
// load and a shift per 8 weights in FloatK. The token's activations are laid out once per call as
// the even and the odd elements of each step; each row keeps an accumulator for each. Rows in two
// streams (two_streams), each row's successor prefetched as in FloatK.
template <int R>
inline void bf16_gemv_rows(const MatmulArgs& a, int64_t r, int64_t step, const float* xeo, int64_t steps) {
  const uint8_t* w[R];
  for (int i = 0; i < R; ++i) w[i] = a.w + (r + i * step) * a.w_stride;
  const __m256i high = _mm256_set1_epi32(int32_t(0xFFFF0000u));
  __m256 even[R], odd[R];
  for (int i = 0; i < R; ++i) even[i] = odd[i] = _mm256_setzero_ps();
  for (int64_t s = 0; s < steps; ++s) {
    const __m256 xe = _mm256_load_ps(xeo + 16 * s), xo = _mm256_load_ps(xeo + 16 * s + 8);
    if (s % 2 == 0)  // one prefetch a cache line (two steps)
      for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(w[i]) + a.w_stride + 32 * s, _MM_HINT_NTA);
    for (int i = 0; i < R; ++i) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i] + 32 * s));
      even[i] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, even[i]);
      odd[i] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, high)), xo, odd[i]);
    }
  }
  for (int i = 0; i < R; ++i) {
    float sum = hsum8(_mm256_add_ps(even[i], odd[i]));
    for (int64_t k = 16 * steps; k < a.n_in; ++k) sum += loadw1<2>(w[i], k) * a.x[k];
    store(a, 0, r + i * step, sum);
  }
}

void bf16_gemv(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t steps = a.n_in / 16;
  static thread_local Scratch scratch;
  float* xeo = scratch.get<float>(size_t(16 * steps));  // per step: its 8 even elements, then its 8 odd
  for (int64_t s = 0; s < steps; ++s)
    for (int e = 0; e < 8; ++e) xeo[16 * s + e] = a.x[16 * s + 2 * e], xeo[16 * s + 8 + e] = a.x[16 * s + 2 * e + 1];
  two_streams(
      r0, r1, [&](int64_t r, int64_t step) { bf16_gemv_rows<2>(a, r, step, xeo, steps); },
      [&](int64_t r) { bf16_gemv_rows<1>(a, r, 0, xeo, steps); });
}

// Float and Q8_0 / Q4_0 / Q4_K weights take the outer-product GEMMs from this many tokens.
constexpr int64_t kGemmMinTok = 8;

// Decode (and fewer than 4 tokens) streams the weights directly; prefill packs panels.
template <class K, class P, int RD, int RP, int TP>
void run_q(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok < 4)
    run<K, RD, RD, 2>(a, r0, r1);
  else
    gemm<P, RP, TP>(a, r0, r1);
}

template <int WT>
void mm_float(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok >= kGemmMinTok) return float_gemm<WT>(a, r0, r1);
  if (a.n_tok == 1) return WT == 2 ? bf16_gemv(a, r0, r1) : decode_two_streams<FloatK<WT>>(a, r0, r1);
  run<FloatK<WT>, 4, 4, 3>(a, r0, r1);  // 2-7 tokens: tiles of 4 rows x 3 tokens
}
void mm_f32(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<0>(a, r0, r1); }
void mm_f16(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<1>(a, r0, r1); }
void mm_bf16(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<2>(a, r0, r1); }
void mm_q8_0(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok >= kGemmMinTok) return q32_gemm<Qg::Q8_0>(a, r0, r1);
  if (a.n_tok == 1) return decode_two_streams<Q32K<false>>(a, r0, r1);
  run_q<Q32K<false>, PanelQ32<false>, 4, 3, 3>(a, r0, r1);
}
void mm_q4_0(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok >= kGemmMinTok) return q32_gemm<Qg::Q4_0>(a, r0, r1);
  if (a.n_tok == 1) return q4_0_gemv(a, r0, r1);
  run_q<Q32K<true>, PanelQ32<true>, 4, 3, 3>(a, r0, r1);
}
void mm_q4_K(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok >= kGemmMinTok) return q32_gemm<Qg::Q4_K>(a, r0, r1);
  if (a.n_tok == 1) return decode_two_streams<Q4KK>(a, r0, r1);  // 1.05-1.07x over single rows at 1 thread
  run_q<Q4KK, PanelQ4K, 1, 3, 2>(a, r0, r1);
}
// Decode one row at a time: the row is then one stream prefetched kDecodeAhead on; tiles of
// 2 rows ran decode-shaped Q6_K matmuls at 43-45 tok/s-equivalent on one Zen 5 core, single rows 56-60
// (2 threads: 75-100 -> 100-129; alternating, same run).
void mm_q6_K(const MatmulArgs& a, int64_t r0, int64_t r1) { run_q<Q6KK, PanelQ6K, 1, 3, 2>(a, r0, r1); }

// Weight gradient (quants_kernels.h OuterFn): tiles of R rows x 16 columns in 2R registers; per
// token, two loads of x and R broadcasts of dy feed 2R FMAs; tokens in chunks of kOuterTokens.
template <int R>
__attribute__((always_inline)) inline void outer_tile(float* dw, const float* dy, const float* x, int64_t t0, int64_t t1,
                                                      int64_t n_out, int64_t n_in, int64_t o, int64_t i0, __m256i m0,
                                                      __m256i m1) {
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int k = 0; k < R; ++k) acc[k][0] = acc[k][1] = _mm256_setzero_ps();
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = x + t * n_in + i0;
    const __m256 x0 = _mm256_maskload_ps(xr, m0), x1 = _mm256_maskload_ps(xr + 8, m1);
    const float* g = dy + t * n_out + o;
#pragma GCC unroll 8
    for (int k = 0; k < R; ++k) {
      const __m256 b = _mm256_broadcast_ss(g + k);
      acc[k][0] = _mm256_fmadd_ps(b, x0, acc[k][0]);
      acc[k][1] = _mm256_fmadd_ps(b, x1, acc[k][1]);
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < R; ++k) {
    float* row = dw + (o + k) * n_in + i0;
    _mm256_maskstore_ps(row, m0, _mm256_add_ps(_mm256_maskload_ps(row, m0), acc[k][0]));
    _mm256_maskstore_ps(row + 8, m1, _mm256_add_ps(_mm256_maskload_ps(row + 8, m1), acc[k][1]));
  }
}

void outer_f32(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in, int64_t o0, int64_t o1) {
  constexpr int R = kOuterRows;
  static_assert(R == 6, "the remainder switch below covers 1 to 5 rows");
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t t0 = 0; t0 < n; t0 += kOuterTokens) {
    const int64_t t1 = std::min(n, t0 + kOuterTokens);
    for (int64_t i0 = 0; i0 < n_in; i0 += 16) {
      const int w = static_cast<int>(std::min<int64_t>(16, n_in - i0));
      const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane);
      const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w - 8), lane);
      int64_t o = o0;
      for (; o + R <= o1; o += R) outer_tile<R>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1);
      switch (o1 - o) {
        case 5: outer_tile<5>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1); break;
        case 4: outer_tile<4>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1); break;
        case 3: outer_tile<3>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1); break;
        case 2: outer_tile<2>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1); break;
        case 1: outer_tile<1>(dw, dy, x, t0, t1, n_out, n_in, o, i0, m0, m1); break;
        default: break;
      }
    }
  }
}

}  // namespace

const KernelTable kAvx2Kernels = {
    "avx2", mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_K, mm_q6_K, act32, act256, outer_f32,
};

}  // namespace qk
}  // namespace lro

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#endif
