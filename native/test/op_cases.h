// The inputs of the op tests, seeded and platform-independent (splitmix64 + Box-Muller, not
// <random>'s distributions): test_ops checks the CPU ops on them against double references, and
// test_cuda checks each CUDA twin against the CPU op on the same ones.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace op_cases {

// n values ~ N(shift, scale^2) from stream seed.
inline std::vector<float> randn(size_t n, float scale, uint64_t seed, float shift = 0) {
  std::vector<float> v(n);
  uint64_t s = seed;
  for (size_t i = 0; i < n; i += 2) {
    const double u1 = lro::open_unit_double(lro::splitmix64(s)), u2 = lro::open_unit_double(lro::splitmix64(s));
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    v[i] = static_cast<float>(shift + scale * r * std::cos(th));
    if (i + 1 < n) v[i + 1] = static_cast<float>(shift + scale * r * std::sin(th));
  }
  return v;
}

// rmsnorm / layernorm: a residual-stream-sized x (|x| up to ~30) and a gain near 1.
struct NormCase {
  int64_t n = 5, d = 64;
  std::vector<float> x = randn(static_cast<size_t>(n * d), 8, 1), w = randn(static_cast<size_t>(d), 0.1f, 2, 1);
};
inline NormCase norm_case() { return {}; }

// rope: 2 heads of 16 (8 rotated pairs), positions up to 100.
struct RopeCase {
  int64_t n = 6, heads = 2, hd = 16, n_rot = 16;
  float base = 10000;
  std::vector<int32_t> pos = {0, 1, 5, 17, 63, 100};
  std::vector<float> x = randn(static_cast<size_t>(n * heads * hd), 1, 3);
};
inline RopeCase rope_case() { return {}; }

struct SwigluCase {
  int64_t n = 4, d = 48;
  std::vector<float> gate = randn(static_cast<size_t>(n * d), 3, 4), up = randn(static_cast<size_t>(n * d), 1, 5);
};
inline SwigluCase swiglu_case() { return {}; }

// attention: 7 rows of one sequence, 4 query heads over 2 kv heads of 8.
struct AttentionCase {
  int64_t n = 7, heads = 4, heads_kv = 2, hd = 8;
  std::vector<float> q = randn(static_cast<size_t>(n * heads * hd), 1, 6), k = randn(static_cast<size_t>(n * heads_kv * hd), 1, 7),
                     v = randn(static_cast<size_t>(n * heads_kv * hd), 1, 8);
};
inline AttentionCase attention_case() { return {}; }

}  // namespace op_cases
