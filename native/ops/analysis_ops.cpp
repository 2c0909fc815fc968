#include "ops/analysis_ops.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <numeric>

#include "core/rng.h"

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
double uniform01(uint64_t& state) { return open_unit_double(splitmix64(state)); }
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

void ridge_classify(const float* x_train, const int32_t* labels, int64_t n, const float* x_test, int64_t m, int64_t d,
                    int64_t k, double lambda, int32_t* out) {
  if (n <= 0 || d <= 0 || k <= 0) throw std::invalid_argument("ridge_classify: needs training rows, a width and classes");
  if (!(lambda > 0)) throw std::invalid_argument("ridge_classify: lambda must be positive");
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= k) throw std::invalid_argument("ridge_classify: label " + std::to_string(labels[i]) + " is outside [0, " + std::to_string(k) + ")");
  std::vector<double> mu(static_cast<size_t>(d), 0.0), sd(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mu[j] += x_train[i * d + j];
  for (auto& v : mu) v /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) sd[j] += (x_train[i * d + j] - mu[j]) * (x_train[i * d + j] - mu[j]);
  for (auto& v : sd) v = std::sqrt(v / static_cast<double>(n)) + 1e-8;
  // A = Z^T Z + lambda n I, B = Z^T (Y - ybar); Z centred, so the intercept is ybar.
  std::vector<double> A(static_cast<size_t>(d * d), 0.0), B(static_cast<size_t>(d * k), 0.0), ybar(static_cast<size_t>(k), 0.0);
  std::vector<double> z(static_cast<size_t>(d));
  for (int64_t i = 0; i < n; ++i) ybar[labels[i]] += 1.0 / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) z[j] = (x_train[i * d + j] - mu[j]) / sd[j];
    for (int64_t a = 0; a < d; ++a) {
      for (int64_t b = 0; b <= a; ++b) A[a * d + b] += z[a] * z[b];
      B[a * k + labels[i]] += z[a];  // the centring of Y drops out: sum_i z_i = 0
    }
  }
  for (int64_t a = 0; a < d; ++a) {
    A[a * d + a] += lambda * static_cast<double>(n);
    for (int64_t b = 0; b < a; ++b) A[b * d + a] = A[a * d + b];
  }
  // Cholesky A = L L^T (in place, lower), then solve for every column of B.
  for (int64_t j = 0; j < d; ++j) {
    double s = A[j * d + j];
    for (int64_t p = 0; p < j; ++p) s -= A[j * d + p] * A[j * d + p];
    if (!(s > 0)) throw std::runtime_error("ridge_classify: the system is not positive definite");
    const double ljj = std::sqrt(s);
    A[j * d + j] = ljj;
    for (int64_t i = j + 1; i < d; ++i) {
      double t = A[i * d + j];
      for (int64_t p = 0; p < j; ++p) t -= A[i * d + p] * A[j * d + p];
      A[i * d + j] = t / ljj;
    }
  }
  for (int64_t c = 0; c < k; ++c) {
    for (int64_t i = 0; i < d; ++i) {  // L y = b
      double t = B[i * k + c];
      for (int64_t p = 0; p < i; ++p) t -= A[i * d + p] * B[p * k + c];
      B[i * k + c] = t / A[i * d + i];
    }
    for (int64_t i = d - 1; i >= 0; --i) {  // L^T w = y
      double t = B[i * k + c];
      for (int64_t p = i + 1; p < d; ++p) t -= A[p * d + i] * B[p * k + c];
      B[i * k + c] = t / A[i * d + i];
    }
  }
  std::vector<double> score(static_cast<size_t>(k));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < d; ++j) z[j] = (x_test[r * d + j] - mu[j]) / sd[j];
    for (int64_t c = 0; c < k; ++c) score[c] = ybar[c];
    for (int64_t j = 0; j < d; ++j)
      for (int64_t c = 0; c < k; ++c) score[c] += z[j] * B[j * k + c];
    int32_t best = 0;
    for (int64_t c = 1; c < k; ++c)
      if (score[c] > score[best]) best = static_cast<int32_t>(c);
    out[r] = best;
  }
}

}  // namespace lro
