// Training a latent reasoner through its latent chain. The student reads the prompt, then feeds
// e_k = head(h_k) back as the next input embedding for N latent steps, then decodes the suffix; the
// gradients flow through every latent step, their keys and values, and into the head.
//   CODI: student CE on the answer + distill_factor x the std-normalised SmoothL1 distillation of
//         every hidden state at the answer-predicting position toward a teacher (the same weights
//         reading the CoT) + ref_factor x the teacher's CE.
//   Coconut: stage s, s latent steps replace the first s CoT steps; CE on the rest (identity head).
//   LM: plain next-token CE on the teacher sequence (pretraining the teacher task).
// LoRA mode trains LoRA A/B (and the head); full mode trains every tensor of the model (f32 masters)
// and the head. The objective is exactly ../shared/golden/hf/README.md's codi-train section.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/block.h"
#include "model/latent_head.h"
#include "model/llama_model.h"
#include "train/optimizer.h"
#include "core/thread_pool.h"
#include "train/train.h"

namespace lro {

// LM: the teacher task alone (next-token CE over the teacher sequence's labels), to pretrain a
// base on CoT text before distilling it into latent steps.
enum class LatentObjective { CODI, COCONUT, LM };
const char* latent_objective_name(LatentObjective o);
LatentObjective latent_objective_from_name(const std::string& s);  // throws std::invalid_argument
enum class LatentTrainMode { LORA, FULL };

struct LatentTrainConfig {
  LatentObjective objective = LatentObjective::CODI;
  LatentTrainMode mode = LatentTrainMode::LORA;
  int64_t latent_steps = 6;  // CODI: the N latent steps; Coconut: the stage s
  double distill_factor = 1, ref_factor = 1;
  // Weight of the latent-target CE (examples with latent_labels): the row whose final state the head
  // reads for step k is also trained to predict latent_labels[k] through the output head. Not part
  // of CODI or Coconut; the organism uses it so that step k's latent carries step k's result.
  double latent_factor = 1;
  double smooth_l1_beta = 1;
  LoraConfig lora;           // LoRA mode: a fresh LoRA, or lora.init_adapter (a llama.cpp GGUF adapter)
  bool train_head = true;    // CODI's head is trained with the model
  int threads = 0;           // 0: physical cores
  int64_t ce_chunk_rows = 0;
};

// One training example as ids. Labels are aligned with their ids (labels[t] is the target of the
// row before t; -100 or any negative: no loss), as HF's.
struct LatentExample {
  std::vector<int32_t> prompt;                   // [bos] q [bot]: the student's encoder
  std::vector<int32_t> suffix, suffix_labels;    // after the latent steps: [eot] ... [eos]
  std::vector<int32_t> teacher, teacher_labels;  // CODI: the teacher's whole sequence
  int64_t student_distill = -1;                  // CODI: index in suffix of the distillation token
  int64_t teacher_distill = -1;                  // CODI: index in teacher of the same token
  std::vector<int32_t> latent_labels;            // empty, or one per latent step (negative: none)
};

struct LatentLoss {
  double ce = 0, distill = 0, ref_ce = 0, latent_ce = 0, total = 0;  // CEs: means over their targets
  std::vector<double> distill_per_state;              // [n_layer + 1]
  int64_t ce_tokens = 0, ref_tokens = 0, latent_tokens = 0, tokens = 0;
};

// What the forward of one example computed, for tests and inspection.
struct LatentTrace {
  std::vector<float> h, e;                            // [(N + 1), d]: h_k and e_k = head(h_k)
  std::vector<float> student_states, teacher_states;  // CODI: [(n_layer + 1), d]
};

struct LatentStepResult {
  double loss = 0, ce = 0, distill = 0, ref_ce = 0, latent_ce = 0;  // batch means
  double grad_norm = 0, clip_coef = 1, lr = 0;
  int64_t tokens = 0, step = 0;
  std::vector<LatentLoss> examples;
};

// A trained tensor: f32 master, gradient and AdamW moments.
struct TrainTensor {
  std::string name;            // the checkpoint's (HF / CODI) name
  std::string gguf;            // where it lives in a GGUF (model, adapter or latent-head file)
  std::vector<int64_t> shape;  // PyTorch shape, row-major
  int64_t permute_heads = 0;   // > 0: rows are in GGUF's rope order for this many heads (q/k); HF's differs
  std::vector<float> w, g, m, v;
};

class LatentTrainer {
 public:
  // head: the model's latent head (CODI needs one; Coconut uses the identity whatever is given).
  LatentTrainer(std::shared_ptr<const LlamaModel> model, std::shared_ptr<const LatentHead> head,
                const LatentTrainConfig& cfg, const OptimConfig& optim);

  // One optimizer step over micro-batches: each contributes the mean of its examples' losses,
  // divided by the number of micro-batches; then clipping and AdamW at the scheduled LR.
  LatentStepResult step(const std::vector<std::vector<LatentExample>>& micro_batches);
  // Adds weight x d(mean of the examples' losses)/dtheta (weight 0: losses only).
  std::vector<LatentLoss> accumulate(const std::vector<LatentExample>& mb, double weight,
                                     std::vector<LatentTrace>* traces = nullptr);
  void zero_grad();
  double grad_norm();

  std::vector<TrainTensor>& params() { return params_; }
  TrainTensor* find(const std::string& name);
  int64_t step_count() const { return step_; }
  int64_t data_position() const { return data_pos_; }
  void set_data_position(int64_t p) { data_pos_ = p; }
  const LatentTrainConfig& config() const { return cfg_; }
  const LlamaModel& model() const { return *model_; }
  int threads() const { return pool_.size(); }

  // A tensor in PyTorch's row order (q/k rows un-permuted): its weights, or gradient when grad (the
  // latest step's before clipping when keep_preclip is on).
  std::vector<float> hf_values(const TrainTensor& t, bool grad) const;
  // Keep a copy of each step's gradients before clipping (for dumps; twice the gradient memory).
  void set_keep_preclip(bool on) { keep_preclip_ = on; }
  // Full mode: the trained model (the source's metadata, every tensor f32). LoRA mode: the adapter.
  // extra: string metadata added to the file (a recipe, a data seed, measured results).
  void save_model(const std::string& path, const std::string& name = "",
                  const std::vector<std::pair<std::string, std::string>>& extra = {}) const;
  // The latent head sidecar with the trained head (CODI) or the source settings (Coconut).
  void save_head(const std::string& path) const;
  // Everything resume needs (weights, moments, step, data position); atomic.
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);

 private:
  struct Seq;
  void build_full();
  void build_lora();
  void build_head();
  BlockWeights layer_weights(int layer);
  LatentHeadWeights head_weights() const;
  LatentHeadGrads head_grads();
  BlockContext context();
  void final_norm(const float* x, float* out, int64_t n);
  void final_norm_backward(float* dx, const float* dout, const float* x, int64_t n);
  void embed(const int32_t* ids, int64_t n, float* out);
  // Rows of a chunk: (first row, count) per example fed together.
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  struct DistillGrad {
    int64_t row;
    int64_t entry;  // j: added to dL/dX[j]
    std::vector<float> grad;
  };
  using DistillGrads = std::vector<DistillGrad>;
  void run_chunk(Seq& s, const Ranges& ranges);
  void backward_chunk(Seq& s, const Ranges& ranges, std::vector<float>& dtop, const DistillGrads& distill);
  double ce_rows(Seq& s, const std::vector<int64_t>& rows, const std::vector<int32_t>& targets, double scale,
                 std::vector<float>* dtop);
  LatentStepResult step_here(const std::vector<std::vector<LatentExample>>& micro_batches);
  std::vector<LatentLoss> accumulate_here(const std::vector<LatentExample>& mb, double weight,
                                          std::vector<LatentTrace>* traces);
  // Forward (and backward) of a micro-batch: teachers in one packed pass, students fed together.
  std::vector<LatentLoss> batch(const std::vector<LatentExample>& mb, double weight, bool backward,
                                std::vector<LatentTrace>* traces);

  std::shared_ptr<const LlamaModel> model_;
  std::shared_ptr<const LatentHead> head_;
  LatentTrainConfig cfg_;
  OptimConfig optim_;
  ThreadPool pool_;
  std::vector<TrainTensor> params_;
  // Views the block and head read (full mode: into params_).
  std::vector<Weight> full_views_;  // [n_layer * kBlockLinears] f32 views of the masters
  Weight tok_embd_, output_;
  TrainTensor *p_tok_ = nullptr, *p_out_ = nullptr, *p_out_norm_ = nullptr;
  struct LayerParams {
    TrainTensor* attn_norm = nullptr;
    TrainTensor* ffn_norm = nullptr;
    TrainTensor* mat[kBlockLinears] = {};
    TrainTensor* lora_a[kBlockLinears] = {};
    TrainTensor* lora_b[kBlockLinears] = {};
    float lora_scale[kBlockLinears] = {};
  };
  std::vector<LayerParams> layer_params_;
  TrainTensor *h_w1_ = nullptr, *h_b1_ = nullptr, *h_w2_ = nullptr, *h_b2_ = nullptr, *h_lnw_ = nullptr, *h_lnb_ = nullptr;
  std::vector<float> frozen_head_[6];  // the head's tensors as f32 when it is not trained
  // Kept between passes so that their pages are faulted in once, not every step: the teachers' and
  // the students' streams and tapes, a chunk's gathered tape, block_backward's buffers, dL/d(top).
  std::shared_ptr<Seq> teacher_seq_, student_seq_;
  BlockTape chunk_tape_;
  BlockScratch scratch_;
  std::vector<float> dtop_teacher_, dtop_student_;
  int64_t head_hidden_ = 0;
  int64_t step_ = 0, data_pos_ = 0;
  bool keep_preclip_ = false;
  std::vector<std::vector<float>> preclip_;  // per params_ entry
};

}  // namespace lro
