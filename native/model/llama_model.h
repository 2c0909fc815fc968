// A Llama-family model loaded from GGUF: hyperparameters, weight views into the mapping
// (never copied, never dequantised as a whole), and the tokenizer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/ggml_types.h"
#include "core/gguf.h"
#include "model/tokenizer.h"

namespace lro {

struct LlamaHparams {
  std::string arch;
  int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_rot = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
};

// A weight matrix as GGUF stores it: n_out rows (ggml ne[1]) of n_in elements (ggml ne[0]).
struct Weight {
  std::string name;
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t n_in = 0, n_out = 0;
};

struct LlamaLayer {
  std::vector<float> attn_norm, ffn_norm;  // [n_embd]
  Weight wq, wk, wv, wo, w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  // vocab_only: load only the tokenizer (files without tensors are always vocab-only).
  static std::shared_ptr<LlamaModel> load(const std::string& path, bool vocab_only = false);

  const GgufFile& file() const { return *file_; }
  std::shared_ptr<GgufFile> shared_file() const { return file_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  bool vocab_only() const { return vocab_only_; }
  const LlamaHparams& hparams() const { return hp_; }

  const Weight& tok_embd() const { return tok_embd_; }
  const Weight& output() const { return output_; }   // == tok_embd when tied
  bool tied_output() const { return tied_; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<float>& rope_freqs() const { return rope_freqs_; }  // empty = none
  const std::vector<LlamaLayer>& layers() const { return layers_; }

 private:
  LlamaModel() = default;
  void load_weights();
  Weight matrix(const std::string& name, int64_t n_in, int64_t n_out) const;
  std::vector<float> vector_f32(const std::string& name, int64_t n) const;

  std::shared_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  bool vocab_only_ = false;
  LlamaHparams hp_;
  Weight tok_embd_, output_;
  bool tied_ = false;
  std::vector<float> output_norm_, rope_freqs_;
  std::vector<LlamaLayer> layers_;
};

}  // namespace lro
