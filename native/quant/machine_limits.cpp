#include "quant/machine_limits.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "quant/quants.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LRO_LIMITS_X86 1
#endif

namespace lro {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr long kFmaIters = 1 << 22;

// Each loop keeps 10 independent accumulators (enough to cover FMA latency x issue width on
// current x86 cores) and returns a value so the compiler cannot drop the work.
float fma_scalar(long iters) {
  float a[10];
  for (int k = 0; k < 10; k++) a[k] = 1.0f + 0.001f * k;
  const float m = 0.999999f, c = 1e-7f;
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 10; k++) a[k] = a[k] * m + c;
  float s = 0;
  for (float v : a) s += v;
  return s;
}

#if defined(LRO_LIMITS_X86)
__attribute__((target("avx2,fma"))) float fma_avx2(long iters) {
  __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f);
  __m256 a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iters; i++) {
    a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c); a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c);
    a5 = _mm256_fmadd_ps(a5, m, c); a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c); a9 = _mm256_fmadd_ps(a9, m, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) float fma_avx512(long iters) {
  __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f), a3 = _mm512_set1_ps(1.3f), a4 = _mm512_set1_ps(1.4f);
  __m512 a5 = _mm512_set1_ps(1.5f), a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f), a8 = _mm512_set1_ps(1.8f), a9 = _mm512_set1_ps(1.9f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iters; i++) {
    a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c); a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c);
    a5 = _mm512_fmadd_ps(a5, m, c); a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c); a9 = _mm512_fmadd_ps(a9, m, c);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(_mm512_add_ps(a6, a7), _mm512_add_ps(a8, a9))));
  return _mm512_reduce_add_ps(s);
}

// The integer and bf16 dot instructions the kernels use, in the same register-only shape: 10
// accumulators, each instruction 64 int8 (or 32 bf16) multiply-adds on AVX-512, 32 int8 on AVX2.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) float dpbusd_avx512(long iters) {
  __m512i a[10];
  for (int k = 0; k < 10; k++) a[k] = _mm512_set1_epi32(k);
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 10; k++) a[k] = _mm512_dpbusd_epi32(a[k], u, s);
  __m512i t = a[0];
  for (int k = 1; k < 10; k++) t = _mm512_add_epi32(t, a[k]);
  return float(_mm512_reduce_add_epi32(t));
}

__attribute__((target("avx2"))) float maddubs_avx2(long iters) {
  __m256i a[10];
  for (int k = 0; k < 10; k++) a[k] = _mm256_set1_epi32(k);
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 10; k++) a[k] = _mm256_add_epi32(a[k], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
  __m256i t = a[0];
  for (int k = 1; k < 10; k++) t = _mm256_add_epi32(t, a[k]);
  int out[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), t);
  return float(out[0]);
}

__attribute__((target("avx512f,avx512bf16"))) float dpbf16_avx512(long iters) {
  __m512 a[10];
  for (int k = 0; k < 10; k++) a[k] = _mm512_set1_ps(1.0f + 0.1f * k);
  const __m512bh w = (__m512bh)_mm512_set1_epi16(0x3f80), x = (__m512bh)_mm512_set1_epi16(0x3380);  // 1.0, ~6e-8
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 10; k++) a[k] = _mm512_dpbf16_ps(a[k], w, x);
  __m512 t = a[0];
  for (int k = 1; k < 10; k++) t = _mm512_add_ps(t, a[k]);
  return _mm512_reduce_add_ps(t);
}
#endif

// Best-of-reps throughput of loop(iters) on every thread: ops_per_iter operations per call's iteration.
double peak_rate(ThreadPool& pool, int reps, float (*loop)(long), long iters, double ops_per_iter) {
  std::vector<float> sink(pool.size());
  double best = 0;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run_on_all([&](int t, int) { sink[t] = loop(iters); });
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, ops_per_iter * static_cast<double>(iters) * pool.size() / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace

double measure_int8_gops(ThreadPool& pool, int reps) {
#if defined(LRO_LIMITS_X86)
  const std::string path = cpu_features();
  if (path.find("vnni") != std::string::npos) return peak_rate(pool, reps, dpbusd_avx512, kFmaIters, 10.0 * 64 * 2);
  if (path.rfind("avx", 0) == 0) return peak_rate(pool, reps, maddubs_avx2, kFmaIters, 10.0 * 32 * 2);
#endif
  (void)pool, (void)reps;
  return 0;
}

double measure_bf16_gflops(ThreadPool& pool, int reps) {
#if defined(LRO_LIMITS_X86)
  if (cpu_features().find("bf16") != std::string::npos) return peak_rate(pool, reps, dpbf16_avx512, kFmaIters, 10.0 * 32 * 2);
#endif
  (void)pool, (void)reps;
  return 0;
}

double measure_triad_gbps(ThreadPool& pool, size_t bytes_per_array, int reps) {
  const int64_t n = static_cast<int64_t>(bytes_per_array / sizeof(float));
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  // First touch on the threads that stream each chunk, so pages sit where they are read.
  pool.parallel_for(n, 1024, [&](int, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  double best = 0;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, 1024, [&](int, int64_t i0, int64_t i1) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
      for (int64_t i = i0; i < i1; i++) pa[i] = pb[i] + 3.0f * pc[i];
    });
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, 3.0 * static_cast<double>(n) * sizeof(float) / s / 1e9);
  }
  volatile float sink = a[n / 2];
  (void)sink;
  return best;
}

double measure_fma_gflops(ThreadPool& pool, int reps) {
  const std::string path = cpu_features();
  int lanes = 1;
  float (*loop)(long) = fma_scalar;
#if defined(LRO_LIMITS_X86)
  if (path.rfind("avx512", 0) == 0) {
    lanes = 16;
    loop = fma_avx512;
  } else if (path.rfind("avx2", 0) == 0) {
    lanes = 8;
    loop = fma_avx2;
  }
#endif
  return peak_rate(pool, reps, loop, lanes == 1 ? kFmaIters / 8 : kFmaIters, 2.0 * 10.0 * lanes);
}

}  // namespace lro
