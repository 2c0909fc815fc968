// Llama hyper-parameters from a Hugging Face config.json (transformers 4 `rope_theta` /
// `rope_scaling` or transformers 5 `rope_parameters`), with transformers' LlamaConfig defaults for
// absent keys, and the llama3 RoPE frequency factors computed as llama.cpp's converter does.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "convert/json.h"

namespace lro {
namespace convert {

struct LlamaConfig {
  std::string path;            // the file read
  std::string architecture;    // architectures[0] or "LlamaForCausalLM"
  int64_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0;
  int64_t n_ctx = 2048;        // max_position_embeddings
  int64_t vocab_size = -1;     // -1 when absent
  int64_t head_dim = -1;       // as stated in the file; -1 when absent
  int64_t head_dim_eff = 0;    // head_dim or n_embd / n_head
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string rope_type;       // "" (none/default), "llama3", "linear", "yarn"
  double rope_factor = 1.0, rope_low_freq = 1.0, rope_high_freq = 4.0;
  int64_t rope_orig_ctx = 8192;
  bool has_rope_orig_ctx = false;
  bool tie_embeddings = false;
  bool attention_bias = false, mlp_bias = false;
  int64_t bos_id = -1, eos_id = -1;  // integers only (a list-valued eos_token_id is ignored, as llama.cpp)
  json::Value raw;
};

// Throws ConvertError naming the file and key for anything missing, mistyped or inconsistent.
LlamaConfig read_llama_config(const std::string& path);

// llama.cpp's `rope_freqs.weight` for rope_type llama3 (float32 arithmetic, as its converter).
std::vector<float> llama3_rope_factors(const LlamaConfig& c);

}  // namespace convert
}  // namespace lro
