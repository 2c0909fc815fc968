#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/thread_pool.h"

namespace lro {

const char* lr_schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::LINEAR: return "linear";
    case LrSchedule::COSINE: return "cosine";
    default: return "constant";
  }
}

LrSchedule lr_schedule_from_name(const std::string& s) {
  if (s == "constant") return LrSchedule::CONSTANT;
  if (s == "linear") return LrSchedule::LINEAR;
  if (s == "cosine") return LrSchedule::COSINE;
  throw std::invalid_argument("unknown LR schedule '" + s + "' (expected constant, linear or cosine)");
}

void validate(const OptimConfig& o) {
  if (o.lr < 0) throw std::invalid_argument("learning rate must be >= 0");
  if (o.warmup_fraction < 0 || o.warmup_fraction > 1) throw std::invalid_argument("warmup fraction must be in [0, 1]");
  if ((o.schedule != LrSchedule::CONSTANT || o.warmup_fraction > 0) && o.total_steps <= 0)
    throw std::invalid_argument("a decaying LR schedule or warmup needs total_steps > 0");
}

double grad_norm(const std::vector<ParamSpan>& spans) {
  double s = 0;
  for (const auto& p : spans)
    for (size_t i = 0; i < p.n; ++i) s += static_cast<double>(p.g[i]) * p.g[i];
  return std::sqrt(s);
}

double clip_gradients(const std::vector<ParamSpan>& spans, double max_norm) {
  const double coef = std::min(1.0, max_norm / (grad_norm(spans) + 1e-6));
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    for (const auto& p : spans)
      for (size_t i = 0; i < p.n; ++i) p.g[i] *= c;
  }
  return coef;
}

void zero_gradients(const std::vector<ParamSpan>& spans) {
  for (const auto& p : spans) std::fill(p.g, p.g + p.n, 0.0f);
}

double lr_at(const OptimConfig& o, int64_t s) {
  const double base = o.lr;
  const int64_t total = o.total_steps;
  const int64_t warm = static_cast<int64_t>(std::ceil(o.warmup_fraction * static_cast<double>(total)));
  if (s < warm) return base * static_cast<double>(s) / static_cast<double>(std::max<int64_t>(1, warm));
  if (o.schedule == LrSchedule::CONSTANT) return base;
  const double span = static_cast<double>(std::max<int64_t>(1, total - warm));
  if (o.schedule == LrSchedule::LINEAR) return base * std::max(0.0, static_cast<double>(total - s) / span);
  const double progress = static_cast<double>(s - warm) / span;
  return base * std::max(0.0, 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress)));
}

void adamw_update(const std::vector<ParamSpan>& spans, const OptimConfig& o, double lr, int64_t t, ThreadPool& pool) {
  const double b1 = o.beta1, b2 = o.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t)));
  // Float element ops in torch's order (decay, lerp, addcmul, sqrt/bc2 + eps, addcdiv).
  const float decay = static_cast<float>(1.0 - lr * o.weight_decay);
  const float w1 = static_cast<float>(1.0 - b1), fb2 = static_cast<float>(b2), w2 = static_cast<float>(1.0 - b2);
  const float fbc2 = static_cast<float>(bc2_sqrt), feps = static_cast<float>(o.eps);
  const float step_size = static_cast<float>(lr / bc1);
  for (const auto& p : spans) {
    float *w = p.w, *m = p.m, *v = p.v;
    const float* g = p.g;
    pool.parallel_for(static_cast<int64_t>(p.n), 1024, [&](int, int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        w[i] *= decay;
        m[i] += w1 * (g[i] - m[i]);
        v[i] = v[i] * fb2 + w2 * (g[i] * g[i]);
        const float denom = std::sqrt(v[i]) / fbc2 + feps;
        w[i] += -step_size * (m[i] / denom);
      }
    });
  }
}

}  // namespace lro
