// Deterministic random Llama GGUF files: the built-in demo model (with a CODI latent head)
// and the Llama-3.2-1B-shaped models the bench generates. Weights are random: such a model
// computes, but knows nothing.
#pragma once
#include <cstdint>
#include <string>

#include "core/ggml_types.h"

namespace lro {

struct RandomLlamaSpec {
  int64_t n_embd = 128, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 384;
  int64_t n_vocab = 0;      // 0: the byte-level tokenizer's size (256 bytes + 6 special tokens)
  GgmlType type = GgmlType::F32;  // type of the 2-D weights (norms stay F32)
  uint64_t seed = 1;
  float weight_std = 0.0f;  // 0: 1 / sqrt(n_in) per matrix
  float rope_base = 500000.0f;
  std::string name = "lro-native demo (random weights)";
  std::string latent_path;  // non-empty: also write a CODI latent-head sidecar here
  int64_t latent_steps = 6;
  // Non-empty: copy this GGUF's tokenizer.* metadata (and its vocabulary size) instead of the
  // byte-level one; the latent head's bot / eot / pad are its <|bot|>, <|eot_latent|>, <|pad|>.
  std::string tokenizer_from;
  bool unit_norms = false;  // norms exactly 1 (a fresh model to train) instead of 1 + noise
};

// Writes the model (atomically). Tokenizer: byte-level BPE ("gpt2", pre "llama-bpe", no merges):
// ids 0..255 are bytes, then <|begin_of_text|>, <|end_of_text|>, <|eot_id|>, <|pad|>, <|bot|>,
// <|eot_latent|>; further ids up to n_vocab are unused padding tokens.
void write_random_llama(const std::string& path, const RandomLlamaSpec& spec);

}  // namespace lro
