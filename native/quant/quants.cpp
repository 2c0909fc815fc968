// Element types, (de)quantisation, the portable scalar kernels and the run-time SIMD dispatch.
//
// Dequantisation is bit-exact with ggml whatever the compiler's fp-contraction setting: the only
// multiply-then-add is Q4_K's d1 * q - m1, and d1 * q is exact in float (d1 = fp16 d * 6-bit scale
// has at most 17 significant bits, q 4), so a fused multiply-add rounds the same way.

#include "quant/quants.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/quants_kernels.h"
#include "core/thread_pool.h"

namespace lro {

// ---------------------------------------------------------------------------------------------
// fp16 / bf16

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Branch-free so that the scalar kernels vectorise: the half's exponent and mantissa are placed in
// a float and rescaled by 2^-112 (exact: a power of two; exponent 31 lands on inf/NaN), subnormals
// are formed as (0.5 + m * 2^-24) - 0.5 (exact). NaNs come back quiet, as with F16C.
float fp16_to_fp32(uint16_t h) {
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
  __fp16 v;  // hardware conversion, exact
  std::memcpy(&v, &h, 2);
  return float(v);
#endif
  const uint32_t two_w = uint32_t(h) << 17;  // exponent and mantissa, sign shifted out
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const float normal = bits_f32((two_w >> 4) + (0xE0u << 23)) * 0x1p-112f;
  const float subnormal = bits_f32((two_w >> 17) | (126u << 23)) - 0.5f;
  return bits_f32(sign | (two_w < (1u << 27) ? f32_bits(subnormal) : f32_bits(normal)));
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x = f32_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  x &= 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00;       // NaN -> canonical quiet NaN (as ggml's scalar path)
  if (x >= 0x477FF000u) return sign | 0x7C00;      // >= 65520 rounds (ties-to-even) past 65504 -> inf
  if (x < 0x38800000u) {                           // below 2^-14: half subnormal (or zero)
    const int shift = 126 - int(x >> 23);          // value * 2^24 = mant * 2^-shift
    if (shift > 24) return sign;
    const uint32_t mant = (x & 0x7FFFFFu) | 0x800000u;
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;  // may carry into the smallest normal: correct
    return uint16_t(sign | q);
  }
  uint32_t h = (x >> 13) - (112u << 10);
  const uint32_t rem = x & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carry into the exponent is the right result
  return uint16_t(sign | h);
}

// ---------------------------------------------------------------------------------------------
// Dequantisation (bit-exact with ggml's to_float: same operations in the same order)

static inline void q4k_scale_min(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case GgmlType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case GgmlType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case GgmlType::Q8_0: {
      const block_q8_0* b = static_cast<const block_q8_0*>(src);
      for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; ++j) dst[i * QK8_0 + j] = float(b[i].qs[j]) * d;
      }
      return;
    }
    case GgmlType::Q4_0: {
      const block_q4_0* b = static_cast<const block_q4_0*>(src);
      for (int64_t i = 0; i < n / QK4_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        float* y = dst + i * QK4_0;
        for (int j = 0; j < QK4_0 / 2; ++j) {
          y[j] = float((b[i].qs[j] & 0x0F) - 8) * d;
          y[j + QK4_0 / 2] = float((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case GgmlType::Q4_K: {
      const block_q4_K* b = static_cast<const block_q4_K*>(src);
      for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        const uint8_t* q = b[i].qs;
        float* y = dst + i * QK_K;
        for (int j = 0; j < 8; j += 2) {
          int sc, m;
          q4k_scale_min(j, b[i].scales, sc, m);
          const float d1 = d * float(sc), m1 = dmin * float(m);
          q4k_scale_min(j + 1, b[i].scales, sc, m);
          const float d2 = d * float(sc), m2 = dmin * float(m);
          for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
          q += 32;
        }
      }
      return;
    }
    case GgmlType::Q6_K: {
      const block_q6_K* b = static_cast<const block_q6_K*>(src);
      for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        float* y = dst + i * QK_K;
        for (int half = 0; half < 2; ++half) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * float(sc[is]) * float(q1);
            y[l + 32] = d * float(sc[is + 2]) * float(q2);
            y[l + 64] = d * float(sc[is + 4]) * float(q3);
            y[l + 96] = d * float(sc[is + 6]) * float(q4);
          }
          y += 128;
          ql += 64;
          qh += 32;
          sc += 8;
        }
      }
      return;
    }
    default:
      throw std::runtime_error(std::string("dequantize_row: unsupported type ") +
                               (ggml_type_traits(uint32_t(type)) ? traits(type).name : "?"));
  }
}

// ---------------------------------------------------------------------------------------------
// Quantisation

static inline int round_half_away(float v) { return int(std::round(v)); }

static void quantize_q8_0(const float* x, block_q8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = int8_t(round_half_away(x[j] * id));
  }
}

static void quantize_q4_0(const float* x, block_q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    // The element of largest magnitude maps exactly to -8 (the asymmetric end of [-8, 7]).
    float amax = 0, vmax = 0;
    for (int j = 0; j < QK4_0; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
    const float d = vmax / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int a = std::min(15, int(x[j] * id + 8.5f));
      const int b = std::min(15, int(x[j + QK4_0 / 2] * id + 8.5f));
      y[i].qs[j] = uint8_t(a | (b << 4));
    }
  }
}

// Fits x[0..n) ~ scale * L - mn with L in [0, nmax], mn >= 0, by trying a few grid spacings
// around (max - min) / nmax and refitting (scale, mn) by least squares for each candidate grid.
static void fit_affine(const float* x, int n, int nmax, float& scale, float& mn) {
  float lo = 0, hi = 0;  // lo <= 0 so that mn >= 0 (the format stores the offset unsigned)
  for (int i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (hi <= lo) {
    scale = 0;
    mn = -lo;
    return;
  }
  float best_err = INFINITY;
  scale = (hi - lo) / nmax;
  mn = -lo;
  for (int k = -6; k <= 12; ++k) {
    const float iscale = (float(nmax) + 0.1f * float(k)) / (hi - lo);
    // Least squares for x ~ a*L + b over this candidate's L.
    double sl = 0, sll = 0, sx = 0, slx = 0;
    int L[256];
    for (int i = 0; i < n; ++i) {
      L[i] = std::clamp(int(std::nearbyint(iscale * (x[i] - lo))), 0, nmax);
      sl += L[i], sll += double(L[i]) * L[i], sx += x[i], slx += double(L[i]) * x[i];
    }
    const double det = n * sll - sl * sl;
    if (det <= 0) continue;
    double a = (n * slx - sl * sx) / det, b = (sll * sx - sl * slx) / det;
    if (b > 0) {  // offset must be <= 0: refit the scale alone with b = 0
      b = 0;
      a = sll > 0 ? slx / sll : 0;
    }
    if (a <= 0) continue;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = a * L[i] + b - x[i];
      err += e * e;
    }
    if (err < best_err) best_err = float(err), scale = float(a), mn = float(-b);
  }
}

static void quantize_q4_K(const float* x, block_q4_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      fit_affine(x + 32 * j, 32, 15, scales[j], mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    // 6-bit sub-block scales and mins relative to two fp16 super-block factors.
    const uint16_t dh = fp32_to_fp16(max_scale / 63.0f), mh = fp32_to_fp16(max_min / 63.0f);
    const float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(mh);
    uint8_t sc[8], mq[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = uint8_t(d > 0 ? std::clamp(int(std::nearbyint(scales[j] / d)), 0, 63) : 0);
      mq[j] = uint8_t(dmin > 0 ? std::clamp(int(std::nearbyint(mins[j] / dmin)), 0, 63) : 0);
    }
    y[i].d = dh;
    y[i].dmin = mh;
    for (int j = 0; j < 4; ++j) {
      y[i].scales[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
      y[i].scales[j + 4] = uint8_t((mq[j] & 63) | ((mq[j + 4] >> 4) << 6));
      y[i].scales[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((mq[j + 4] & 0xF) << 4));
    }
    // Requantise against the scales as stored, so rounding of the scales is compensated.
    uint8_t L[QK_K];
    for (int j = 0; j < 8; ++j) {
      const float ds = d * sc[j], dm = dmin * mq[j];
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = uint8_t(ds > 0 ? std::clamp(int(std::nearbyint((x[32 * j + l] + dm) / ds)), 0, 15) : 0);
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

// Symmetric fit x ~ scale * L, L in [-32, 31]: tries grids anchored on the largest-magnitude
// element at either end of the range, refits the scale by least squares, keeps the best.
static float fit_symmetric_q6(const float* x, int n) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
  if (amax == 0) return 0;
  float best = vmax / -32.0f, best_err = INFINITY;
  for (int k = 0; k <= 16; ++k) {
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      const float s0 = vmax / (float(sgn) * (32.0f - 0.25f * float(k)));
      double sxl = 0, sll = 0;
      int L[16];
      for (int i = 0; i < n; ++i) {
        L[i] = std::clamp(int(std::nearbyint(x[i] / s0)), -32, 31);
        sxl += double(x[i]) * L[i], sll += double(L[i]) * L[i];
      }
      if (sll <= 0) continue;
      const double s = sxl / sll;
      double err = 0;
      for (int i = 0; i < n; ++i) {
        const double e = s * L[i] - x[i];
        err += e * e;
      }
      if (err < best_err) best_err = float(err), best = float(s);
    }
  }
  return best;
}

static void quantize_q6_K(const float* x, block_q6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float scales[16], amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_symmetric_q6(x + 16 * j, 16);
      amax = std::max(amax, std::fabs(scales[j]));
    }
    const uint16_t dh = fp32_to_fp16(amax / 127.0f);
    const float d = fp16_to_fp32(dh);
    y[i].d = dh;
    uint8_t L[QK_K];
    for (int j = 0; j < 16; ++j) {
      const int s = d > 0 ? std::clamp(int(std::nearbyint(scales[j] / d)), -127, 127) : 0;
      y[i].scales[j] = int8_t(s);
      const float ds = d * float(s);
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = uint8_t((ds != 0 ? std::clamp(int(std::nearbyint(x[16 * j + l] / ds)), -32, 31) : 0) + 32);
    }
    for (int half = 0; half < 2; ++half) {
      uint8_t* ql = y[i].ql + 64 * half;
      uint8_t* qh = y[i].qh + 32 * half;
      const uint8_t* Lh = L + 128 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = uint8_t((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = uint8_t((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = uint8_t((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

bool can_quantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  if (!can_quantize(type)) throw std::runtime_error("quantize_row: unsupported type");
  const int64_t bs = traits(type).block_size;
  if (n % bs != 0) throw std::runtime_error("quantize_row: n is not a multiple of the block size");
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case GgmlType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case GgmlType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    case GgmlType::Q8_0: quantize_q8_0(src, static_cast<block_q8_0*>(dst), n / bs); return;
    case GgmlType::Q4_0: quantize_q4_0(src, static_cast<block_q4_0*>(dst), n / bs); return;
    case GgmlType::Q4_K: quantize_q4_K(src, static_cast<block_q4_K*>(dst), n / bs); return;
    case GgmlType::Q6_K: quantize_q6_K(src, static_cast<block_q6_K*>(dst), n / bs); return;
    default: return;
  }
}

// ---------------------------------------------------------------------------------------------
// Portable scalar kernels (the reference for the SIMD paths, and the path on non-x86 CPUs)

namespace qk {
namespace {

// Activation quantisation, the definition every SIMD path reproduces bit for bit: per block,
// d = amax / 127, q = round-to-nearest-even(x * (127 / amax)). (127/amax rather than 1/d: one
// rounding fewer, and both are exact IEEE operations every ISA performs identically.)
template <int BS, int SG>
void act_quant(const float* x, int64_t n, int8_t* qs, float* d, int16_t* s) {
  for (int64_t b = 0; b < n / BS; ++b) {
    const float* xb = x + b * BS;
    float amax = 0;
    bool finite = true;
    for (int j = 0; j < BS; ++j) {
      amax = std::max(amax, std::fabs(xb[j]));
      finite &= std::isfinite(xb[j]);
    }
    if (!finite) {  // a non-finite activation: a zero block whose scale carries the NaN
      std::fill(qs + b * BS, qs + (b + 1) * BS, int8_t(0));
      d[b] = std::numeric_limits<float>::quiet_NaN();
      std::fill(s + b * (BS / SG), s + (b + 1) * (BS / SG), int16_t(0));
      continue;
    }
    d[b] = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    for (int g = 0; g < BS / SG; ++g) {
      int sum = 0;
      for (int j = g * SG; j < (g + 1) * SG; ++j) {
        const int q = int(std::nearbyint(xb[j] * id));
        qs[b * BS + j] = int8_t(q);
        sum += q;
      }
      s[b * (BS / SG) + g] = int16_t(sum);
    }
  }
}

inline void store(const MatmulArgs& a, int64_t t, int64_t r, float v) {
  float* p = a.y + t * a.ldy + r;
  *p = a.accumulate ? *p + v : v;
}

// The scalar kernels unpack each weight row once (to f32, or to int8 plus block scales) and then
// run plain loops over the tokens that the compiler can vectorise for whatever the target has.

template <typename Conv>
void mm_float(const MatmulArgs& a, int64_t r0, int64_t r1, Conv conv) {
  // W [rows, n_in] (f32 | f16 | bf16) x X [n_tok, n_in] f32.
  std::vector<float> wr(size_t(a.n_in));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* w = a.w + r * a.w_stride;
    for (int64_t i = 0; i < a.n_in; ++i) wr[size_t(i)] = conv(w, i);
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const float* x = a.x + t * a.n_in;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 partial sums: vectorisable without reassociation
      int64_t i = 0;
      for (; i + 8 <= a.n_in; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += wr[size_t(i + k)] * x[i + k];
      float sum = 0;
      for (; i < a.n_in; ++i) sum += wr[size_t(i)] * x[i];
      for (int k = 0; k < 8; ++k) sum += acc[k];
      store(a, t, r, sum);
    }
  }
}

void mm_f32(const MatmulArgs& a, int64_t r0, int64_t r1) {
  mm_float(a, r0, r1, [](const uint8_t* w, int64_t i) {
    float f;
    std::memcpy(&f, w + 4 * i, 4);
    return f;
  });
}
void mm_f16(const MatmulArgs& a, int64_t r0, int64_t r1) {
  mm_float(a, r0, r1, [](const uint8_t* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, w + 2 * i, 2);
    return fp16_to_fp32(h);
  });
}
void mm_bf16(const MatmulArgs& a, int64_t r0, int64_t r1) {
  mm_float(a, r0, r1, [](const uint8_t* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, w + 2 * i, 2);
    return bf16_to_fp32(h);
  });
}

// int8 dot of n elements (n a multiple of 16), written for auto-vectorisation.
inline int dot_i8(const int8_t* a, const int8_t* b, int n) {
  int s = 0;
  for (int i = 0; i < n; ++i) s += int(a[i]) * int(b[i]);
  return s;
}

// Q8_0 / Q4_0 weights x a32 activations. Rows unpacked to signed int8 (Q4_0: q - 8) and d_w; per
// block dot = int8 dot of 32, scaled by d_w * d_x.
template <bool Q4>
void mm_q32(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32;
  std::vector<int8_t> wq(size_t(a.n_in));
  std::vector<float> wd(static_cast<size_t>(nb));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + r * a.w_stride;
    for (int64_t b = 0; b < nb; ++b) {
      int8_t* q = wq.data() + 32 * b;
      if (Q4) {
        const block_q4_0& blk = reinterpret_cast<const block_q4_0*>(row)[b];
        wd[size_t(b)] = fp16_to_fp32(blk.d);
        for (int j = 0; j < 16; ++j) q[j] = int8_t((blk.qs[j] & 0xF) - 8), q[j + 16] = int8_t((blk.qs[j] >> 4) - 8);
      } else {
        const block_q8_0& blk = reinterpret_cast<const block_q8_0*>(row)[b];
        wd[size_t(b)] = fp16_to_fp32(blk.d);
        std::memcpy(q, blk.qs, 32);
      }
    }
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const int8_t* xq = a.aq + t * a.n_in;
      const float* xd = a.ad + t * nb;
      float sum = 0;
      for (int64_t b = 0; b < nb; ++b) sum += wd[size_t(b)] * xd[b] * float(dot_i8(wq.data() + 32 * b, xq + 32 * b, 32));
      store(a, t, r, sum);
    }
  }
}
void mm_q8_0(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_q32<false>(a, r0, r1); }
void mm_q4_0(const MatmulArgs& a, int64_t r0, int64_t r1) { mm_q32<true>(a, r0, r1); }

// Q4_K weights x a256: value = d*sc_j*q - dmin*m_j per 32-element sub-block j, so per super-block
// dot = d*dx*sum_j sc_j*dot_j - dmin*dx*sum_j m_j*sum_j(x), with q in [0, 15] unpacked to int8.
void mm_q4_K(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / QK_K;
  std::vector<int8_t> wq(size_t(a.n_in));
  std::vector<int> sc(static_cast<size_t>(8 * nb)), mn(static_cast<size_t>(8 * nb));
  for (int64_t r = r0; r < r1; ++r) {
    const block_q4_K* w = reinterpret_cast<const block_q4_K*>(a.w + r * a.w_stride);
    for (int64_t b = 0; b < nb; ++b) {
      for (int j = 0; j < 8; ++j) q4k_scale_min(j, w[b].scales, sc[size_t(8 * b + j)], mn[size_t(8 * b + j)]);
      int8_t* q = wq.data() + QK_K * b;
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
          q[64 * c + l] = int8_t(w[b].qs[32 * c + l] & 0xF), q[64 * c + 32 + l] = int8_t(w[b].qs[32 * c + l] >> 4);
    }
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const int8_t* xq = a.aq + t * a.n_in;
      const float* xd = a.ad + t * nb;
      const int16_t* xs = a.as + t * (a.n_in / 16);
      float sum = 0;
      for (int64_t b = 0; b < nb; ++b) {
        int isum = 0, imin = 0;
        for (int j = 0; j < 8; ++j) {
          isum += sc[size_t(8 * b + j)] * dot_i8(wq.data() + QK_K * b + 32 * j, xq + QK_K * b + 32 * j, 32);
          imin += mn[size_t(8 * b + j)] * (xs[16 * b + 2 * j] + xs[16 * b + 2 * j + 1]);
        }
        sum += fp16_to_fp32(w[b].d) * xd[b] * float(isum) - fp16_to_fp32(w[b].dmin) * xd[b] * float(imin);
      }
      store(a, t, r, sum);
    }
  }
}

// Q6_K weights: unpacked to q - 32 in [-32, 31] as int8, int8 scale per 16 elements.
void mm_q6_K(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / QK_K;
  std::vector<int8_t> wq(size_t(a.n_in));
  for (int64_t r = r0; r < r1; ++r) {
    const block_q6_K* w = reinterpret_cast<const block_q6_K*>(a.w + r * a.w_stride);
    for (int64_t b = 0; b < nb; ++b) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = w[b].ql + 64 * half;
        const uint8_t* qh = w[b].qh + 32 * half;
        int8_t* q = wq.data() + QK_K * b + 128 * half;
        for (int l = 0; l < 32; ++l) {
          q[l] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
          q[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
          q[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
          q[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
      }
    }
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const int8_t* xq = a.aq + t * a.n_in;
      const float* xd = a.ad + t * nb;
      float sum = 0;
      for (int64_t b = 0; b < nb; ++b) {
        int isum = 0;
        for (int g = 0; g < 16; ++g)
          isum += w[b].scales[g] * dot_i8(wq.data() + QK_K * b + 16 * g, xq + QK_K * b + 16 * g, 16);
        sum += fp16_to_fp32(w[b].d) * xd[b] * float(isum);
      }
      store(a, t, r, sum);
    }
  }
}

void outer_f32(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in, int64_t o0, int64_t o1) {
  std::vector<float> part(static_cast<size_t>(n_in));
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t t0 = 0; t0 < n; t0 += kOuterTokens) {
      std::fill(part.begin(), part.end(), 0.0f);
      for (int64_t t = t0; t < std::min(n, t0 + kOuterTokens); ++t) {
        const float g = dy[t * n_out + o];
        const float* xr = x + t * n_in;
        for (int64_t i = 0; i < n_in; ++i) part[i] += g * xr[i];
      }
      float* row = dw + o * n_in;
      for (int64_t i = 0; i < n_in; ++i) row[i] += part[i];
    }
}

}  // namespace

const KernelTable kScalarKernels = {
    "scalar", mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_K, mm_q6_K, act_quant<32, 32>, act_quant<256, 16>, outer_f32,
};

}  // namespace qk

// ---------------------------------------------------------------------------------------------
// Dispatch

namespace {

enum Path { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Vnni = 3, kAvx512Bf16 = 4 };

const qk::KernelTable* table_for(int p) {
#if defined(LRO_X86_SIMD)
  switch (p) {
    case kAvx512Bf16: return &qk::kAvx512Bf16Kernels;
    case kAvx512Vnni: return &qk::kAvx512VnniKernels;
    case kAvx512: return &qk::kAvx512Kernels;
    case kAvx2: return &qk::kAvx2Kernels;
    default: break;
  }
#endif
  (void)p;
  return &qk::kScalarKernels;
}

int best_path() {
#if defined(LRO_X86_SIMD) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // F16C has no __builtin_cpu_supports name in older compilers; every AVX2 CPU has it.
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
  const bool bf16 = vnni && __builtin_cpu_supports("avx512bf16");
  return bf16 ? kAvx512Bf16 : vnni ? kAvx512Vnni : avx512 ? kAvx512 : avx2 ? kAvx2 : kScalar;
#else
  return kScalar;
#endif
}

// Parses a path name; -1 if unknown. "avx512" means the best AVX-512 variant the CPU has.
int parse_path(const std::string& s, int best) {
  if (s == "scalar") return kScalar;
  if (s == "avx2") return kAvx2;
  if (s == "avx512") return best >= kAvx512 ? best : kAvx512;
  if (s == "avx512-novnni") return kAvx512;
  if (s == "avx512-nobf16") return best >= kAvx512Vnni ? kAvx512Vnni : kAvx512;
  if (s == "auto" || s.empty()) return best;
  return -1;
}

std::atomic<const qk::KernelTable*> g_table{nullptr};

const qk::KernelTable& kernels() {
  const qk::KernelTable* t = g_table.load(std::memory_order_acquire);
  if (t) return *t;
  const int best = best_path();
  int p = best;
  if (const char* env = std::getenv("LRO_SIMD")) {
    const int want = parse_path(env, best);
    if (want >= 0) p = std::min(want, best);  // the variable can only lower the path
  }
  t = table_for(p);
  g_table.store(t, std::memory_order_release);
  return *t;
}

}  // namespace

bool set_simd_path(const std::string& name) {
  const int best = best_path();
  const int want = parse_path(name, best);
  if (want < 0 || want > best) return false;
  g_table.store(table_for(want), std::memory_order_release);
  return true;
}

std::string cpu_features() { return kernels().name; }

// ---------------------------------------------------------------------------------------------
// matmul driver

// y [n_tok, ldy] (+)= x [n_tok, n_in] . W^T, W [n_out, n_in] in wtype. Integer weight types first
// quantise x once (per token, in parallel when large) into the table's activation format; then each
// thread computes a contiguous range of output rows for all tokens (the kernels tile and chunk).
void matmul(GgmlType wtype, const void* w, int64_t n_out, int64_t n_in, const float* x, int64_t n_tok, float* y,
            int64_t ldy, ThreadPool& pool, bool accumulate) {
  if (n_out <= 0 || n_tok <= 0) return;
  if (ldy < n_out) throw std::invalid_argument("matmul: ldy < n_out");
  const qk::KernelTable& k = kernels();
  qk::MatmulFn fn = nullptr;
  qk::QuantActFn act = nullptr;
  int64_t ablock = 1, sgroup = 1;  // activation block size, elements per stored sum
  switch (wtype) {
    case GgmlType::F32: fn = k.f32; break;
    case GgmlType::F16: fn = k.f16; break;
    case GgmlType::BF16: fn = k.bf16; break;
    case GgmlType::Q8_0: fn = k.q8_0, act = k.act32, ablock = 32, sgroup = 32; break;
    case GgmlType::Q4_0: fn = k.q4_0, act = k.act32, ablock = 32, sgroup = 32; break;
    case GgmlType::Q4_K: fn = k.q4_K, act = k.act256, ablock = 256, sgroup = 16; break;
    case GgmlType::Q6_K: fn = k.q6_K, act = k.act256, ablock = 256, sgroup = 16; break;
    default: {
      const GgmlTypeTraits* tr = ggml_type_traits(uint32_t(wtype));
      throw std::runtime_error(std::string("matmul: unsupported weight type ") + (tr ? tr->name : "?"));
    }
  }
  if (n_in % traits(wtype).block_size != 0)
    throw std::invalid_argument("matmul: n_in is not a multiple of the weight block size");
  if (n_in == 0) {  // empty sums; the kernels assume at least one block
    if (!accumulate)
      for (int64_t t = 0; t < n_tok; ++t) std::fill(y + t * ldy, y + t * ldy + n_out, 0.0f);
    return;
  }

  qk::MatmulArgs a{};
  a.w = static_cast<const uint8_t*>(w);
  a.w_stride = row_size(wtype, n_in);
  a.n_in = n_in;
  a.n_tok = n_tok;
  a.x = x;
  // BF16 weights: the activations are rounded to bf16 first, on every path (as llama.cpp does, and
  // as a bf16 model computes in PyTorch), so that the AVX512-BF16 kernels and the others agree.
  thread_local std::vector<float> xr_buf;
  const bool big = double(n_out) * double(n_in) * double(n_tok) >= double(1 << 20);
  if (wtype == GgmlType::BF16) {
    const size_t n = size_t(n_tok * n_in);
    if (xr_buf.size() < n) xr_buf.resize(n);
    float* xr = xr_buf.data();
    auto round_rows = [&](int, int64_t t0, int64_t t1) {
      for (int64_t i = t0 * n_in; i < t1 * n_in; ++i) xr[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
    };
    if (big && n_tok > 1 && pool.size() > 1)
      pool.parallel_for(n_tok, 1, round_rows);
    else
      round_rows(0, 0, n_tok);
    a.x = xr;
  }
  a.y = y;
  a.ldy = ldy;
  a.accumulate = accumulate;

  // A parallel_for costs ~1.5 us while the workers spin, ~25 us once they sleep (ThreadPool); below
  // ~1M multiply-adds one thread is as fast (`big`, above).
  // Scratch for the quantised activations, reused across calls on the calling thread.
  thread_local std::vector<int8_t> qs_buf;
  thread_local std::vector<float> d_buf;
  thread_local std::vector<int16_t> s_buf;
  thread_local std::vector<float> amin_buf;
  if (act) {
    const size_t n = size_t(n_tok * n_in);
    if (qs_buf.size() < n) qs_buf.resize(n);
    if (d_buf.size() < size_t(n_tok * (n_in / ablock))) d_buf.resize(size_t(n_tok * (n_in / ablock)));
    if (s_buf.size() < size_t(n_tok * (n_in / sgroup))) s_buf.resize(size_t(n_tok * (n_in / sgroup)));
    int8_t* qs = qs_buf.data();
    float* d = d_buf.data();
    int16_t* s = s_buf.data();
    auto quant_tokens = [&](int, int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        act(x + t * n_in, n_in, qs + t * n_in, d + t * (n_in / ablock), s + t * (n_in / sgroup));
    };
    if (big && n_tok > 1 && n_tok * n_in >= (1 << 16))
      pool.parallel_for(n_tok, 1, quant_tokens);
    else
      quant_tokens(0, 0, n_tok);
    a.aq = qs;
    a.ad = d;
    a.as = s;
    if (wtype == GgmlType::Q4_K) {
      const int64_t nsub = n_in / 32;
      if (amin_buf.size() < size_t(n_tok * nsub)) amin_buf.resize(size_t(n_tok * nsub));
      for (int64_t i = 0; i < n_tok * nsub; ++i)
        amin_buf[size_t(i)] = d[i / 8] * float(s[2 * i] + s[2 * i + 1]);
      a.amin = amin_buf.data();
    }
  }
  if (!big || pool.size() <= 1) {
    fn(a, 0, n_out);
    return;
  }
  // Few rows (a LoRA factor of rank 64, say) and many tokens: split the tokens, so that the threads
  // do not each pack every token's activations for a share of a few row blocks.
  if (n_out < 64 * pool.size() && n_tok >= 24 * pool.size()) {
    pool.parallel_for(n_tok, 12, [&](int, int64_t t0, int64_t t1) {
      qk::MatmulArgs b = a;
      b.n_tok = t1 - t0;
      b.x = a.x + t0 * n_in;
      b.y = a.y + t0 * ldy;
      if (act) {
        b.aq = a.aq + t0 * n_in;
        b.ad = a.ad + t0 * (n_in / ablock);
        b.as = a.as + t0 * (n_in / sgroup);
        if (a.amin) b.amin = a.amin + t0 * (n_in / 32);
      }
      fn(b, 0, n_out);
    });
    return;
  }
  pool.parallel_for(n_out, 8, [&](int, int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

// The weight gradient: the table's kernel over groups of kOuterRows rows of dw (a split never leaves
// a partial register tile mid-range).
void weight_grad_f32(float* dw, const float* dy, const float* x, int64_t n, int64_t n_out, int64_t n_in, ThreadPool& pool) {
  if (n <= 0 || n_out <= 0 || n_in <= 0) return;
  const qk::OuterFn fn = kernels().outer_f32;
  constexpr int64_t G = qk::kOuterRows;
  const int64_t groups = (n_out + G - 1) / G;
  if (groups == 1 || pool.size() == 1 || n * n_out * n_in < (int64_t(1) << 16)) return fn(dw, dy, x, n, n_out, n_in, 0, n_out);
  pool.parallel_for(groups, 1, [&](int, int64_t g0, int64_t g1) { fn(dw, dy, x, n, n_out, n_in, g0 * G, std::min(n_out, g1 * G)); });
}

std::vector<float> dequantize_rows(GgmlType type, const void* src, int64_t row_len, int64_t rows) {
  std::vector<float> v(static_cast<size_t>(row_len * rows));
  const size_t rs = row_size(type, row_len);
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t r = 0; r < rows; ++r) dequantize_row(type, b + rs * static_cast<size_t>(r), v.data() + r * row_len, row_len);
  return v;
}

}  // namespace lro

namespace lro {

int64_t first_nonfinite(GgmlType type, const void* src, int64_t n) {
  // f16: exponent bits all ones is inf or NaN; bf16 / f32 likewise with their exponents.
  auto bad16 = [](uint16_t h) { return (h & 0x7c00u) == 0x7c00u; };
  const auto* b = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::F32: {
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, b + i * 4, 4);
        if ((u & 0x7f800000u) == 0x7f800000u) return i;
      }
      return -1;
    }
    case GgmlType::F16:
    case GgmlType::BF16: {
      const uint16_t mask = type == GgmlType::F16 ? 0x7c00u : 0x7f80u;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + i * 2, 2);
        if ((h & mask) == mask) return i;
      }
      return -1;
    }
    default:
      break;
  }
  const auto& tr = traits(type);
  const int64_t blocks = n / tr.block_size;
  for (int64_t k = 0; k < blocks; ++k) {
    const uint8_t* blk = b + static_cast<size_t>(k) * tr.block_bytes;
    uint16_t d0 = 0, d1 = 0;
    switch (type) {
      case GgmlType::Q8_0:
      case GgmlType::Q4_0:
        std::memcpy(&d0, blk, 2);
        break;
      case GgmlType::Q4_K:
        std::memcpy(&d0, blk, 2);
        std::memcpy(&d1, blk + 2, 2);
        break;
      case GgmlType::Q6_K:
        std::memcpy(&d0, blk + offsetof(block_q6_K, d), 2);
        break;
      default:
        return -1;  // types we do not compute with are refused elsewhere
    }
    if (bad16(d0) || bad16(d1)) return k * tr.block_size;
  }
  return -1;
}

void require_finite(const std::string& path, const GgufTensorInfo& t) {
  const int64_t at = first_nonfinite(t.type, t.data, t.nelements());
  if (at < 0) return;
  const bool quantised = traits(t.type).block_size > 1;
  throw GgufError(path + ": tensor '" + t.name + "' holds " + (quantised ? "a non-finite block scale (inf or NaN) in the block at element " : "a non-finite value (inf or NaN) at element ") +
                  std::to_string(at) + "; the file is damaged, or was written from a diverged checkpoint");
}

}  // namespace lro
