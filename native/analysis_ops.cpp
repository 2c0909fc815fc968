#include "analysis_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lro {

LogitStats logit_stats(const float* logits, int64_t n_vocab, int64_t vocab_limit, int64_t top_k) {
  LogitStats s;
  int64_t v = std::min(n_vocab, vocab_limit > 0 ? vocab_limit : n_vocab);
  if (v <= 0) return s;
  double mx = logits[0];
  for (int64_t i = 1; i < v; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < v; ++i) sum += std::exp(logits[i] - mx);
  s.logsumexp = mx + std::log(sum);
  double ent = 0;
  for (int64_t i = 0; i < v; ++i) {
    double lp = logits[i] - s.logsumexp;
    double p = std::exp(lp);
    if (p > 0) ent -= p * lp;
  }
  s.entropy = ent;
  int64_t k = std::min(top_k, v);
  std::vector<int32_t> idx(static_cast<size_t>(v));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int64_t i = 0; i < k; ++i) {
    int32_t id = idx[static_cast<size_t>(i)];
    s.top_ids.push_back(id);
    s.top_logits.push_back(logits[id]);
    s.top_probs.push_back(static_cast<float>(std::exp(logits[id] - s.logsumexp)));
  }
  return s;
}

VectorStats vector_stats(const float* v, const float* prev, int64_t d) {
  VectorStats s;
  double nn = 0, mx = 0;
  for (int64_t i = 0; i < d; ++i) {
    nn += static_cast<double>(v[i]) * v[i];
    mx = std::max(mx, std::fabs(static_cast<double>(v[i])));
  }
  s.norm = std::sqrt(nn);
  int64_t small = 0;
  for (int64_t i = 0; i < d; ++i) small += std::fabs(v[i]) < 1e-2 * mx;
  s.sparsity = d > 0 ? static_cast<double>(small) / static_cast<double>(d) : 0;
  if (prev) {
    double dot = 0, pn = 0;
    for (int64_t i = 0; i < d; ++i) {
      dot += static_cast<double>(v[i]) * prev[i];
      pn += static_cast<double>(prev[i]) * prev[i];
    }
    s.cosine_to_prev = nn > 0 && pn > 0 ? dot / std::sqrt(nn * pn) : 0;
  }
  return s;
}

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double uniform01(uint64_t& state) { return (static_cast<double>(splitmix64(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
}  // namespace

void add_scaled_noise(float* out, const float* v, int64_t d, double scale, uint64_t seed) {
  std::vector<double> g(static_cast<size_t>(d));
  uint64_t st = seed;
  for (int64_t i = 0; i < d; i += 2) {
    double u1 = uniform01(st), u2 = uniform01(st);
    double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
    g[i] = r * std::cos(th);
    if (i + 1 < d) g[i + 1] = r * std::sin(th);
  }
  double gn = 0, vn = 0;
  for (int64_t i = 0; i < d; ++i) {
    gn += g[i] * g[i];
    vn += static_cast<double>(v[i]) * v[i];
  }
  double f = gn > 0 ? scale * std::sqrt(vn) / std::sqrt(gn) : 0;
  for (int64_t i = 0; i < d; ++i) out[i] = static_cast<float>(v[i] + f * g[i]);
}

void mean_rows(float* out, const float* x, int64_t n, int64_t d) {
  std::vector<double> acc(static_cast<size_t>(d), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) acc[i] += x[t * d + i];
  for (int64_t i = 0; i < d; ++i) out[i] = n > 0 ? static_cast<float>(acc[i] / static_cast<double>(n)) : 0.0f;
}

}  // namespace lro
