// An inference session over a model: per-sequence KV caches and the batched forward pass.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/block.h"
#include "model/llama_model.h"
#include "model/lora_adapter.h"
#include "core/thread_pool.h"

namespace lro {

struct SessionOptions {
  int64_t n_ctx = 4096;   // most cells one sequence may hold
  bool kv_f16 = false;
  int threads = 0;        // 0: physical cores
};

struct Batch {
  int64_t n = 0;
  const int32_t* tokens = nullptr;     // [n]; or
  const float* embeddings = nullptr;   // [n, n_embd]: replaces the token-embedding lookup
  const int32_t* pos = nullptr;        // [n]
  const int32_t* seq = nullptr;        // [n]
  std::vector<int64_t> output_rows;    // rows of the batch whose logits / final norm are wanted
  bool want_logits = true;
  bool want_final_norm = false;
  HookFn hook;                         // optional
};

struct EvalResult {
  std::vector<float> logits;      // [output_rows, n_vocab]
  std::vector<float> final_norm;  // [output_rows, n_embd]
};

class CancelledError : public std::runtime_error {
 public:
  CancelledError() : std::runtime_error("cancelled") {}
};

class Session {
 public:
  Session(std::shared_ptr<const LlamaModel> model, const SessionOptions& opts);
  const LlamaModel& model() const { return *model_; }
  const SessionOptions& options() const { return opts_; }
  int threads() const { return pool_.size(); }

  // Runs the forward pass. Positions of one sequence must be strictly increasing and above every
  // position already cached for it. Throws std::invalid_argument on bad input, CancelledError when
  // *cancel becomes true (checked between layers; the batch's cache cells are then rolled back).
  // storage: vectors whose capacity the result takes over (say, those of an earlier result the
  // caller is done with). A decode token's logits are 0.5 MB: in fresh memory they page-fault
  // about 1.5 ms a token on a VM, which is 5-20% of a small model's token.
  EvalResult eval(const Batch& batch, const std::atomic<bool>* cancel = nullptr, EvalResult storage = {});

  // Replaces dst's cache with the cells of src whose positions are in [p0, p1) (p1 < 0: no bound).
  void seq_copy(int32_t src, int32_t dst, int32_t p0, int32_t p1);
  // Removes the cells with positions in [p0, p1) (p1 < 0: no bound); the whole sequence if p0 <= 0 and p1 < 0.
  void seq_remove(int32_t seq, int32_t p0, int32_t p1);
  // Largest cached position of seq, or -1.
  int32_t seq_pos_max(int32_t seq) const;
  int64_t seq_cells(int32_t seq) const;
  void clear() { seqs_.clear(); }

  // LoRA adapters applied unmerged on every later eval: y = W x + scale * (alpha / r) * B (A x).
  // Changing adapters does not touch the cache: clear it if earlier cells must see them too.
  void set_adapters(std::vector<std::pair<std::shared_ptr<const LoraAdapter>, float>> adapters);

 private:
  struct SeqCache {
    std::vector<int32_t> pos;                 // [cells]
    std::vector<std::vector<uint8_t>> k, v;   // per layer: [cells, n_head_kv * head_dim] f32 or f16
  };
  EvalResult eval_here(const Batch& b, const std::atomic<bool>* cancel, EvalResult& storage);
  SeqCache& seq_cache(int32_t seq);
  void erase_seq(std::map<int32_t, SeqCache>::iterator it);  // keeps its emptied cache as spare_
  void append_kv(SeqCache& c, int layer, const float* k, const float* v);
  class CacheKv : public BlockKv {
   public:
    CacheKv(Session& s, const Batch& b) : s_(s), b_(b) {}
    AttentionRows attend(int layer, const float* k, const float* v, int64_t n, bool* kv_f16) override;

   private:
    Session& s_;
    const Batch& b_;
    std::vector<const void*> kp_, vp_;
    std::vector<const int32_t*> cp_;
    std::vector<int64_t> nc_;
  };
  Linear with_adapters(const Weight& w) const;  // w plus the adapters' low-rank terms on it
  BlockWeights layer_weights(int layer) const;
  // out[n, w.n_out] = w x (+ the adapters' low-rank terms)
  void linear(const Weight& w, const float* x, int64_t n, float* out);

  std::shared_ptr<const LlamaModel> model_;
  SessionOptions opts_;
  ThreadPool pool_;
  int64_t row_macs_ = 0;  // multiply-adds of the blocks' and the head's matrices for one row
  static constexpr int64_t kLeadMinMacs = int64_t(1) << 26;
  // The forward's activations, kept between evals of up to kKeepTapeRows rows: allocating them
  // afresh zero-fills and page-faults tens of MB per prompt.
  static constexpr int64_t kKeepTapeRows = 1024;
  BlockTape tape_;
  std::vector<float> x_;  // the residual stream [rows, n_embd], kept as the tape is
  std::map<int32_t, SeqCache> seqs_;
  // The emptied cache of the last sequence removed whole, whose capacity the next new sequence
  // takes: a prompt's keys and values refilled into fresh memory page-faulted ~1 MB an eval (64
  // tokens of the 1B-shaped bench model), and a bench or a sweep removes and refills all the time.
  SeqCache spare_;
  std::vector<std::pair<std::shared_ptr<const LoraAdapter>, float>> adapters_;
};

}  // namespace lro
