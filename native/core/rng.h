// The engine's one source of pseudo-randomness: splitmix64 (Vigna). mix64 is its finaliser used as a
// stateless hash, so a value drawn for (seed, index) can be regenerated anywhere (dropout masks in
// backward, noise for an ablation) without carrying a generator's state around.
#pragma once
#include <cstdint>

namespace lro {

inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The stateful form: advances state and returns the next value of the stream.
inline uint64_t splitmix64(uint64_t& state) {
  const uint64_t z = mix64(state);
  state += 0x9e3779b97f4a7c15ULL;
  return z;
}

// Uniform in [0, 1) with 53 random bits.
inline double unit_double(uint64_t bits) { return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0); }
// Uniform in (0, 1), never 0 (Box-Muller takes its log).
inline double open_unit_double(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

}  // namespace lro
