// Small numeric readouts used by traces and interventions (logit lens, vector statistics,
// seeded noise). They live here so the TS layer stays free of numerics.
#pragma once
#include <cstdint>
#include <vector>

namespace lro {

struct LogitStats {
  std::vector<int32_t> top_ids;     // best first; lowest id on ties
  std::vector<float> top_logits;
  std::vector<float> top_probs;     // softmax over ids [0, vocab_limit)
  double logsumexp = 0;             // over [0, vocab_limit)
  double entropy = 0;               // nats, over [0, vocab_limit)
};
// logits[n_vocab]; only ids < vocab_limit take part (CODI's extra ids sit above it).
LogitStats logit_stats(const float* logits, int64_t n_vocab, int64_t vocab_limit, int64_t top_k);

struct VectorStats {
  double norm = 0;
  double sparsity = 0;      // fraction of components with |x| < 1e-2 * max|x| (a Hoyer-free, readable measure)
  double cosine_to_prev = 0;  // 0 when there is no previous vector or either is zero
};
VectorStats vector_stats(const float* v, const float* prev, int64_t d);

// out[d] = v + scale * ||v|| * g / ||g||, g ~ N(0, I) from a splitmix64/Box-Muller stream of seed.
void add_scaled_noise(float* out, const float* v, int64_t d, double scale, uint64_t seed);

// out[d] = mean of n rows of x[n, d] (double accumulation)
void mean_rows(float* out, const float* x, int64_t n, int64_t d);

// A linear probe: ridge regression of one-hot labels on z-scored features (statistics of the
// training rows), with an intercept; predicts the argmax class (lowest on ties) of each test row.
//   x_train [n, d], labels [n] in [0, k), x_test [m, d] -> out [m]
// lambda is per training row (the penalty is lambda * n * ||W||^2). Throws std::invalid_argument.
void ridge_classify(const float* x_train, const int32_t* labels, int64_t n, const float* x_test, int64_t m, int64_t d,
                    int64_t k, double lambda, int32_t* out);

}  // namespace lro
