// What every trainer shares: the optimizer settings, clip_grad_norm_, the LR schedules and
// AdamW, over spans of f32 parameters with their gradients and moments (torch's element order).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lro {

class ThreadPool;

enum class LrSchedule { CONSTANT, LINEAR, COSINE };
const char* lr_schedule_name(LrSchedule s);
LrSchedule lr_schedule_from_name(const std::string& s);  // throws std::invalid_argument

struct OptimConfig {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double max_grad_norm = 0;  // > 0: clip_grad_norm_ to this global norm
  LrSchedule schedule = LrSchedule::CONSTANT;
  double warmup_fraction = 0;  // of total_steps, rounded up (HF Trainer's warmup_ratio)
  int64_t total_steps = 0;     // needed by linear / cosine decay and warmup
};
// Throws std::invalid_argument naming the setting that is out of range.
void validate(const OptimConfig& o);

struct ParamSpan {
  float* w;
  float* g;
  float* m;
  float* v;
  size_t n;
};

// Global L2 norm of the gradients, summed in span order in double.
double grad_norm(const std::vector<ParamSpan>& spans);
// torch.nn.utils.clip_grad_norm_: coef = min(1, max_norm / (norm + 1e-6)); returns coef.
double clip_gradients(const std::vector<ParamSpan>& spans, double max_norm);
void zero_gradients(const std::vector<ParamSpan>& spans);
// HF transformers' get_{constant,linear,cosine}_schedule_with_warmup at optimizer step `step` (0-based).
double lr_at(const OptimConfig& o, int64_t step);
// One torch.optim.AdamW step; t is the step number after this update (1-based).
void adamw_update(const std::vector<ParamSpan>& spans, const OptimConfig& o, double lr, int64_t t, ThreadPool& pool);

}  // namespace lro
