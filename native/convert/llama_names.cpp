#include "convert/llama_names.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "convert/common.h"

namespace lro {
namespace convert {

namespace {

struct LayerMap {
  const char* hf;    // after "model.layers.N."
  const char* gguf;  // after "blk.N."
};
const LayerMap kLayer[] = {
    {"input_layernorm", "attn_norm"},        {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},          {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},          {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
struct GlobalMap {
  const char* hf;
  const char* gguf;
};
const GlobalMap kGlobal[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

bool parse_layer(const std::string& s, const std::string& prefix, int& layer, std::string& rest) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  size_t p = prefix.size(), q = p;
  while (q < s.size() && std::isdigit(static_cast<unsigned char>(s[q]))) ++q;
  if (q == p || q >= s.size() || s[q] != '.' || q - p > 6) return false;
  layer = std::stoi(s.substr(p, q - p));
  rest = s.substr(q + 1);
  return true;
}

}  // namespace

std::string hf_to_gguf_name(const std::string& hf, int* layer_out) {
  if (layer_out) *layer_out = -1;
  size_t dot = hf.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string base = hf.substr(0, dot), suffix = hf.substr(dot);  // ".weight" / ".bias"
  if (suffix != ".weight" && suffix != ".bias") return "";
  for (const auto& g : kGlobal)
    if (base == g.hf) return std::string(g.gguf) + suffix;
  int layer;
  std::string rest;
  if (!parse_layer(base, "model.layers.", layer, rest)) return "";
  for (const auto& m : kLayer)
    if (rest == m.hf) {
      if (layer_out) *layer_out = layer;
      return "blk." + std::to_string(layer) + "." + m.gguf + suffix;
    }
  return "";
}

std::string gguf_to_hf_name(const std::string& g) {
  size_t dot = g.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string base = g.substr(0, dot), suffix = g.substr(dot);
  if (suffix != ".weight" && suffix != ".bias") return "";
  for (const auto& m : kGlobal)
    if (base == m.gguf) return std::string(m.hf) + suffix;
  int layer;
  std::string rest;
  if (!parse_layer(base, "blk.", layer, rest)) return "";
  for (const auto& m : kLayer)
    if (rest == m.gguf) return "model.layers." + std::to_string(layer) + "." + m.hf + suffix;
  return "";
}

std::string id_to_title(const std::string& id) {
  std::string s = id;
  for (auto& c : s)
    if (c == '-') c = ' ';
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i) break;
    std::string w = s.substr(i, j - i);
    i = j;
    bool has_lower = false, has_upper = false;
    for (char c : w) {
      has_lower |= std::islower(static_cast<unsigned char>(c)) != 0;
      has_upper |= std::isupper(static_cast<unsigned char>(c)) != 0;
    }
    // Words that are all lower case get Python's str.title(), except versions (v1.2) and numbers.
    bool version_like = std::isdigit(static_cast<unsigned char>(w[0])) ||
                        (w.size() > 1 && w[0] == 'v' && std::isdigit(static_cast<unsigned char>(w[1])));
    if (has_lower && !has_upper && !version_like) {
      bool prev_alpha = false;
      for (auto& c : w) {
        bool a = std::isalpha(static_cast<unsigned char>(c)) != 0;
        if (a) c = static_cast<char>(prev_alpha ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
        prev_alpha = a;
      }
    }
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string size_label(uint64_t n) {
  double x = static_cast<double>(n);
  const char* suffix = "K";
  double scaled = x * 1e-3;
  if (x > 1e12) {
    suffix = "T";
    scaled = x * 1e-12;
  } else if (x > 1e9) {
    suffix = "B";
    scaled = x * 1e-9;
  } else if (x > 1e6) {
    suffix = "M";
    scaled = x * 1e-6;
  }
  // round(scaled, max(2 - len(str(round(scaled))), 0)), printed as Python prints that float.
  long long whole = std::llround(scaled);
  int digits = 2 - static_cast<int>(std::to_string(whole).size());
  if (digits < 0) digits = 0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits > 0 ? digits : 1, digits > 0 ? scaled : std::nearbyint(scaled));
  return std::string(buf) + suffix;
}

}  // namespace convert
}  // namespace lro
