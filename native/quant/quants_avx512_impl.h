// AVX-512 kernels (F, BW, VL, DQ; with LRO_VNNI also AVX512-VNNI). Not an ordinary header (no
// include guard on purpose): the body of quants_avx512.cpp and quants_avx512_vnni.cpp, which include
// it with different macros; the instruction sets are enabled for their functions by the target
// pragma below (no per-file compiler flags needed), and each table is used only when the CPU
// reports those features (see quants.cpp). Everything here is in an anonymous namespace except the
// table.
//
// Integer kernels take 64 weights a step (two Q8_0/Q4_0 blocks, or a quarter of a K super-block) so
// each zmm instruction covers 64 multiply-adds. See quants_kernels.h for the activation formats.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>

#include "core/ggml_types.h"
#include "quant/quants_kernels.h"

// (Spelled out twice: GCC does not macro-expand the pragma's argument.)
#if defined(__clang__) && defined(LRO_BF16)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c"))), apply_to = function)
#elif defined(__clang__) && defined(LRO_VNNI)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#if defined(LRO_BF16)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")
#elif defined(LRO_VNNI)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif
// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own _mm512_undefined_* (GCC PR105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#ifndef LRO_TABLE_NAME
#error "define LRO_TABLE_NAME"
#endif

namespace lro {
namespace qk {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline void store(const MatmulArgs& a, int64_t t, int64_t r, float v) {
  float* p = a.y + t * a.ldy + r;
  *p = a.accumulate ? *p + v : v;
}

// u8 x s8 dot of 4-byte groups added to acc: one instruction with VNNI, three without.
inline __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
#if defined(LRO_VNNI)
  return _mm512_dpbusd_epi32(acc, u, s);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}

// int16 x int16 pair dot added to acc.
inline __m512i dot_s16(__m512i acc, __m512i a, __m512i b) {
#if defined(LRO_VNNI)
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

// Tiles of R rows x T tokens (the weights of a tile are read once per T tokens), token chunks sized
// by token_chunk(). Remainders use <R|1, tt> instantiations.
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

template <class K, int RD, int RP, int TP>
void run(const MatmulArgs& a, int64_t r0, int64_t r1) {
  static_assert(TP <= 4, "remainder switch handles T <= 4");
  if (a.n_tok == 1)
    drive<K, RD, 1>(a, r0, r1);
  else
    drive<K, RP, TP>(a, r0, r1);
}

// ---- activation quantisation (bit-identical to the scalar definition in quants.cpp)

// max |x| over n floats; NaN when any of them is not finite (see the AVX2 file).
inline float amax_n(const float* x, int n) {
  __m512 m = _mm512_setzero_ps(), bad = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    m = _mm512_max_ps(m, _mm512_abs_ps(v));
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
  }
  if (_mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q)) return std::numeric_limits<float>::quiet_NaN();
  return _mm512_reduce_max_ps(m);
}

// 16 floats -> 16 int8 (round to nearest even; |v| <= 127 so the saturating pack is exact).
inline int quant16(const float* x, __m512 id, int8_t* q) {
  const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), id));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(v));
  return _mm512_reduce_add_epi32(v);
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
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const int s0 = quant16(x + 32 * b, id, qs + 32 * b);
    const int s1 = quant16(x + 32 * b + 16, id, qs + 32 * b + 16);
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
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    for (int g = 0; g < 16; ++g) s[16 * b + g] = int16_t(quant16(xb + 16 * g, id, qs + 256 * b + 16 * g));
  }
}

// ---- float weights: W [rows, n_in] (f32 | f16 | bf16) x X [T, n_in] f32, 16 elements a step,
// masked loads for the tail.

template <int WT>
inline __m512 loadw16(const uint8_t* w, int64_t i) {
  if (WT == 0) return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + i);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * i));
  if (WT == 1) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <int WT>
inline __m512 loadw16_mask(const uint8_t* w, int64_t i, __mmask16 m) {
  if (WT == 0) return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + i);
  const __m256i h = _mm256_maskz_loadu_epi16(m, w + 2 * i);
  if (WT == 1) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
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
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0;
    constexpr int64_t esize = WT == 0 ? 4 : 2;
    for (; k + 16 <= a.n_in; k += 16) {
      __m512 xv[T];
      for (int j = 0; j < T; ++j) xv[j] = _mm512_loadu_ps(x[j] + k);
      // Decode reads each weight once: as in Q32K, also ask for this stretch of the rows read next (`ahead`)
      // (non-temporal: 26 -> 30 GB/s on one Zen 5 core, bf16 65536 x 2048).
      // One prefetch a cache line: a step of 16-bit weights is half a line, and a prefetch every step
      // left f16 decode 2-10% slower (alternating builds, Zen 5).
      if (T == 1 && (k * esize) % 64 == 0)
        for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(w[i] + ahead + k * esize), _MM_HINT_NTA);
      for (int i = 0; i < R; ++i) {
        const __m512 wv = loadw16<WT>(w[i], k);
        for (int j = 0; j < T; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
      }
    }
    if (k < a.n_in) {
      const __mmask16 m = __mmask16((1u << (a.n_in - k)) - 1);
      __m512 xv[T];
      for (int j = 0; j < T; ++j) xv[j] = _mm512_maskz_loadu_ps(m, x[j] + k);
      for (int i = 0; i < R; ++i) {
        const __m512 wv = loadw16_mask<WT>(w[i], k, m);
        for (int j = 0; j < T; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i * row_step, _mm512_reduce_add_ps(acc[i][j]));
  }
};

// ---- Q8_0 / Q4_0 weights x a32 activations, two blocks (64 weights) a step; an odd last block is
// done with the upper half zeroed (zero weights and activations contribute nothing).
//
// Per (row, token, block pair): int32 lanes 0-7 hold block 0's dot, 8-15 block 1's; they are scaled
// by d_w * d_x of their block (a vector whose halves hold the two products) and accumulated in f32.
//
// Q4_0: nibbles q in [0, 15] are u8 and x is s8, so dot_u8s8(q, x) works directly; the -8 offset
// is folded in by starting the accumulator at -8 * (x summed per 4-byte lane), once per token.
// Q8_0: with VNNI the activations are shifted to u8 (x + 128) and the accumulator starts at
// -128 * (w summed per lane), once per row; without VNNI, maddubs would saturate on that, so the
// sign trick is used instead (|w| as u8 times x carrying w's sign).

// [a x8, b x8] from two floats.
inline __m512 pair_scale(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

template <bool Q4>
struct Q32K {
  // Weights of blocks b, b+1 (or b alone if !pair) as 64 bytes in activation order.
  static inline __m512i weights(const uint8_t* row, int64_t b, bool pair, __m512& dw) {
    if (Q4) {
      const block_q4_0* blk = reinterpret_cast<const block_q4_0*>(row) + b;
      const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs));
      const __m128i q1 = pair ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs)) : _mm_setzero_si128();
      dw = pair_scale(h2f(blk[0].d), pair ? h2f(blk[1].d) : 0.0f);
      // [q0, q0, q1, q1] then shift the odd 128-bit lanes by 4: low nibbles then high nibbles.
      const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(q0, q0)), _mm256_set_m128i(q1, q1), 1);
      const __m512i sh = _mm512_srlv_epi16(z, _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                                               0x0004000400040004LL, 0x0004000400040004LL));
      return _mm512_and_si512(sh, _mm512_set1_epi8(0x0F));
    }
    const block_q8_0* blk = reinterpret_cast<const block_q8_0*>(row) + b;
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[0].qs));
    const __m256i w1 = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[1].qs)) : _mm256_setzero_si256();
    dw = pair_scale(h2f(blk[0].d), pair ? h2f(blk[1].d) : 0.0f);
    return _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
  }

  template <int R, int T>
  static inline void step(const uint8_t* const* w, const int8_t* const* xq, const float* const* xd, int64_t b,
                          bool pair, __m512 (&acc)[R][T]) {
    __m512i xv[T];
    __m512 dx[T];
    __m512i xinit[T];  // Q4: -8 * lane sums of x
    for (int j = 0; j < T; ++j) {
      xv[j] = pair ? _mm512_loadu_si512(xq[j] + 32 * b) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, xq[j] + 32 * b);
      dx[j] = pair_scale(xd[j][b], pair ? xd[j][b + 1] : 0.0f);
      if (Q4) xinit[j] = _mm512_sub_epi32(_mm512_setzero_si512(), dot_u8s8(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv[j]));
#if defined(LRO_VNNI)
      if (!Q4) xv[j] = _mm512_xor_si512(xv[j], _mm512_set1_epi8(char(0x80)));  // x + 128 as u8
#endif
    }
    for (int i = 0; i < R; ++i) {
      __m512 dw;
      const __m512i wv = weights(w[i], b, pair, dw);
      if (Q4) {
        for (int j = 0; j < T; ++j) {
          const __m512i p = dot_u8s8(xinit[j], wv, xv[j]);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
        }
      } else {
#if defined(LRO_VNNI)
        const __m512i winit =
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(char(0x80)), wv));
        for (int j = 0; j < T; ++j) {
          const __m512i p = _mm512_dpbusd_epi32(winit, xv[j], wv);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
        }
#else
        const __m512i aw = _mm512_abs_epi8(wv);
        const __mmask64 neg = _mm512_movepi8_mask(wv);
        for (int j = 0; j < T; ++j) {
          const __m512i sx = _mm512_mask_sub_epi8(xv[j], neg, _mm512_setzero_si512(), xv[j]);
          const __m512i p = dot_u8s8(_mm512_setzero_si512(), aw, sx);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
        }
#endif
      }
    }
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
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    int64_t b = 0;
    const size_t bb = Q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    for (; b + 2 <= nb; b += 2) {
      // As in Q4_K below: this pair of blocks in the rows read next.
      for (int i = 0; i < R; ++i) {
        const char* nxt = reinterpret_cast<const char*>(w[i]) + ahead + size_t(b) * bb;
        _mm_prefetch(nxt, _MM_HINT_T0);
        _mm_prefetch(nxt + 64, _MM_HINT_T0);
      }
      step<R, T>(w, xq, xd, b, true, acc);
    }
    if (b < nb) step<R, T>(w, xq, xd, b, false, acc);
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i * row_step, _mm512_reduce_add_ps(acc[i][j]));
  }
};

// ---- Q4_K weights x a256 activations, one super-block a step, 64 weights (two 32-element
// sub-blocks) per instruction. maddubs(q, x) (u8 <= 15 x s8, no saturation) then an int16 pair
// dot with the sub-block scales (lanes 0-15: sc_2c, 16-31: sc_2c+1) accumulates
// sum_j sc_j * dot_j exactly in int32 (<= 31M). The mins term uses the activation sums over 16.

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

struct Q4KK {
  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.n_in / QK_K;
    const block_q4_K* w[R];
    const int8_t* xq[T];
    const float* xd[T];
    const int16_t* xs[T];
    for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const block_q4_K*>(a.w + (r + i) * a.w_stride);
    for (int j = 0; j < T; ++j)
      xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb, xs[j] = a.as + (t + j) * (a.n_in / 16);
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    // Shift 0 for the low 256 bits (low nibbles), 4 for the high 256 bits (high nibbles).
    const __m512i nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 0x0004000400040004LL, 0x0004000400040004LL,
                                                0x0004000400040004LL, 0x0004000400040004LL);
    // Scale-spreading index for chunk c: int16 lanes 0-15 <- scale 2c, 16-31 <- scale 2c+1.
    __m512i sidx[4];
    for (int c = 0; c < 4; ++c)
      sidx[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(int16_t(2 * c))), _mm256_set1_epi16(int16_t(2 * c + 1)), 1);
    for (int64_t b = 0; b < nb; ++b) {
      __m512i sc16[R];
      __m256i mn16[R];
      __m512i iacc[R][T];
      // A few tokens (decode has its own GEMV) read every weight once and this loop does little
      // work per byte, so the hardware prefetcher alone leaves it waiting on memory: also ask for
      // this block of the next tile's rows (a prefetch past the end of the matrix is harmless).
      for (int i = 0; i < R; ++i) {
        const char* nxt = reinterpret_cast<const char*>(w[i] + b) + R * a.w_stride;
        _mm_prefetch(nxt, _MM_HINT_T0);
        _mm_prefetch(nxt + 64, _MM_HINT_T0);
        _mm_prefetch(nxt + 128, _MM_HINT_T0);
      }
      for (int i = 0; i < R; ++i) {
        uint64_t sc, mn;
        q4k_scales(w[i][b].scales, sc, mn);
        sc16[i] = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc))));
        const __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn)));
        mn16[i] = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
        for (int j = 0; j < T; ++j) iacc[i][j] = _mm512_setzero_si512();
      }
      for (int c = 0; c < 4; ++c) {
        for (int i = 0; i < R; ++i) {
          const __m512i q = _mm512_and_si512(
              _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i][b].qs + 32 * c))),
                                nib_shift),
              m4);
          const __m512i sv = _mm512_permutexvar_epi16(sidx[c], sc16[i]);
          for (int j = 0; j < T; ++j) {
            const __m512i xv = _mm512_loadu_si512(xq[j] + QK_K * b + 64 * c);
            iacc[i][j] = dot_s16(iacc[i][j], _mm512_maddubs_epi16(q, xv), sv);
          }
        }
      }
      for (int i = 0; i < R; ++i) {
        const float d = h2f(w[i][b].d), dmin = h2f(w[i][b].dmin);
        for (int j = 0; j < T; ++j) {
          const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs[j] + 16 * b));
          const __m512 mins = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(_mm256_madd_epi16(mn16[i], bs)));
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][j]), _mm512_set1_ps(d * xd[j][b]), acc[i][j]);
          acc[i][j] = _mm512_fnmadd_ps(mins, _mm512_set1_ps(dmin * xd[j][b]), acc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i, _mm512_reduce_add_ps(acc[i][j]));
  }
};

// ---- Q6_K weights x a256 activations, one super-block a step, 64 weights per instruction.
// q6 in [0, 63] as u8 (maddubs pairs <= 16002), int8 scale per 16 elements as int16 lanes
// (8 lanes per scale), the -32 offset removed once per super-block with the activation sums.
struct Q6KK {
  template <int R, int T>
  static void tile(const MatmulArgs& a, int64_t r, int64_t t, int64_t row_step = 1) {
    const int64_t nb = a.n_in / QK_K;
    const block_q6_K* w[R];
    const int8_t* xq[T];
    const float* xd[T];
    const int16_t* xs[T];
    for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const block_q6_K*>(a.w + (r + i * row_step) * a.w_stride);
    const size_t ahead = size_t(row_step == 1 ? R : 1) * a.w_stride;  // the rows read next
    for (int j = 0; j < T; ++j)
      xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb, xs[j] = a.as + (t + j) * (a.n_in / 16);
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    // Bits of qh to bring to positions 4-5: chunk 0 of a half takes bits 0-1 (low 32 elements) and
    // 2-3 (high 32); chunk 1 takes bits 4-5 and 6-7.
    const __m512i shl0 = _mm512_setr_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                           0x0004000400040004LL, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);
    const __m512i shr1 = _mm512_setr_epi64(0, 0, 0, 0, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);
    // Scale-spreading index for chunk k (64 elements = 4 groups of 16): lanes 8g..8g+7 <- scale 4k+g.
    __m512i sidx[4];
    for (int k = 0; k < 4; ++k) {
      alignas(64) int16_t idx[32];
      for (int l = 0; l < 32; ++l) idx[l] = int16_t(4 * k + l / 8);
      sidx[k] = _mm512_load_si512(idx);
    }
    for (int64_t b = 0; b < nb; ++b) {
      for (int i = 0; i < R; ++i) {  // as in Q4_K above: this block of the rows read next
        const char* nxt = reinterpret_cast<const char*>(w[i] + b) + ahead;
        for (int o = 0; o < 256; o += 64) _mm_prefetch(nxt + o, _MM_HINT_T0);
      }
      __m512i iacc[R][T];
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < T; ++j) iacc[i][j] = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        for (int i = 0; i < R; ++i) {
          const block_q6_K& blk = w[i][b];
          const __m512i l = _mm512_loadu_si512(blk.ql + 64 * h);
          const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h)));
          const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales))));
          __m512i q[2];
          q[0] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl0), m2));
          q[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(qh, shr1), m2));
          for (int k = 0; k < 2; ++k) {
            const __m512i sv = _mm512_permutexvar_epi16(sidx[2 * h + k], sc);
            for (int j = 0; j < T; ++j) {
              const __m512i xv = _mm512_loadu_si512(xq[j] + QK_K * b + 128 * h + 64 * k);
              iacc[i][j] = dot_s16(iacc[i][j], _mm512_maddubs_epi16(q[k], xv), sv);
            }
          }
        }
      }
      for (int i = 0; i < R; ++i) {
        const float d = h2f(w[i][b].d);
        const __m256i sc32 = _mm256_slli_epi16(
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b].scales))), 5);
        for (int j = 0; j < T; ++j) {
          const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs[j] + 16 * b));
          const __m512i v = _mm512_sub_epi32(iacc[i][j], _mm512_zextsi256_si512(_mm256_madd_epi16(sc32, bs)));
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(d * xd[j][b]), acc[i][j]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) store(a, t + j, r + i * row_step, _mm512_reduce_add_ps(acc[i][j]));
  }
};

// =============================================================================================
// Prefill (n_tok >= 4): panel kernels. The R weight rows of a tile are unpacked once per slab of
// n_in into an L1-resident panel laid out exactly as the micro-kernel consumes it (weights as the
// bytes the dot instruction takes, scales already spread into vectors), and every token tile of
// the chunk then runs over that panel. Unpacking is paid once per row per token chunk instead of
// once per row per T tokens, which for the K-quants is more work than the dot products themselves.

// Writes (first slab, not accumulating) or adds the micro-tile's sums.
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

// Rows in tiles of R, n_in in slabs of P::kSlabUnits units, tokens in chunks (token_chunk) and
// tiles of T. The panel is [R][nu] units, row-major.
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
// iacc[i][j] = the super-block's 4 chunks of 64 u8 weights times s8 activations, each chunk's
// pair sums weighted by its int16 scale vector.
template <int R, int T, class Unit>
inline void kquant_dots(__m512i (&iacc)[R][T], const Unit* panel, int64_t nu, int64_t u, const int8_t* const (&xq)[T]) {
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) iacc[i][j] = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < R; ++i) {
      const Unit& p = panel[i * nu + u];
      const __m512i wq = _mm512_load_si512(p.q[c]);
      const __m512i sv = _mm512_load_si512(p.sv[c]);
      for (int j = 0; j < T; ++j)
        iacc[i][j] = dot_s16(iacc[i][j], _mm512_maddubs_epi16(wq, _mm512_loadu_si512(xq[j] + QK_K * u + 64 * c)), sv);
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
  __m512 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t u = 0; u < nu; ++u) {
    __m512i iacc[R][T];
    kquant_dots<R, T>(iacc, panel, nu, u, xq);
    for (int j = 0; j < T; ++j) {
      const __m512 dx = _mm512_set1_ps(xd[j][u]);
      const auto sd = side(t + j, u0 + u);
      for (int i = 0; i < R; ++i) combine(panel[i * nu + u], iacc[i][j], dx, sd, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) put(a, t + j, r + i, _mm512_reduce_add_ps(acc[i][j]), u0 == 0);
}

// ---- Q4_K panel: per row and super-block, the 4 chunks of 64 nibbles as u8 in activation order,
// the 4 scale vectors (int16 lanes 0-15: sc_2c, 16-31: sc_2c+1), d, and dmin*m_j as floats.
// Micro-kernel per (row, token, super-block): 4 x (maddubs + int16 pair dot) into an int32
// accumulator, then acc += cvt(iacc) * d*dx - (dmin*m) . (dx*sum32(x)) (the mins term as an
// 8-float product with the driver's a.amin).
struct PanelQ4K {
  struct alignas(64) Unit {
    uint8_t q[4][64];
    int16_t sv[4][32];
    float mins[8];
    float d;
    float pad[7];
  };
  static constexpr int64_t kUnitElems = 256, kSlabUnits = 8;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const block_q4_K* w = reinterpret_cast<const block_q4_K*>(a.w + row * a.w_stride) + u0;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 0x0004000400040004LL, 0x0004000400040004LL,
                                                0x0004000400040004LL, 0x0004000400040004LL);
    for (int64_t u = 0; u < nu; ++u) {
      uint64_t sc, mn;
      q4k_scales(w[u].scales, sc, mn);
      const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc))));
      for (int c = 0; c < 4; ++c) {
        const __m512i q = _mm512_and_si512(
            _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].qs + 32 * c))),
                              nib_shift),
            m4);
        _mm512_store_si512(dst[u].q[c], q);
        const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(int16_t(2 * c))),
                                               _mm256_set1_epi16(int16_t(2 * c + 1)), 1);
        _mm512_store_si512(dst[u].sv[c], _mm512_permutexvar_epi16(idx, sc16));
      }
      const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn))));
      _mm256_store_ps(dst[u].mins, _mm256_mul_ps(m, _mm256_set1_ps(h2f(w[u].dmin))));
      dst[u].d = h2f(w[u].d);
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    // Per activation row and super-block: the 8 sub-block sums times the activation scale (amin).
    kquant_micro<R, T>(
        a, panel, nu, u0, r, t,
        [&](int64_t row, int64_t u) { return _mm512_zextps256_ps512(_mm256_loadu_ps(a.amin + row * (a.n_in / 32) + 8 * u)); },
        [](const Unit& p, const __m512i& dots, const __m512& dx, const __m512& bx, __m512& acc) {
          acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(dx, _mm512_set1_ps(p.d)), acc);
          acc = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_load_ps(p.mins)), bx, acc);
        });
  }
};

// ---- Q6_K panel: per row and super-block, the 4 chunks of 64 six-bit values as u8 in activation
// order, 4 scale vectors (8 int16 lanes per 16-element group), 32*scale as int16 for the offset
// correction, and d. Micro-kernel as Q4_K, the -32 offset removed in int32 with the sums over 16.
struct PanelQ6K {
  struct alignas(64) Unit {
    uint8_t q[4][64];
    int16_t sv[4][32];
    int16_t sc32[16];
    float d;
    float pad[7];
  };
  static constexpr int64_t kUnitElems = 256, kSlabUnits = 8;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const block_q6_K* w = reinterpret_cast<const block_q6_K*>(a.w + row * a.w_stride) + u0;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    const __m512i shl0 = _mm512_setr_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                           0x0004000400040004LL, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);
    const __m512i shr1 = _mm512_setr_epi64(0, 0, 0, 0, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);
    for (int64_t u = 0; u < nu; ++u) {
      const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[u].scales)));
      for (int h = 0; h < 2; ++h) {
        const __m512i l = _mm512_loadu_si512(w[u].ql + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[u].qh + 32 * h)));
        _mm512_store_si512(dst[u].q[2 * h],
                           _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl0), m2)));
        _mm512_store_si512(dst[u].q[2 * h + 1], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                                _mm512_and_si512(_mm512_srlv_epi16(qh, shr1), m2)));
      }
      for (int k = 0; k < 4; ++k) {
        alignas(64) int16_t idx[32];
        for (int l = 0; l < 32; ++l) idx[l] = int16_t(4 * k + l / 8);
        _mm512_store_si512(dst[u].sv[k], _mm512_permutexvar_epi16(_mm512_load_si512(idx), _mm512_castsi256_si512(sc)));
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst[u].sc32), _mm256_slli_epi16(sc, 5));
      dst[u].d = h2f(w[u].d);
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    // Per activation row and super-block: its 16 group sums (the -32 offset's correction).
    kquant_micro<R, T>(
        a, panel, nu, u0, r, t,
        [&](int64_t row, int64_t u) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.as + row * (a.n_in / 16) + 16 * u)); },
        [](const Unit& p, const __m512i& dots, const __m512& dx, const __m256i& bs, __m512& acc) {
          const __m256i corr = _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.sc32)), bs);
          const __m512i v = _mm512_sub_epi32(dots, _mm512_zextsi256_si512(corr));
          acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dx, _mm512_set1_ps(p.d)), acc);
        });
  }
};

// ---- Q8_0 / Q4_0 panel: one unit per block pair (64 weights; an odd last block is padded with
// zero weights and a zero scale). With VNNI the weights are stored as s8 (Q4_0 as q - 8) with the
// accumulator start -128 * (lane sums of w), and the activations are shifted to u8 (x + 128):
// dpbusd then gives sum(w * x) directly. Without VNNI: Q4_0 keeps u8 nibbles and corrects by
// -8 * sum(x) per token; Q8_0 stores |w| and the sign mask (sign trick, no maddubs saturation).
template <bool Q4>
struct PanelQ32 {
  struct alignas(64) Unit {
    uint8_t w[64];
    int32_t init[16];  // VNNI: -128 * lane sums of w; Q8_0 without VNNI: [0..1] = sign mask
    float dw[16];
  };
  static constexpr int64_t kUnitElems = 64, kSlabUnits = 24;

  static void pack(const MatmulArgs& a, int64_t row, int64_t u0, int64_t nu, Unit* dst) {
    const int64_t nb = a.n_in / 32;
    const uint8_t* rowp = a.w + row * a.w_stride;
    for (int64_t u = 0; u < nu; ++u) {
      const int64_t b = 2 * (u0 + u);
      const bool pair = b + 1 < nb;
      __m512 dw;
      __m512i w = Q32K<Q4>::weights(rowp, b, pair, dw);  // Q4_0: u8 nibbles; Q8_0: s8
      _mm512_store_ps(dst[u].dw, dw);
#if defined(LRO_VNNI)
      if (Q4) w = _mm512_sub_epi8(w, _mm512_set1_epi8(8));
      if (!pair) w = _mm512_zextsi256_si512(_mm512_castsi512_si256(w));
      const __m512i init = _mm512_sub_epi32(_mm512_setzero_si512(),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(char(0x80)), w));
      _mm512_store_si512(dst[u].w, w);
      _mm512_store_si512(dst[u].init, init);
#else
      if (Q4) {
        _mm512_store_si512(dst[u].w, w);
      } else {
        const uint64_t neg = uint64_t(_mm512_movepi8_mask(w));
        _mm512_store_si512(dst[u].w, _mm512_abs_epi8(w));
        __builtin_memcpy(dst[u].init, &neg, 8);
      }
#endif
    }
  }

  template <int R, int T>
  static void micro(const MatmulArgs& a, const Unit* panel, int64_t nu, int64_t u0, int64_t r, int64_t t) {
    const int64_t nb = a.n_in / 32;
    const int8_t* xq[T];
    const float* xd[T];
    for (int j = 0; j < T; ++j) xq[j] = a.aq + (t + j) * a.n_in, xd[j] = a.ad + (t + j) * nb;
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t u = 0; u < nu; ++u) {
      const int64_t b = 2 * (u0 + u);
      const bool pair = b + 1 < nb;
      __m512i xv[T];
      __m512 dx[T];
      for (int j = 0; j < T; ++j) {
        xv[j] = pair ? _mm512_loadu_si512(xq[j] + 32 * b) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, xq[j] + 32 * b);
        dx[j] = pair_scale(xd[j][b], pair ? xd[j][b + 1] : 0.0f);
      }
#if defined(LRO_VNNI)
      for (int j = 0; j < T; ++j) xv[j] = _mm512_xor_si512(xv[j], _mm512_set1_epi8(char(0x80)));
      for (int i = 0; i < R; ++i) {
        const Unit& p = panel[i * nu + u];
        const __m512i w = _mm512_load_si512(p.w);
        const __m512i init = _mm512_load_si512(p.init);
        const __m512 dw = _mm512_load_ps(p.dw);
        for (int j = 0; j < T; ++j) {
          const __m512i d = _mm512_dpbusd_epi32(init, xv[j], w);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
        }
      }
#else
      const __m512i ones = _mm512_set1_epi16(1);
      __m512i xinit[T];
      if (Q4)
        for (int j = 0; j < T; ++j)
          xinit[j] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                      _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(8), xv[j]), ones));
      for (int i = 0; i < R; ++i) {
        const Unit& p = panel[i * nu + u];
        const __m512i w = _mm512_load_si512(p.w);
        const __m512 dw = _mm512_load_ps(p.dw);
        uint64_t negm = 0;
        if (!Q4) __builtin_memcpy(&negm, p.init, 8);
        for (int j = 0; j < T; ++j) {
          __m512i d;
          if (Q4) {
            d = _mm512_add_epi32(xinit[j], _mm512_madd_epi16(_mm512_maddubs_epi16(w, xv[j]), ones));
          } else {
            const __m512i sx = _mm512_mask_sub_epi8(xv[j], __mmask64(negm), _mm512_setzero_si512(), xv[j]);
            d = _mm512_madd_epi16(_mm512_maddubs_epi16(w, sx), ones);
          }
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
        }
      }
#endif
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < T; ++j) put(a, t + j, r + i, _mm512_reduce_add_ps(acc[i][j]), u0 == 0);
  }
};

// ---- shared by the outer-product GEMMs below

// Masks of the 16-row vectors of a block whose first `rows` rows exist.
template <int V>
inline void row_masks(int rows, __mmask16 (&m)[V]) {
  for (int v = 0; v < V; ++v) {
    const int left = rows - 16 * v;
    m[v] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
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

// ---- float weights, prefill: an outer-product GEMM (no lane reductions).
// Tokens go in chunks of kFgChunk and n_in in slabs of kFgKc. Per slab, the chunk's activations are
// packed transposed, [tile of kFgTok tokens][k][kFgTok], and every block of kFgRows weight rows is
// converted to f32 and transposed into a panel [k][kFgRows] (64 KB). The micro-kernel adds panel
// column k (32 rows, two vectors) times the broadcast x[t][k] into 2 x T accumulators, and adds them
// to y's 32 contiguous outputs of each token once per slab. Each weight is converted once per chunk;
// activations are read from the packed slab (L2) by every row block. Measured on Zen 5 (1 thread):
// 12 tokens x 32 rows with 512-wide slabs ~182 GFLOP/s; 256-wide 164-177; 8 x 48 and 14 x 32 no better.
constexpr int kFgRows = 32, kFgTok = 12, kFgKc = 512, kFgChunk = 21 * kFgTok;


// In place: r[i] (row i, 16 consecutive k) becomes r[k] (column k, 16 rows).
inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], c in 0..3: rows 4g..4g+3 of columns c, c+4, c+8, c+12 (one per 128-bit lane).
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[c + 4] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

// panel[k * kFgRows + i] = W[row + i][k0 + k] as f32 for i < rows, k < kc; zero elsewhere up to kcp.
template <int WT>
void fg_pack_panel(const MatmulArgs& a, int64_t row, int rows, int64_t k0, int64_t kc, int64_t kcp, float* panel) {
  for (int g = 0; g < kFgRows / 16; ++g) {
    for (int64_t kb = 0; kb < kcp; kb += 16) {
      const __mmask16 km = kc - kb >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (kc - kb)) - 1);
      __m512 v[16];
      for (int i = 0; i < 16; ++i) {
        const int ri = 16 * g + i;
        const uint8_t* w = a.w + (row + ri) * a.w_stride;
        v[i] = ri >= rows ? _mm512_setzero_ps() : km == 0xFFFF ? loadw16<WT>(w, k0 + kb) : loadw16_mask<WT>(w, k0 + kb, km);
      }
      transpose16(v);
      for (int k = 0; k < 16; ++k) _mm512_store_ps(panel + (kb + k) * kFgRows + 16 * g, v[k]);
    }
  }
}

// y[t][r..r+kFgRows) (+)= panel^T . xt for T tokens; m[v] masks the rows of vector v that exist.
constexpr int kFgVecs = kFgRows / 16;
// dst[k * kFgTok + j] = x[t + j][k0 + k] for j < tt, k < kc; zero elsewhere up to kcp: 16 x 16
// blocks loaded (masked), transposed, and stored kFgTok lanes a column.
inline void fg_pack_tokens(const MatmulArgs& a, int64_t t, int tt, int64_t k0, int64_t kc, int64_t kcp, float* dst) {
  constexpr __mmask16 lanes = __mmask16((1u << kFgTok) - 1);
  for (int64_t kb = 0; kb < kcp; kb += 16) {
    const __mmask16 km = kc - kb >= 16 ? __mmask16(0xFFFF) : kc - kb <= 0 ? __mmask16(0) : __mmask16((1u << (kc - kb)) - 1);
    __m512 v[16];
    for (int j = 0; j < 16; ++j) v[j] = j < tt ? _mm512_maskz_loadu_ps(km, a.x + (t + j) * a.n_in + k0 + kb) : _mm512_setzero_ps();
    transpose16(v);
    for (int k = 0; k < 16; ++k) _mm512_mask_storeu_ps(dst + (kb + k) * kFgTok, lanes, v[k]);
  }
}

// P (bf16 pairs, AVX512-BF16 only): each unit k is a pair of bf16 values (in panel and xt alike), and
// one dpbf16ps adds both products of the pair.
template <int T, bool P>
void fg_micro(const float* panel, const float* xt, int64_t kcp, float* y, int64_t ldy, const __mmask16 (&m)[kFgVecs],
              bool overwrite) {
  __m512 c[kFgVecs][T];
  for (int v = 0; v < kFgVecs; ++v)
    for (int j = 0; j < T; ++j) c[v][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kcp; ++k) {
    __m512 w[kFgVecs];
    for (int v = 0; v < kFgVecs; ++v) w[v] = _mm512_load_ps(panel + k * kFgRows + 16 * v);
    const float* xk = xt + k * kFgTok;
    for (int j = 0; j < T; ++j) {
      const __m512 xb = _mm512_set1_ps(xk[j]);
#if defined(LRO_BF16)
      if constexpr (P) {
        for (int v = 0; v < kFgVecs; ++v) c[v][j] = _mm512_dpbf16_ps(c[v][j], (__m512bh)w[v], (__m512bh)xb);
        continue;
      }
#endif
      for (int v = 0; v < kFgVecs; ++v) c[v][j] = _mm512_fmadd_ps(w[v], xb, c[v][j]);
    }
  }
  for (int j = 0; j < T; ++j)
    for (int v = 0; v < kFgVecs; ++v) {
      float* p = y + j * ldy + 16 * v;
      _mm512_mask_storeu_ps(p, m[v], overwrite ? c[v][j] : _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p), c[v][j]));
    }
}

template <bool P, int T = kFgTok>
void fg_micro_n(int tt, const float* panel, const float* xt, int64_t kcp, float* y, int64_t ldy,
                const __mmask16 (&m)[kFgVecs], bool overwrite) {
  if constexpr (T > 1) {
    if (tt < T) return fg_micro_n<P, T - 1>(tt, panel, xt, kcp, y, ldy, m, overwrite);
  }
  fg_micro<T, P>(panel, xt, kcp, y, ldy, m, overwrite);
}

// P: bf16 weights as pairs (n_in even; the activations are bf16-exact, see quants.h), k counts pairs.
template <int WT, bool P = false>
void float_gemm(const MatmulArgs& a, int64_t r0, int64_t r1) {
  static_assert(!P || WT == 2, "pairs are bf16");
  constexpr int64_t ubytes = P || WT == 0 ? 4 : 2;  // bytes of weight per unit k
  const int64_t n_k = P ? a.n_in / 2 : a.n_in;
  alignas(64) float panel[kFgKc * kFgRows];
  // The packed activations of one chunk and slab (kFgChunk x kFgKc floats, 516 KB: L2-sized).
  static thread_local Scratch scratch;
  float* const xt = scratch.get<float>(size_t(kFgChunk) * kFgKc);
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += kFgChunk) {
    const int64_t nt = a.n_tok - t0 < kFgChunk ? a.n_tok - t0 : kFgChunk;
    const int64_t ntiles = (nt + kFgTok - 1) / kFgTok;
    for (int64_t k0 = 0; k0 < n_k; k0 += kFgKc) {
      const int64_t kc = n_k - k0 < kFgKc ? n_k - k0 : kFgKc;
      const int64_t kcp = (kc + 15) / 16 * 16;
      for (int64_t tile = 0; tile < ntiles; ++tile) {
        float* dst = xt + tile * kcp * kFgTok;
        const int tt = int(nt - tile * kFgTok < kFgTok ? nt - tile * kFgTok : kFgTok);
        if (!P) {
          fg_pack_tokens(a, t0 + tile * kFgTok, tt, k0, kc, kcp, dst);
          continue;
        }
        for (int j = 0; j < kFgTok; ++j) {  // the pair's two bf16 values: the top halves of the (bf16-exact) floats
          const uint32_t* src = reinterpret_cast<const uint32_t*>(a.x + (t0 + tile * kFgTok + j) * a.n_in + 2 * k0);
          uint32_t* d32 = reinterpret_cast<uint32_t*>(dst);
          for (int64_t k = 0; k < kcp; ++k) d32[k * kFgTok + j] = (j < tt && k < kc) ? (src[2 * k] >> 16) | (src[2 * k + 1] & 0xFFFF0000u) : 0u;
        }
      }
      const bool overwrite = k0 == 0 && !a.accumulate;
      for (int64_t r = r0; r < r1; r += kFgRows) {
        const int rr = int(r1 - r < kFgRows ? r1 - r : kFgRows);
        fg_pack_panel<P ? 0 : WT>(a, r, rr, k0, kc, kcp, panel);  // a pair moves as one 32-bit unit
        __mmask16 m[kFgVecs];
        row_masks(rr, m);
        const int64_t next_rows = r + kFgRows < r1 ? (r1 - r - kFgRows < kFgRows ? r1 - r - kFgRows : kFgRows) : 0;
        NextBlockPrefetch next{a.w + (r + kFgRows) * a.w_stride + k0 * ubytes, a.w_stride, next_rows, kc * ubytes, ntiles};
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          next.tile(tile);
          const int tt = int(nt - tile * kFgTok < kFgTok ? nt - tile * kFgTok : kFgTok);
          fg_micro_n<P>(tt, panel, xt + tile * kcp * kFgTok, kcp, a.y + (t0 + tile * kFgTok) * a.ldy + r, a.ldy, m, overwrite);
        }
      }
    }
  }
}

#if defined(LRO_BF16)
// ---- BF16 decode (one token) with AVX512-BF16: the token's activations (bf16-exact, see quants.h)
// as bf16 once, then per row 64 weights a step with two vdpbf16ps into two accumulators (both
// products of each pair): no conversion of the weights at all. Rows in two streams (two_streams,
// quants_kernels.h), and no software prefetch: the hardware prefetchers follow two sequential
// streams. The non-temporal prefetch of each row's successor (as in FloatK) held a decode pass over
// the bf16 file at 26-27 GB/s at 1 thread against 30-35 without it (the builds in turn: 26.4-27.6
// -> 34.2-35.2 GB/s; alternating in one process 1.13-1.20x in 4 of 5 runs, 1.02x in one). Put back
// into this kernel, NTA or T0, it was 0.91x at 1 thread and 0.88-1.02x at 2. Earlier measurements
// on the same kind of machine had found prefetch variants level (0.94-1.04x).
template <int R>
inline void bf16_gemv_rows(const MatmulArgs& a, int64_t r, int64_t step, const uint16_t* xb) {
  const int64_t n = a.n_in;
  const uint16_t* w[R];
  for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const uint16_t*>(a.w + (r + i * step) * a.w_stride);
  __m512 acc[2][R];
  for (int i = 0; i < R; ++i) acc[0][i] = acc[1][i] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= n; k += 64)
    for (int h = 0; h < 2; ++h) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + k + 32 * h);
      for (int i = 0; i < R; ++i) acc[h][i] = _mm512_dpbf16_ps(acc[h][i], (__m512bh)_mm512_loadu_si512(w[i] + k + 32 * h), xv);
    }
  for (; k < n; k += 32) {  // a last step of 32, then a partial one: zero pairs beyond the row add nothing
    const __mmask32 m = n - k >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << (n - k)) - 1);
    const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, xb + k);
    for (int i = 0; i < R; ++i) acc[0][i] = _mm512_dpbf16_ps(acc[0][i], (__m512bh)_mm512_maskz_loadu_epi16(m, w[i] + k), xv);
  }
  for (int i = 0; i < R; ++i) store(a, 0, r + i * step, _mm512_reduce_add_ps(_mm512_add_ps(acc[0][i], acc[1][i])));
}

void bf16_gemv(const MatmulArgs& a, int64_t r0, int64_t r1) {
  static thread_local Scratch scratch;
  uint16_t* xb = scratch.get<uint16_t>(size_t(a.n_in));
  for (int64_t k = 0; k < a.n_in; ++k) {
    uint32_t u;
    __builtin_memcpy(&u, a.x + k, 4);
    xb[k] = uint16_t(u >> 16);  // exact: the driver rounded x to bf16
  }
  two_streams(
      r0, r1, [&](int64_t r, int64_t step) { bf16_gemv_rows<2>(a, r, step, xb); },
      [&](int64_t r) { bf16_gemv_rows<1>(a, r, 0, xb); });
}
#endif

#if defined(LRO_BF16)
// ---- BF16 prefill of 16-64 tokens with AVX512-BF16: y^T, the weights broadcast from their rows.
// The panel GEMM above transposes every block of weight rows into a panel once per token chunk; at
// 64 tokens each weight then serves 64 products, and the transposition took 11% of a prefill of 64
// at 1 thread (Zen 5). Here a row's bf16 pair k is one broadcast (a load) that feeds V vdpbf16ps, one
// per vector of 16 tokens: per block of R rows, R x V accumulators over a slab of pairs. The tokens'
// pairs are laid out per slab as [pair][16 V tokens] (zero beyond n_tok), once a slab and thread;
// each block's accumulators go to y through 4 x 4 transposes (4 rows of a token, one 16-byte store).
constexpr int64_t kBsKc = 1024;  // pairs per slab: 64 tokens x 4 bytes x 1024 = 256 KB, in L2

// From 16 to 64 tokens, when they fill at least 80% of their vectors' lanes: prefills of the 1B-shaped
// bf16 file, alternating with the panel GEMM in one process, 1 thread: 16 tokens 1.11x, 32 1.18x,
// 48 1.09x, 64 1.13x (2 threads: 32 1.18x, 64 1.12-1.13x); 40 (83% of 48 lanes) 1.02x, 56 1.04x;
// 24 (75%) 0.99x, 12 0.98x, 8 0.91x.
inline bool bs_fits(int64_t n_tok) {
  const int64_t lanes = 16 * ((n_tok + 15) / 16);
  return n_tok >= 16 && n_tok <= 64 && 5 * n_tok >= 4 * lanes;
}

// xp[k * 16V + t] = pair k0 + k of token t as one 32-bit unit (t < n_tok; zero beyond): per 16 tokens
// and 16 pairs, the pairs of each token (the top halves of its bf16-exact floats) then a 16 x 16 transpose.
template <int V>
void bs_pack_tokens(const MatmulArgs& a, int64_t k0, int64_t kc, uint32_t* xp) {
  const __m512i odd_words = _mm512_setr_epi32(0x00030001, 0x00070005, 0x000B0009, 0x000F000D, 0x00130011, 0x00170015,
                                              0x001B0019, 0x001F001D, 0x00230021, 0x00270025, 0x002B0029, 0x002F002D,
                                              0x00330031, 0x00370035, 0x003B0039, 0x003F003D);
  for (int v = 0; v < V; ++v)
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int64_t kn = kc - kb < 16 ? kc - kb : 16;
      const __mmask32 m = __mmask32((uint64_t(1) << (2 * kn)) - 1);
      __m512 r[16];
      for (int j = 0; j < 16; ++j) {
        const int64_t t = 16 * v + j;
        if (t >= a.n_tok) {
          r[j] = _mm512_setzero_ps();
          continue;
        }
        const float* src = a.x + t * a.n_in + 2 * (k0 + kb);
        const __m512i lo = _mm512_maskz_loadu_epi32(__mmask16(m), src), hi = _mm512_maskz_loadu_epi32(__mmask16(m >> 16), src + 16);
        r[j] = _mm512_castsi512_ps(_mm512_permutex2var_epi16(lo, odd_words, hi));
      }
      transpose16(r);
      for (int k = 0; k < kn; ++k) _mm512_store_ps(reinterpret_cast<float*>(xp + (kb + k) * 16 * V + 16 * v), r[k]);
    }
}

// Rows r .. r + R of y (those below r1) for the call's tokens, over pairs [k0, k0 + kc): added to y
// unless `overwrite`.
template <int V, int R>
void bs_block(const MatmulArgs& a, int64_t r, int64_t r1, int64_t k0, int64_t kc, const uint32_t* xp, bool overwrite) {
  const uint32_t* w[R];
  for (int i = 0; i < R; ++i)  // rows past r1 read the last row again; their sums are not stored
    w[i] = reinterpret_cast<const uint32_t*>(a.w + (r + i < r1 ? r + i : r1 - 1) * a.w_stride) + k0;
  __m512 acc[R][V];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512bh xv[V];
    for (int v = 0; v < V; ++v) xv[v] = (__m512bh)_mm512_load_si512(xp + k * 16 * V + 16 * v);
    for (int i = 0; i < R; ++i) {
      const __m512bh wb = (__m512bh)_mm512_set1_epi32(int(w[i][k]));
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], wb, xv[v]);
    }
  }
  // Per 4 rows and vector of 16 tokens: a 4 x 4 transpose in each 128-bit lane leaves lane l of
  // vector q holding token 4l + q's 4 rows.
  for (int i0 = 0; i0 < R; i0 += 4) {
    const int rows = int(r1 - (r + i0) < 4 ? r1 - (r + i0) : 4);
    if (rows <= 0) break;
    const __mmask8 rm = __mmask8((1u << rows) - 1);
    for (int v = 0; v < V; ++v) {
      const __m512 t0 = _mm512_unpacklo_ps(acc[i0][v], acc[i0 + 1][v]), t1 = _mm512_unpackhi_ps(acc[i0][v], acc[i0 + 1][v]);
      const __m512 t2 = _mm512_unpacklo_ps(acc[i0 + 2][v], acc[i0 + 3][v]), t3 = _mm512_unpackhi_ps(acc[i0 + 2][v], acc[i0 + 3][v]);
      __m512 q[4];
      q[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
      q[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
      q[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
      q[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
      for (int l = 0; l < 4; ++l)
        for (int c = 0; c < 4; ++c) {
          const int64_t t = 16 * v + 4 * l + c;
          if (t >= a.n_tok) continue;
          float* y = a.y + t * a.ldy + r + i0;
          __m128 val = l == 0 ? _mm512_castps512_ps128(q[c]) : l == 1 ? _mm512_extractf32x4_ps(q[c], 1)
                     : l == 2 ? _mm512_extractf32x4_ps(q[c], 2) : _mm512_extractf32x4_ps(q[c], 3);
          if (!overwrite) val = _mm_add_ps(val, _mm_maskz_loadu_ps(rm, y));
          _mm_mask_storeu_ps(y, rm, val);
        }
    }
  }
}

template <int V>
void bf16_gemm_small(const MatmulArgs& a, int64_t r0, int64_t r1) {
  constexpr int R = V == 1 ? 12 : V == 2 ? 8 : 4;  // >= 12 accumulators, rows in fours
  const int64_t n_k = a.n_in / 2;
  static thread_local Scratch scratch;
  uint32_t* xp = scratch.get<uint32_t>(size_t(kBsKc * 16 * V));
  for (int64_t k0 = 0; k0 < n_k; k0 += kBsKc) {
    const int64_t kc = n_k - k0 < kBsKc ? n_k - k0 : kBsKc;
    bs_pack_tokens<V>(a, k0, kc, xp);
    const bool overwrite = k0 == 0 && !a.accumulate;
    for (int64_t r = r0; r < r1; r += R) bs_block<V, R>(a, r, r1, k0, kc, xp, overwrite);
  }
}
#endif

// Float weights: the GEMM from kFgMinTok tokens, tiles that stream the weights below.
constexpr int64_t kFgMinTok = 8;
template <int WT>
void mm_float(const MatmulArgs& a, int64_t r0, int64_t r1) {
#if defined(LRO_BF16)
  if (WT == 2 && a.n_in % 2 == 0) {
    if (bs_fits(a.n_tok)) {
      switch ((a.n_tok + 15) / 16) {
        case 1: bf16_gemm_small<1>(a, r0, r1); break;
        case 2: bf16_gemm_small<2>(a, r0, r1); break;
        case 3: bf16_gemm_small<3>(a, r0, r1); break;
        default: bf16_gemm_small<4>(a, r0, r1); break;
      }
    } else if (a.n_tok >= kFgMinTok)
      float_gemm<2, true>(a, r0, r1);
    else if (a.n_tok == 1)
      bf16_gemv(a, r0, r1);
    else
      run<FloatK<2>, 8, 4, 4>(a, r0, r1);
    return;
  }
#endif
  if (a.n_tok == 1)
    decode_two_streams<FloatK<WT>>(a, r0, r1);
  else if (a.n_tok >= kFgMinTok)
    float_gemm<WT>(a, r0, r1);
  else
    run<FloatK<WT>, 4, 4, 4>(a, r0, r1);  // 2-7 tokens: tiles of 4 rows x 4 tokens
}

#if defined(LRO_VNNI)
// ---- Q8_0 / Q4_0 / Q4_K weights, prefill with VNNI: an outer-product integer GEMM over blocks of
// 32 (Q4_K: its sub-blocks). Per slab of kQgBlocks blocks, a block of 32 weight rows is packed as int8
// (Q4_0: q - 8; Q4_K: the nibble) in 4-byte groups interleaved across rows ([block][group of 4][row]
// [4]), with per row and block its scale (Q4_K: d * sc_j), -128 * (sum of the block's weights) and, for
// Q4_K, dmin * m_j. The chunk's activations are packed as u8 (x + 128) in the same groups, [tile][k/4]
// [token][4]. Per block the micro-kernel runs 8 dpbusd steps (16 rows x 4 k x one token each) from the
// -128 * sum w start, which leaves exactly sum x*w, and folds the block into f32: acc += float(dot) *
// scale[rows] * d_x[token] (Q4_K: minus dmin m_j[rows] * amin[token][block]). The integer dot
// products equal the other paths'.
enum class Qg { Q8_0, Q4_0, Q4_K };
constexpr int kQgRows = 32, kQgTok = 6, kQgBlocks = 16, kQgChunk = 42 * kQgTok;
constexpr int kQgVecs = kQgRows / 16;

struct alignas(64) QgBlock {
  int8_t w[8][kQgRows][4];
  int32_t init[kQgRows];  // -128 * sum of the row's block weights
  float d[kQgRows];
  float mn[kQgRows];      // Q4_K: dmin * m_j
};


// Row `row`'s block `blk` as 32 int8 weights in element order, with its scale (and Q4_K's min).
template <Qg K>
inline __m256i qg_row_block(const MatmulArgs& a, int64_t row, int64_t blk, float& d, float& mn) {
  const uint8_t* rp = a.w + row * a.w_stride;
  const __m128i m4 = _mm_set1_epi8(0x0F);
  if (K == Qg::Q4_0) {
    const block_q4_0& q = reinterpret_cast<const block_q4_0*>(rp)[blk];
    d = h2f(q.d);
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.qs));
    const __m256i n = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));
    return _mm256_sub_epi8(n, _mm256_set1_epi8(8));
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
  return _mm256_and_si256(j % 2 ? _mm256_srli_epi16(qs, 4) : qs, _mm256_set1_epi8(0x0F));
}

// Packs blocks b0..b0+nb of rows row..row+rows (zero beyond) into the panel: two blocks of 16 rows at
// a time as a 16 x 16 transpose of 32-bit groups, then each row's -128 * sum from its packed groups.
template <Qg K>
void qg_pack_panel(const MatmulArgs& a, int64_t row, int rows, int64_t b0, int64_t nb, QgBlock* panel) {
  for (int v = 0; v < kQgVecs; ++v) {
    for (int64_t b = 0; b < nb; b += 2) {
      const bool two = b + 1 < nb;
      __m512 g[16];
      for (int i = 0; i < 16; ++i) {
        const int ri = 16 * v + i;
        float d0 = 0, m0 = 0, d1 = 0, m1 = 0;
        __m256i w0 = _mm256_setzero_si256(), w1 = _mm256_setzero_si256();
        if (ri < rows) {
          w0 = qg_row_block<K>(a, row + ri, b0 + b, d0, m0);
          if (two) w1 = qg_row_block<K>(a, row + ri, b0 + b + 1, d1, m1);
        }
        panel[b].d[ri] = d0, panel[b].mn[ri] = m0;
        if (two) panel[b + 1].d[ri] = d1, panel[b + 1].mn[ri] = m1;
        g[i] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1));
      }
      transpose16(g);  // g[k]: 32-bit group k (k < 8: block b, else b + 1) of the 16 rows
      for (int k = 0; k < 8; ++k) _mm512_store_ps(reinterpret_cast<float*>(&panel[b].w[k][16 * v][0]), g[k]);
      if (two)
        for (int k = 0; k < 8; ++k) _mm512_store_ps(reinterpret_cast<float*>(&panel[b + 1].w[k][16 * v][0]), g[8 + k]);
    }
  }
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t b = 0; b < nb; ++b)
    for (int v = 0; v < kQgVecs; ++v) {
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_load_si512(&panel[b].w[k][16 * v][0]));
      _mm512_store_si512(panel[b].init + 16 * v, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-128)));
    }
}

// xd[j * xd_stride + b / xd_per]: token j's activation scale for block b; am (Q4_K): a.amin rows.
template <Qg K, int T>
void qg_micro(const QgBlock* panel, int64_t nb, const uint8_t* xt, const float* xd, int64_t xd_stride, int xd_shift,
              const float* am, int64_t am_stride, float* y, int64_t ldy, const __mmask16 (&m)[kQgVecs], bool overwrite) {
  __m512 acc[kQgVecs][T];
  for (int v = 0; v < kQgVecs; ++v)
    for (int j = 0; j < T; ++j) acc[v][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const QgBlock& p = panel[b];
    __m512i dot[kQgVecs][T];
    for (int v = 0; v < kQgVecs; ++v) {
      const __m512i init = _mm512_load_si512(p.init + 16 * v);
      for (int j = 0; j < T; ++j) dot[v][j] = init;
    }
    const uint8_t* xb = xt + b * 8 * kQgTok * 4;
    for (int g = 0; g < 8; ++g) {
      __m512i w[kQgVecs];
      for (int v = 0; v < kQgVecs; ++v) w[v] = _mm512_load_si512(&p.w[g][16 * v][0]);
      for (int j = 0; j < T; ++j) {
        int32_t x4;
        __builtin_memcpy(&x4, xb + (g * kQgTok + j) * 4, 4);
        const __m512i xv = _mm512_set1_epi32(x4);
        for (int v = 0; v < kQgVecs; ++v) dot[v][j] = _mm512_dpbusd_epi32(dot[v][j], xv, w[v]);
      }
    }
    for (int v = 0; v < kQgVecs; ++v) {
      const __m512 dw = _mm512_load_ps(p.d + 16 * v);
      for (int j = 0; j < T; ++j) {
        acc[v][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[v][j]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[j * xd_stride + (b >> xd_shift)])),
                                    acc[v][j]);
        if (K == Qg::Q4_K)
          acc[v][j] = _mm512_fnmadd_ps(_mm512_load_ps(p.mn + 16 * v), _mm512_set1_ps(am[j * am_stride + b]), acc[v][j]);
      }
    }
  }
  for (int j = 0; j < T; ++j)
    for (int v = 0; v < kQgVecs; ++v) {
      float* q = y + j * ldy + 16 * v;
      _mm512_mask_storeu_ps(q, m[v], overwrite ? acc[v][j] : _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], q), acc[v][j]));
    }
}

template <Qg K, int T = kQgTok>
void qg_micro_n(int tt, const QgBlock* panel, int64_t nb, const uint8_t* xt, const float* xd, int64_t xd_stride,
                int xd_shift, const float* am, int64_t am_stride, float* y, int64_t ldy, const __mmask16 (&m)[kQgVecs],
                bool overwrite) {
  if constexpr (T > 1) {
    if (tt < T) return qg_micro_n<K, T - 1>(tt, panel, nb, xt, xd, xd_stride, xd_shift, am, am_stride, y, ldy, m, overwrite);
  }
  qg_micro<K, T>(panel, nb, xt, xd, xd_stride, xd_shift, am, am_stride, y, ldy, m, overwrite);
}

template <Qg K>
void q32_gemm(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb_row = a.n_in / 32;
  // Activation scales: one per block of 32 (Q8_0 / Q4_0), one per 256 (Q4_K: 8 blocks).
  const int xd_shift = K == Qg::Q4_K ? 3 : 0;
  const int64_t xd_stride = nb_row >> xd_shift;
  QgBlock panel[kQgBlocks];
  static thread_local Scratch scratch;
  uint8_t* const xt = scratch.get<uint8_t>(size_t(kQgChunk) * 32 * kQgBlocks);
  const int64_t bytes_per_block = K == Qg::Q4_0 ? int64_t(sizeof(block_q4_0)) : K == Qg::Q8_0 ? int64_t(sizeof(block_q8_0))
                                                                                             : int64_t(sizeof(block_q4_K)) / 8;
  for (int64_t t0 = 0; t0 < a.n_tok; t0 += kQgChunk) {
    const int64_t nt = a.n_tok - t0 < kQgChunk ? a.n_tok - t0 : kQgChunk;
    const int64_t ntiles = (nt + kQgTok - 1) / kQgTok;
    for (int64_t b0 = 0; b0 < nb_row; b0 += kQgBlocks) {
      const int64_t nb = nb_row - b0 < kQgBlocks ? nb_row - b0 : kQgBlocks;
      // Activations as u8 (x + 128), [tile][k/4][token][4]; absent tokens are x = 0.
      for (int64_t tile = 0; tile < ntiles; ++tile) {
        uint8_t* dst = xt + tile * nb * 32 * kQgTok;
        for (int j = 0; j < kQgTok; ++j) {
          const int64_t t = tile * kQgTok + j;
          const int8_t* src = a.aq + (t0 + t) * a.n_in + 32 * b0;
          for (int64_t g = 0; g < nb * 8; ++g)
            for (int e = 0; e < 4; ++e) dst[(g * kQgTok + j) * 4 + e] = t < nt ? uint8_t(src[4 * g + e] ^ 0x80) : 0x80;
        }
      }
      const bool overwrite = b0 == 0 && !a.accumulate;
      for (int64_t r = r0; r < r1; r += kQgRows) {
        const int rr = int(r1 - r < kQgRows ? r1 - r : kQgRows);
        qg_pack_panel<K>(a, r, rr, b0, nb, panel);
        __mmask16 m[kQgVecs];
        row_masks(rr, m);
        const int64_t next_rows = r + kQgRows < r1 ? (r1 - r - kQgRows < kQgRows ? r1 - r - kQgRows : kQgRows) : 0;
        NextBlockPrefetch next{a.w + (r + kQgRows) * a.w_stride + b0 * bytes_per_block, a.w_stride, next_rows,
                               nb * bytes_per_block, ntiles};
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          next.tile(tile);
          const int64_t t = t0 + tile * kQgTok;
          const int tt = int(nt - tile * kQgTok < kQgTok ? nt - tile * kQgTok : kQgTok);
          qg_micro_n<K>(tt, panel, nb, xt + tile * nb * 32 * kQgTok, a.ad + t * xd_stride + (b0 >> xd_shift), xd_stride, xd_shift,
                        K == Qg::Q4_K ? a.amin + t * nb_row + b0 : nullptr, nb_row, a.y + t * a.ldy + r, a.ldy, m, overwrite);
        }
      }
    }
  }
}
#endif

// Decode (and prefill remainders under 4 tokens) stream the weights directly; prefill packs panels.
template <class K, class P, int RD, int RP, int TP>
void run_q(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok < 4)
    run<K, RD, RD, 2>(a, r0, r1);
  else
    gemm<P, RP, TP>(a, r0, r1);
}

#if defined(LRO_VNNI)
// ---- Q4_0 decode (one token) with VNNI: four blocks (128 weights) a step. The token's activations
// are first laid out per group of 4 blocks as the weights' nibbles come: the low halves (elements
// 0-15) of the 4 blocks, then the high halves, each 64 bytes; with per 32-bit lane the block's d_x and
// a start of -8 * (sum of the block's x) in the block's first lane, so that two dpbusd of the raw
// nibbles (u8) against x (s8) leave sum (q - 8) x in the block's 4 lanes. Per row and group: 4 loads,
// 3 ops to split nibbles, 2 dpbusd, the 4 d_w as one f16 -> f32 conversion, one FMA. Rows one at a
// time: the weights are then read as one sequential stream (x stays in L1).
struct alignas(64) Q40Group {
  int8_t lo[64], hi[64];
  int32_t init[16];
  float dx[16];
};


template <int R>
inline void q4_0_gemv_rows(const MatmulArgs& a, int64_t r, const Q40Group* xg, int64_t ngroups, int64_t nb) {
  const block_q4_0* w[R];
  for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const block_q4_0*>(a.w + (r + i) * a.w_stride);
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t g = 0; g < ngroups; ++g) {
    const Q40Group& x = xg[g];
    const int64_t b = 4 * g;
    const int nblk = nb - b < 4 ? int(nb - b) : 4;
    const __m512i xlo = _mm512_load_si512(x.lo), xhi = _mm512_load_si512(x.hi), init = _mm512_load_si512(x.init);
    const __m512 dx = _mm512_load_ps(x.dx);
    for (int i = 0; i < R; ++i) {
      const char* nxt = reinterpret_cast<const char*>(w[i] + b) + 8192;  // further on in the stream (8 KB: 1 KB left it waiting on memory, 71 -> 87 tok/s)
      _mm_prefetch(nxt, _MM_HINT_T0);
      _mm_prefetch(nxt + 64, _MM_HINT_T0);
      __m512i q;
      __m128i d16;
      if (nblk == 4) {
        q = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b].qs)));
        q = _mm512_inserti32x4(q, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b + 1].qs)), 1);
        q = _mm512_inserti32x4(q, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b + 2].qs)), 2);
        q = _mm512_inserti32x4(q, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i][b + 3].qs)), 3);
        d16 = _mm_setr_epi16(short(w[i][b].d), short(w[i][b + 1].d), short(w[i][b + 2].d), short(w[i][b + 3].d), 0, 0, 0, 0);
      } else {  // the row's last, partial group: absent blocks are zero weights with zero scale
        alignas(64) uint8_t qb[64] = {};
        uint16_t ds[8] = {};
        for (int k = 0; k < nblk; ++k) {
          __builtin_memcpy(qb + 16 * k, w[i][b + k].qs, 16);
          ds[k] = w[i][b + k].d;
        }
        q = _mm512_load_si512(qb);
        d16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ds));
      }
      __m512i dot = _mm512_dpbusd_epi32(init, _mm512_and_si512(q, m4), xlo);
      dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4), xhi);
      const __m512 dw = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(d16)));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, dx), acc[i]);
    }
  }
  for (int i = 0; i < R; ++i) store(a, 0, r + i, _mm512_reduce_add_ps(acc[i]));
}

void q4_0_gemv(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32, ngroups = (nb + 3) / 4;
  static thread_local Scratch scratch;
  Q40Group* xg = scratch.get<Q40Group>(size_t(ngroups));
  for (int64_t g = 0; g < ngroups; ++g) {
    Q40Group& x = xg[g];
    for (int k = 0; k < 4; ++k) {
      const int64_t b = 4 * g + k;
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
  for (int64_t r = r0; r < r1; ++r) q4_0_gemv_rows<1>(a, r, xg, ngroups, nb);
}
#endif

// ---- Q4_K decode (one token): rows in two streams (two_streams), four super-blocks a step.
// What costs here is not the multiply-adds but each super-block's 16-byte head (d, dmin and the 6-bit
// scales and mins packed into 12 bytes): unpacked one block at a time it took more instructions than
// the 256 weights. Four heads share one zmm (a 128-bit lane each) and are unpacked together; the
// mins term of the four blocks is one int16 pair dot against the activation sums over 32, and the
// d and dmin of the four blocks one f16 -> f32 conversion. The weights' bytes are read 64 at a time
// (two 32-byte chunks): their low nibbles are sub-blocks 4c and 4c+2, the high nibbles 4c+1 and
// 4c+3 (c = 0, 1), so the token's activations are first laid out per block in that order.
struct alignas(64) Q4KGroup {
  int8_t x[4][256];  // per block: x of sub-blocks 0|2, 1|3, 4|6, 5|7 (64 bytes each)
  int16_t bs[4][8];  // per block: the sums of x over each sub-block of 32
  float dx[8];       // each block's d_x, twice (the lanes of d and dmin)
};

// Per 128-bit lane, a super-block's first 16 bytes (d, dmin, then 12 bytes w0 w1 w2 of packed 6-bit
// values) -> the 8 scales in bytes 0-7 and the 8 mins in bytes 8-15:
//   scales 0-3: w0 & 3F; 4-7: (w2 & 0F) | (w0 >> 2 & 30); mins 0-3: w1 & 3F; 4-7: (w2 >> 4 & 0F) | (w1 >> 2 & 30)
// (byte-wise masks: a byte's bits 6-7 become bits 4-5 of the value in the upper half).
inline __m512i q4k_unpack_heads(__m512i h) {
  const __m512i a = _mm512_shuffle_epi32(h, _MM_PERM_ENUM(0xA5));  // dwords w0 w0 w1 w1
  const __m512i b = _mm512_shuffle_epi32(h, _MM_PERM_ENUM(0xFF));  // w2 w2 w2 w2
  const __m512i lo = _mm512_and_si512(_mm512_mask_srli_epi32(a, 0xAAAA, a, 2),
                                      _mm512_set4_epi32(0x30303030, 0x3F3F3F3F, 0x30303030, 0x3F3F3F3F));
  const __m512i hi = _mm512_mask_srli_epi32(b, 0x8888, b, 4);
  return _mm512_ternarylogic_epi32(lo, hi, _mm512_set4_epi32(0x0F0F0F0F, 0, 0x0F0F0F0F, 0), 0xF8);  // lo | (hi & mask)
}

// Index vectors of the group kernel, loaded from memory: built in registers they took 3 instructions
// each (too many to keep live). Computed at compile time: a constructor run at load would be
// compiled for AVX-512 like everything in this file, and run on any CPU.
struct Q4KPicks {
  // [4k + 2c + h]: the scales of block k's chunk c, nibble half h (0 low, 1 high), as words:
  // lanes 0-15 <- word 8k + 4c + h, lanes 16-31 <- word 8k + 4c + h + 2.
  alignas(64) int16_t scale[16][32] = {};
  alignas(64) int32_t block[4][16] = {};  // all 2k: block k's d * d_x
  alignas(64) int32_t mins[16] = {};      // each block's dmin * d_x in its 4 lanes
  alignas(64) int32_t heads[16] = {};     // the dwords d | dmin of the four heads, first
  constexpr Q4KPicks() {
    for (int v = 0; v < 16; ++v)
      for (int l = 0; l < 32; ++l) scale[v][l] = int16_t(8 * (v / 4) + 4 * (v / 2 % 2) + v % 2 + (l >= 16 ? 2 : 0));
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 16; ++l) block[k][l] = 2 * k;
    for (int l = 0; l < 16; ++l) mins[l] = 2 * (l / 4) + 1, heads[l] = 4 * (l % 4);
  }
};
constexpr Q4KPicks kQ4KPicks{};

inline __m512i load512(const void* p) { return _mm512_load_si512(p); }

template <int NB>
inline void q4k_gemv_group(const block_q4_K* blk, const Q4KGroup& x, __m512& acc, __m512& macc) {
  __m512i h = _mm512_setzero_si512();
  h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)), 0);
  if (NB > 1) h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 1)), 1);
  if (NB > 2) h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)), 2);
  if (NB > 3) h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 3)), 3);
  const __m512i sm = q4k_unpack_heads(h);
  // d0 dmin0 d1 dmin1 ... as f32, times each block's d_x.
  const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(load512(kQ4KPicks.heads), h))),
                                  _mm256_load_ps(x.dx));
  const __m512 dd16 = _mm512_castps256_ps512(dd);
  const __m512i zero = _mm512_setzero_si512();
  // Mins: per lane (block) 4 pair sums of m_j * sum32_j, times that block's dmin * d_x.
  const __m512i md = _mm512_madd_epi16(_mm512_unpackhi_epi8(sm, zero), load512(x.bs));
  macc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(md), _mm512_permutexvar_ps(load512(kQ4KPicks.mins), dd16), macc);
  const __m512i sw = _mm512_unpacklo_epi8(sm, zero);  // per lane: the block's 8 scales as words
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int k = 0; k < NB; ++k) {
    __m512i i0 = zero, i1 = zero;
    for (int c = 0; c < 2; ++c) {
      const __m512i q = _mm512_loadu_si512(blk[k].qs + 64 * c);
      const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      const __m512i slo = _mm512_permutexvar_epi16(load512(kQ4KPicks.scale[4 * k + 2 * c]), sw);
      const __m512i shi = _mm512_permutexvar_epi16(load512(kQ4KPicks.scale[4 * k + 2 * c + 1]), sw);
      const __m512i plo = _mm512_maddubs_epi16(lo, load512(x.x[k] + 128 * c));
      const __m512i phi = _mm512_maddubs_epi16(hi, load512(x.x[k] + 128 * c + 64));
      i0 = c == 0 ? _mm512_madd_epi16(plo, slo) : dot_s16(i0, plo, slo);
      i1 = c == 0 ? _mm512_madd_epi16(phi, shi) : dot_s16(i1, phi, shi);
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), _mm512_permutexvar_ps(load512(kQ4KPicks.block[k]), dd16), acc);
  }
}

// Rows r + i * step for i < R, one group of each a step.
template <int R>
void q4k_gemv_rows(const MatmulArgs& a, int64_t r, int64_t step, const Q4KGroup* xg, int64_t nb) {
  const int64_t full = nb / 4, rest = nb % 4;
  const block_q4_K* w[R];
  __m512 acc[R], macc[R];
  for (int i = 0; i < R; ++i) {
    w[i] = reinterpret_cast<const block_q4_K*>(a.w + (r + i * step) * a.w_stride);
    acc[i] = macc[i] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < full; ++g) {
    for (int i = 0; i < R; ++i) {  // further on in each stream (8 KB: 1 KB was no faster than none)
      const char* nxt = reinterpret_cast<const char*>(w[i] + 4 * g) + 8192;
      for (int o = 0; o < 4 * int(sizeof(block_q4_K)); o += 64) _mm_prefetch(nxt + o, _MM_HINT_T0);
    }
    for (int i = 0; i < R; ++i) q4k_gemv_group<4>(w[i] + 4 * g, xg[g], acc[i], macc[i]);
  }
  for (int i = 0; i < R; ++i) {
    switch (rest) {
      case 1: q4k_gemv_group<1>(w[i] + 4 * full, xg[full], acc[i], macc[i]); break;
      case 2: q4k_gemv_group<2>(w[i] + 4 * full, xg[full], acc[i], macc[i]); break;
      case 3: q4k_gemv_group<3>(w[i] + 4 * full, xg[full], acc[i], macc[i]); break;
      default: break;
    }
    store(a, 0, r + i * step, _mm512_reduce_add_ps(acc[i]) - _mm512_reduce_add_ps(macc[i]));
  }
}

void q4k_gemv(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / QK_K, ngroups = (nb + 3) / 4;
  static thread_local Scratch scratch;
  Q4KGroup* xg = scratch.get<Q4KGroup>(size_t(ngroups));
  for (int64_t g = 0; g < ngroups; ++g) {
    Q4KGroup& x = xg[g];
    for (int k = 0; k < 4; ++k) {
      const int64_t b = 4 * g + k;
      const bool has = b < nb;  // absent blocks of the last group: zero activations and scale
      for (int c = 0; c < 2; ++c)
        for (int half = 0; half < 2; ++half)  // 0: the low nibbles (sub-blocks 4c, 4c+2); 1: the high
          for (int side = 0; side < 2; ++side)
            for (int e = 0; e < 32; ++e)
              x.x[k][128 * c + 64 * half + 32 * side + e] = has ? a.aq[QK_K * b + 32 * (4 * c + half + 2 * side) + e] : 0;
      for (int j = 0; j < 8; ++j) x.bs[k][j] = has ? int16_t(a.as[16 * b + 2 * j] + a.as[16 * b + 2 * j + 1]) : 0;
      x.dx[2 * k] = x.dx[2 * k + 1] = has ? a.ad[b] : 0.0f;
    }
  }
  two_streams(
      r0, r1, [&](int64_t r, int64_t step) { q4k_gemv_rows<2>(a, r, step, xg, nb); },
      [&](int64_t r) { q4k_gemv_rows<1>(a, r, 0, xg, nb); });
}

// Q8_0 / Q4_0 / Q4_K: with VNNI, the outer-product GEMM from kQgMinTok tokens.
constexpr int64_t kQgMinTok = 8;
template <bool Q4>
void mm_q32(const MatmulArgs& a, int64_t r0, int64_t r1) {
#if defined(LRO_VNNI)
  if (a.n_tok >= kQgMinTok) return q32_gemm<Q4 ? Qg::Q4_0 : Qg::Q8_0>(a, r0, r1);
  if (Q4 && a.n_tok == 1) return q4_0_gemv(a, r0, r1);
#endif
  if (a.n_tok == 1) return decode_two_streams<Q32K<Q4>>(a, r0, r1);
  run_q<Q32K<Q4>, PanelQ32<Q4>, 8, 4, 4>(a, r0, r1);
}
void mm_q4_K(const MatmulArgs& a, int64_t r0, int64_t r1) {
#if defined(LRO_VNNI)
  if (a.n_tok >= kQgMinTok) return q32_gemm<Qg::Q4_K>(a, r0, r1);
#endif
  if (a.n_tok == 1) return q4k_gemv(a, r0, r1);
  run_q<Q4KK, PanelQ4K, 8, 4, 3>(a, r0, r1);
}

void mm_f32(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<0>(a, r0, r1); }
void mm_f16(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<1>(a, r0, r1); }
void mm_bf16(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_float<2>(a, r0, r1); }
void mm_q8_0(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_q32<false>(a, r0, r1); }
void mm_q4_0(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_q32<true>(a, r0, r1); }
void mm_q6_K(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tok == 1) return decode_two_streams<Q6KK>(a, r0, r1);
  run_q<Q6KK, PanelQ6K, 4, 4, 3>(a, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// Weight gradient (quants_kernels.h OuterFn): tiles of R rows x 32 columns in 2R registers; per
// token, two loads of x and R broadcasts of dy feed 2R FMAs. Tokens in chunks of kOuterTokens, so
// the chunk's 32 columns of x (16 KB) stay in L1 while the row tiles pass over them.

template <int R>
__attribute__((always_inline)) inline void outer_tile(float* dw, const float* dy, const float* x, int64_t t0, int64_t t1,
                                                      int64_t n_out, int64_t n_in, int64_t o, int64_t i0,
                                                      __mmask16 m0, __mmask16 m1) {
  __m512 acc[R][2];
#pragma GCC unroll 8
  for (int k = 0; k < R; ++k) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = x + t * n_in + i0;
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, xr), x1 = _mm512_maskz_loadu_ps(m1, xr + 16);
    const float* g = dy + t * n_out + o;
#pragma GCC unroll 8
    for (int k = 0; k < R; ++k) {
      const __m512 b = _mm512_set1_ps(g[k]);
      acc[k][0] = _mm512_fmadd_ps(b, x0, acc[k][0]);
      acc[k][1] = _mm512_fmadd_ps(b, x1, acc[k][1]);
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < R; ++k) {
    float* row = dw + (o + k) * n_in + i0;
    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), acc[k][0]));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row + 16), acc[k][1]));
  }
}

void outer_f32(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in, int64_t o0, int64_t o1) {
  constexpr int R = kOuterRows;
  static_assert(R == 6, "the remainder switch below covers 1 to 5 rows");
  for (int64_t t0 = 0; t0 < n; t0 += kOuterTokens) {
    const int64_t t1 = std::min(n, t0 + kOuterTokens);
    for (int64_t i0 = 0; i0 < n_in; i0 += 32) {
      const int64_t w = std::min<int64_t>(32, n_in - i0);
      const __mmask16 m0 = w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << w) - 1);
      const __mmask16 m1 = w >= 32 ? __mmask16(0xFFFF) : w > 16 ? __mmask16((1u << (w - 16)) - 1) : __mmask16(0);
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

const KernelTable LRO_TABLE_NAME = {
#if defined(LRO_BF16)
    "avx512 vnni bf16",
#elif defined(LRO_VNNI)
    "avx512 vnni",
#else
    "avx512",
#endif
    mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_K, mm_q6_K, act32, act256, outer_f32,
};

}  // namespace qk
}  // namespace lro

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
