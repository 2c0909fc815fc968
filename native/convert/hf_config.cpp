#include "convert/hf_config.h"

#include <cmath>

#include "convert/common.h"

namespace lro {
namespace convert {

LlamaConfig read_llama_config(const std::string& path) {
  LlamaConfig c;
  c.path = path;
  c.raw = json::parse_file(path);
  const json::Value& j = c.raw;
  const std::string& L = path;
  if (!j.is_object()) throw ConvertError(L + ": not a JSON object");

  if (const json::Value* a = j.find("architectures")) {
    if (!a->is_array() || a->items.empty() || !a->items[0].is_string())
      throw ConvertError(L + ": 'architectures' must be a non-empty array of strings");
    c.architecture = a->items[0].str;
  } else {
    c.architecture = "LlamaForCausalLM";
  }
  std::string model_type = json::get_string_or(j, "model_type", "llama", L);
  if (c.architecture != "LlamaForCausalLM" || model_type != "llama")
    throw ConvertError(L + ": architecture '" + c.architecture + "' (model_type '" + model_type +
                       "') is not supported; only LlamaForCausalLM (model_type llama) converts");
  std::string act = json::get_string_or(j, "hidden_act", "silu", L);
  if (act != "silu") throw ConvertError(L + ": 'hidden_act' is '" + act + "'; Llama needs silu");

  c.n_embd = json::get_int(j, "hidden_size", L);
  c.n_layer = json::get_int(j, "num_hidden_layers", L);
  c.n_head = json::get_int(j, "num_attention_heads", L);
  c.n_head_kv = json::get_int_or(j, "num_key_value_heads", c.n_head, L);
  c.n_ff = json::get_int(j, "intermediate_size", L);
  c.n_ctx = json::get_int_or(j, "max_position_embeddings", 2048, L);
  c.vocab_size = json::get_int_or(j, "vocab_size", -1, L);
  c.head_dim = json::get_int_or(j, "head_dim", -1, L);
  c.rms_eps = json::get_number_or(j, "rms_norm_eps", 1e-6, L);
  c.tie_embeddings = json::get_bool_or(j, "tie_word_embeddings", false, L);
  c.attention_bias = json::get_bool_or(j, "attention_bias", false, L);
  c.mlp_bias = json::get_bool_or(j, "mlp_bias", false, L);
  if (const json::Value* b = j.find("bos_token_id"); b && b->is_number() && b->is_int) c.bos_id = b->integer;
  if (const json::Value* e = j.find("eos_token_id"); e && e->is_number() && e->is_int) c.eos_id = e->integer;
  if (c.mlp_bias) throw ConvertError(L + ": 'mlp_bias' true is not supported by llama.cpp's Llama graph");

  for (auto [key, v] : {std::pair<const char*, int64_t>{"hidden_size", c.n_embd}, {"num_hidden_layers", c.n_layer},
                        {"num_attention_heads", c.n_head}, {"num_key_value_heads", c.n_head_kv},
                        {"intermediate_size", c.n_ff}, {"max_position_embeddings", c.n_ctx}})
    if (v <= 0 || v > (int64_t(1) << 31)) throw ConvertError(L + ": '" + key + "' is " + std::to_string(v) + ", out of range");
  if (c.n_head % c.n_head_kv != 0)
    throw ConvertError(L + ": num_attention_heads " + std::to_string(c.n_head) + " is not a multiple of num_key_value_heads " +
                       std::to_string(c.n_head_kv));
  if (c.head_dim > 0) {
    c.head_dim_eff = c.head_dim;
  } else {
    if (c.n_embd % c.n_head != 0)
      throw ConvertError(L + ": hidden_size " + std::to_string(c.n_embd) + " is not a multiple of num_attention_heads " +
                         std::to_string(c.n_head) + " and no head_dim is given");
    c.head_dim_eff = c.n_embd / c.n_head;
  }
  if (c.head_dim_eff % 2 != 0) throw ConvertError(L + ": head dimension " + std::to_string(c.head_dim_eff) + " is odd; RoPE needs pairs");
  if (!(c.rms_eps > 0)) throw ConvertError(L + ": 'rms_norm_eps' must be positive");

  // transformers 5 keeps theta and scaling together in rope_parameters; 4.x uses rope_theta and rope_scaling.
  const json::Value* rp = j.find("rope_parameters");
  if (!rp || rp->is_null()) rp = j.find("rope_scaling");
  if (rp && !rp->is_null() && !rp->is_object()) throw ConvertError(L + ": 'rope_parameters' / 'rope_scaling' must be an object");
  c.rope_theta = json::get_number_or(j, "rope_theta", 10000.0, L);
  if (rp && rp->is_object()) {
    const std::string RL = L + " rope_parameters";
    c.rope_theta = json::get_number_or(*rp, "rope_theta", c.rope_theta, RL);
    std::string t = json::get_string_or(*rp, "rope_type", json::get_string_or(*rp, "type", "", RL), RL);
    for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (t == "default") t.clear();
    if (!t.empty() && t != "llama3" && t != "linear" && t != "yarn")
      throw ConvertError(L + ": rope type '" + t + "' is not supported (default, llama3, linear, yarn)");
    c.rope_type = t;
    c.rope_factor = json::get_number_or(*rp, "factor", t == "llama3" ? 8.0 : 1.0, RL);
    c.rope_low_freq = json::get_number_or(*rp, "low_freq_factor", 1.0, RL);
    c.rope_high_freq = json::get_number_or(*rp, "high_freq_factor", 4.0, RL);
    if (const json::Value* o = rp->find("original_max_position_embeddings"); o && !o->is_null()) {
      c.rope_orig_ctx = json::get_int(*rp, "original_max_position_embeddings", RL);
      c.has_rope_orig_ctx = true;
    }
    if ((t == "linear" || t == "yarn") && !(c.rope_factor > 0)) throw ConvertError(RL + ": 'factor' must be positive");
    if (t == "yarn" && !c.has_rope_orig_ctx) throw ConvertError(RL + ": yarn needs 'original_max_position_embeddings'");
  }
  if (!c.has_rope_orig_ctx) {
    if (const json::Value* o = j.find("original_max_position_embeddings"); o && !o->is_null()) {
      c.rope_orig_ctx = json::get_int(j, "original_max_position_embeddings", L);
      c.has_rope_orig_ctx = true;
    }
  }
  if (!(c.rope_theta > 0)) throw ConvertError(L + ": rope theta must be positive");
  return c;
}

std::vector<float> llama3_rope_factors(const LlamaConfig& c) {
  // Mirrors the converter's torch float32 arithmetic step by step, so the factors are bit-equal.
  const int64_t dim = c.head_dim_eff;
  const float factor = static_cast<float>(c.rope_factor);
  const float low = static_cast<float>(c.rope_low_freq), high = static_cast<float>(c.rope_high_freq);
  const double old_ctx = static_cast<double>(c.rope_orig_ctx);
  const double low_wavelen = old_ctx / c.rope_low_freq;
  const double high_wavelen = old_ctx / c.rope_high_freq;
  const float base = static_cast<float>(c.rope_theta);
  const float two_pi = static_cast<float>(2.0 * M_PI);
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    float e = static_cast<float>(i) / static_cast<float>(dim);
    float freq = 1.0f / std::pow(base, e);
    float wavelen = two_pi / freq;
    if (static_cast<double>(wavelen) < high_wavelen) {
      out.push_back(1.0f);
    } else if (static_cast<double>(wavelen) > low_wavelen) {
      out.push_back(factor);
    } else {
      float smooth = (static_cast<float>(old_ctx) / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

}  // namespace convert
}  // namespace lro
