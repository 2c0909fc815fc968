// LoRA training on a frozen GGUF Llama (any weight type: quantised bases are dequantised on the
// fly, QLoRA style): forward with saved or recomputed activations, backward through every op,
// Activation Oracles injection, AdamW with clipping, accumulation and LR schedules, atomic
// checkpoints that resume bit for bit, and llama.cpp GGUF adapters as output.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/block.h"
#include "model/llama_model.h"
#include "train/optimizer.h"
#include "core/thread_pool.h"

namespace lro {

// The seven matrices of a block LoRA can target (block.h's BlockLinear): q k v o gate up down.
constexpr int kLoraTargets = kBlockLinears;

struct LoraConfig {
  int64_t rank = 8;
  float alpha = 16;
  bool rslora = false;   // scale alpha / sqrt(r) instead of alpha / r
  float dropout = 0;     // on the LoRA input, as PEFT: B A (dropout(x))
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
  uint64_t init_seed = 0;  // fresh LoRA: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming init), B = 0
  // Start from this adapter instead (its rank, alpha and targets win): a llama.cpp GGUF adapter.
  // A PEFT folder / adapter_model.safetensors is converted by the caller first
  // (convert::AdapterAsGguf; the N-API binding does it), so train/ needs nothing of convert/.
  std::string init_adapter;
};

struct TrainOptions {
  int inject_layer = 1;        // inject at the output of this block; -1: at the input embeddings
  float inject_coef = 1.0f;
  float inject_eps = 1e-12f;   // F.normalize's eps for v / ||v||
  bool inject_replace = false;  // replace h_p by the term instead of adding it
  bool recompute = false;      // keep only each block's input; recompute the block in backward
  int64_t pack_tokens = 4096;  // examples of a micro-batch share one pass up to this many tokens (0: one each)
  int64_t ce_chunk_rows = 0;   // rows per output-head chunk (0: ~64 MB of logits)
  int threads = 0;             // 0: physical cores
  uint64_t seed = 0;           // dropout stream
};

struct TrainExample {
  std::vector<int32_t> tokens;            // [n]
  // [n], HF convention: labels[t] is the target of the logits at t-1 (it equals tokens[t] where
  // there is a loss); < 0 (e.g. -100): no loss.
  std::vector<int32_t> labels;
  std::vector<int32_t> inject_positions;  // [K] rows of this example
  std::vector<float> vectors;             // [K, n_embd], not normalised
};

struct StepResult {
  double loss = 0;                  // sum over micro-batches of their pooled token mean / n_micro
  std::vector<double> micro_losses;
  double grad_norm = 0;             // global L2 norm of all A/B gradients, before clipping
  double clip_coef = 1;
  double lr = 0;                    // learning rate this step used
  int64_t tokens = 0, loss_tokens = 0;
  int64_t step = 0;                 // optimizer steps done, this one included
};

struct LoraParam {
  std::string weight;  // base weight, e.g. "blk.3.attn_q.weight"
  int layer = 0, target = 0;
  const Weight* base = nullptr;
  int64_t rank = 0, n_in = 0, n_out = 0;
  float scale = 0;     // alpha / r (or alpha / sqrt(r))
  std::vector<float> a, b;          // A [rank, n_in], B [n_out, rank], row-major (= GGUF lora_a / lora_b data)
  std::vector<float> ga, gb;        // gradients, same shapes
  std::vector<float> ma, va, mb, vb;  // AdamW moments
};

class Trainer {
 public:
  Trainer(std::shared_ptr<const LlamaModel> model, const LoraConfig& lora, const OptimConfig& optim,
          const TrainOptions& opts);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer step: gradients of every micro-batch (each its pooled token mean, divided by the
  // number of micro-batches), clipping, AdamW at the scheduled LR. data_position() advances by the
  // number of examples.
  StepResult step(const std::vector<std::vector<TrainExample>>& micro_batches);

  // The parts of step(), for tests and custom loops.
  void zero_grad();
  // Adds weight * d(pooled token mean of mb)/dtheta to the gradients; returns the pooled mean.
  double accumulate(const std::vector<TrainExample>& mb, double weight, int64_t* tokens = nullptr,
                    int64_t* loss_tokens = nullptr);
  double grad_norm() const;
  double clip_gradients(double max_norm);  // returns the coefficient applied
  void adamw_update(double lr);            // one AdamW step at lr; counts the step
  double lr_at(int64_t step) const;        // scheduled LR of optimizer step `step` (0-based)
  // Pooled token mean without gradients (injection applied the same way). dropout: use the training
  // masks at the current stream position (for gradient checks; the position then advances as a
  // training pass would).
  double eval_loss(const std::vector<TrainExample>& examples, bool dropout = false);
  uint64_t rng_counter() const { return rng_counter_; }
  void set_rng_counter(uint64_t c) { rng_counter_ = c; }

  // Terms added by the injection in the latest forward, per example of the latest micro-batch: [K, d].
  const std::vector<std::vector<float>>& injected_terms() const { return terms_; }

  std::vector<LoraParam>& params() { return params_; }
  const std::vector<LoraParam>& params() const { return params_; }
  LoraParam* find(const std::string& weight);

  int64_t step_count() const { return step_; }
  int64_t data_position() const { return data_pos_; }
  void set_data_position(int64_t p) { data_pos_ = p; }
  const LoraConfig& lora_config() const { return lora_; }
  const OptimConfig& optim_config() const { return optim_; }
  const TrainOptions& options() const { return opts_; }
  const LlamaModel& model() const { return *model_; }
  int threads() const { return pool_.size(); }

  // llama.cpp GGUF adapter (general.type "adapter", adapter.lora.alpha such that alpha / r is our
  // scale; the lro.adapter.* keys let the PEFT converter restore rsLoRA). q/k lora_b rows are in the
  // GGUF model's (permuted) row order, as the base weights they adapt.
  void save_adapter(const std::string& path, const std::string& name = "") const;
  // Everything resume needs: A/B, AdamW moments, step, data position, dropout stream. Atomic
  // (temp file + rename). load_checkpoint() checks that it fits this trainer's model and LoRA layout.
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);

 private:
  struct Pass;
  std::vector<ParamSpan> spans();  // A then B of every pair, in pair order
  void build_params();
  void init_fresh();
  void init_from_adapter(const std::string& path);
  LoraParam* param_for(int layer, int target) { return slot_[static_cast<size_t>(layer * kLoraTargets + target)]; }
  // One packed pass over examples [e0, e1) of mb: forward, loss, and (if grad_scale != 0) backward.
  double run_pass(const std::vector<TrainExample>& mb, size_t e0, size_t e1, double grad_scale, bool backward, bool train);
  double accumulate_impl(const std::vector<TrainExample>& mb, double weight, bool train, int64_t* tokens, int64_t* loss_tokens);
  StepResult step_here(const std::vector<std::vector<TrainExample>>& micro_batches);
  BlockWeights layer_weights(const Pass& p, int layer);
  BlockContext block_context();
  void layer_forward(Pass& p, int layer, const float* x_in, float* x_out, BlockTape& a);
  void layer_backward(Pass& p, int layer, const float* x_in, BlockTape& a, float* dx, bool need_dx_in);

  std::shared_ptr<const LlamaModel> model_;
  LoraConfig lora_;
  OptimConfig optim_;
  TrainOptions opts_;
  ThreadPool pool_;
  std::vector<LoraParam> params_;
  std::vector<LoraParam*> slot_;  // [n_layer * kLoraTargets], null where not targeted
  int64_t step_ = 0, data_pos_ = 0;
  uint64_t rng_counter_ = 0;      // one tick per training pass: the dropout masks' stream position
  std::vector<std::vector<float>> terms_;
  // Kept between passes so that a step does not allocate, page-fault and zero them again: the
  // residual stream at every block input, the blocks' tapes, backward's buffers.
  std::vector<std::vector<float>> xs_;
  std::vector<BlockTape> tapes_;
  BlockScratch scratch_;
};

}  // namespace lro
