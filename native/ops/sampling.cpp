// sampling: the next token from one row of logits (see sample_token in ops.h). Inference only.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"

namespace lro {

int32_t sample_token(const float* l, int64_t nv, const char* banned, const SampleParams& p) {
  int64_t best = -1;
  for (int64_t i = 0; i < nv; ++i)
    if (!banned[i] && (best < 0 || l[i] > l[best])) best = i;
  if (best < 0 || p.temperature <= 0) return static_cast<int32_t>(best);
  std::vector<std::pair<float, int32_t>> cand;
  for (int64_t i = 0; i < nv; ++i)
    if (!banned[i]) cand.push_back({l[i], static_cast<int32_t>(i)});
  std::sort(cand.begin(), cand.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < cand.size()) cand.resize(static_cast<size_t>(p.top_k));
  std::vector<double> w(cand.size());
  double mx = cand[0].first, sum = 0;
  for (size_t i = 0; i < cand.size(); ++i) sum += w[i] = std::exp((cand[i].first - mx) / p.temperature);
  if (p.top_p > 0 && p.top_p < 1) {
    double acc = 0;
    size_t keep = cand.size();
    for (size_t i = 0; i < cand.size(); ++i) {
      acc += w[i] / sum;
      if (acc >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
    w.resize(keep);
    sum = 0;
    for (double x : w) sum += x;
  }
  // A stateless draw: the splitmix64 finaliser of (seed, step) alone (the offset keeps the values
  // this sampler has always drawn).
  double u = unit_double(mix64(p.seed * 0x9E3779B97F4A7C15ull + p.step + 0xc4f46be25a6a6404ull)) * sum;
  for (size_t i = 0; i < w.size(); ++i) {
    if (u < w[i]) return cand[i].second;
    u -= w[i];
  }
  return cand[w.size() - 1].second;
}

}  // namespace lro
