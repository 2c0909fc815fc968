#include "model/random_model.h"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/gguf.h"
#include "core/rng.h"
#include "model/latent_head.h"
#include "quant/quants.h"

namespace lro {

namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() { return splitmix64(s_); }
  double uniform() { return open_unit_double(next()); }
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double r = std::sqrt(-2.0 * std::log(uniform())), th = 2.0 * M_PI * uniform();
    spare_ = static_cast<float>(r * std::sin(th));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(th));
  }

 private:
  uint64_t s_;
  float spare_ = 0;
  bool has_spare_ = false;
};

// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 onwards.
std::string byte_token(int b) {
  int cp;
  bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  if (printable) {
    cp = b;
  } else {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::vector<uint8_t> quantized(GgmlType type, const std::vector<float>& x, int64_t row) {
  size_t rs = row_size(type, row);
  int64_t rows = static_cast<int64_t>(x.size()) / row;
  std::vector<uint8_t> out(rs * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, x.data() + r * row, out.data() + r * rs, row);
  return out;
}

std::vector<float> random_matrix(Rng& rng, int64_t n_in, int64_t n_out, float std_) {
  std::vector<float> w(static_cast<size_t>(n_in * n_out));
  float s = std_ > 0 ? std_ : static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_in)));
  for (auto& v : w) v = rng.normal() * s;
  return w;
}

}  // namespace

void write_random_llama(const std::string& path, const RandomLlamaSpec& sp) {
  if (sp.n_embd % sp.n_head != 0 || sp.n_head % sp.n_head_kv != 0)
    throw std::invalid_argument("random model: n_embd must divide by n_head and n_head by n_head_kv");
  if (!can_quantize(sp.type)) throw std::invalid_argument("random model: cannot write weights of that type");
  const int64_t bs = traits(sp.type).block_size;
  if (sp.n_embd % bs != 0 || sp.n_ff % bs != 0)
    throw std::invalid_argument("random model: n_embd and n_ff must be multiples of the type's block size " + std::to_string(bs));
  const char* specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|pad|>", "<|bot|>", "<|eot_latent|>"};
  const int64_t n_tok = 256 + 6;
  int64_t n_vocab = sp.n_vocab > 0 ? sp.n_vocab : n_tok;
  if (!sp.tokenizer_from.empty() && sp.n_vocab <= 0)
    n_vocab = static_cast<int64_t>(GgufFile::open(sp.tokenizer_from)->get("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens").size());
  else if (n_vocab < n_tok) throw std::invalid_argument("random model: n_vocab must be at least 262");
  const int64_t d = sp.n_embd, hd = sp.n_embd / sp.n_head;

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", sp.name);
  // llama.cpp's llama_ftype numbering (MOSTLY_*); K-quants name their _M mixture.
  uint32_t ftype = 0;
  switch (sp.type) {
    case GgmlType::F16: ftype = 1; break;
    case GgmlType::Q4_0: ftype = 2; break;
    case GgmlType::Q8_0: ftype = 7; break;
    case GgmlType::Q4_K: ftype = 15; break;
    case GgmlType::Q6_K: ftype = 18; break;
    case GgmlType::BF16: ftype = 32; break;
    default: ftype = 0;
  }
  w.set_u32("general.file_type", ftype);
  w.set_u32("llama.block_count", static_cast<uint32_t>(sp.n_layer));
  w.set_u32("llama.context_length", 8192);
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(d));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(sp.n_ff));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(sp.n_head));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(sp.n_head_kv));
  w.set_f32("llama.rope.freq_base", sp.rope_base);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(hd));
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(n_vocab));
  int32_t bot = 260, eot = 261, pad = 259;
  if (!sp.tokenizer_from.empty()) {
    // Another file's tokenizer, as it is; the latent specials by their names.
    auto f = GgufFile::open(sp.tokenizer_from);
    const auto& toks = f->get("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens");
    if (static_cast<int64_t>(toks.size()) > n_vocab && sp.n_vocab > 0)
      throw std::invalid_argument("random model: n_vocab " + std::to_string(n_vocab) + " is below the tokenizer's " + std::to_string(toks.size()) + " tokens");
    for (const auto& kv : f->metadata())
      if (kv.first.rfind("tokenizer.", 0) == 0) w.set_value(kv.first, kv.second);
    auto id_of = [&](const char* name) {
      for (size_t i = 0; i < toks.size(); ++i)
        if (toks[i].as_string("tokenizer.ggml.tokens") == name) return static_cast<int32_t>(i);
      return int32_t(-1);
    };
    bot = id_of("<|bot|>");
    eot = id_of("<|eot_latent|>");
    pad = id_of("<|pad|>");
  } else {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) {
      tokens.push_back(byte_token(b));
      types.push_back(1);
    }
    for (const char* s : specials) {
      tokens.push_back(s);
      types.push_back(3);
    }
    for (int64_t i = n_tok; i < n_vocab; ++i) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(5);
    }
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "llama-bpe");
    w.set_string_array("tokenizer.ggml.tokens", tokens);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    w.set_string_array("tokenizer.ggml.merges", {});
    w.set_u32("tokenizer.ggml.bos_token_id", 256);
    w.set_u32("tokenizer.ggml.eos_token_id", 257);
    w.set_u32("tokenizer.ggml.eot_token_id", 258);
    w.set_u32("tokenizer.ggml.padding_token_id", 259);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
  }
  Rng rng(sp.seed);
  auto add_matrix = [&](const std::string& name, int64_t n_in, int64_t n_out, float std_) {
    w.add_tensor(name, sp.type, {n_in, n_out}, quantized(sp.type, random_matrix(rng, n_in, n_out, std_), n_in));
  };
  auto add_norm = [&](const std::string& name) {
    std::vector<float> g(static_cast<size_t>(d));
    for (auto& v : g) v = sp.unit_norms ? 1.0f : 1.0f + 0.1f * rng.normal();
    w.add_tensor(name, GgmlType::F32, {d}, quantized(GgmlType::F32, g, d));
  };
  // Embedding rows of unit-ish scale, so the residual stream starts at a norm like a real model's.
  add_matrix("token_embd.weight", d, n_vocab, sp.weight_std > 0 ? sp.weight_std : 1.0f);
  add_norm("output_norm.weight");
  for (int64_t l = 0; l < sp.n_layer; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    add_norm(p + "attn_norm.weight");
    add_norm(p + "ffn_norm.weight");
    add_matrix(p + "attn_q.weight", d, d, sp.weight_std);
    add_matrix(p + "attn_k.weight", d, sp.n_head_kv * hd, sp.weight_std);
    add_matrix(p + "attn_v.weight", d, sp.n_head_kv * hd, sp.weight_std);
    add_matrix(p + "attn_output.weight", d, d, sp.weight_std);
    add_matrix(p + "ffn_gate.weight", d, sp.n_ff, sp.weight_std);
    add_matrix(p + "ffn_up.weight", d, sp.n_ff, sp.weight_std);
    add_matrix(p + "ffn_down.weight", sp.n_ff, d, sp.weight_std);
  }
  w.write(path);

  if (sp.latent_path.empty()) return;
  GgufWriter h;
  h.set_string("general.type", "latent-head");
  h.set_string("general.name", sp.name + " latent head");
  h.set_string(kLatentMode, "codi");
  h.set_u32(kLatentSteps, static_cast<uint32_t>(sp.latent_steps));
  h.set_i32(kLatentBot, bot);
  h.set_i32(kLatentEot, eot);
  h.set_i32(kLatentPad, pad);
  h.set_string(kLatentPromptFormat, "codi");
  h.set_f32(kLatentLnEps, 1e-5f);
  std::vector<int32_t> exclude;
  for (int32_t id : {pad, bot, eot})
    if (id >= 0) exclude.push_back(id);
  h.set_i32_array(kLatentExclude, exclude);
  auto vec = [&](float mean, float std_) {
    std::vector<float> v(static_cast<size_t>(d));
    for (auto& x : v) x = mean + std_ * rng.normal();
    return quantized(GgmlType::F32, v, d);
  };
  h.add_tensor("latent.fc1.weight", GgmlType::F32, {d, d}, quantized(GgmlType::F32, random_matrix(rng, d, d, 0), d));
  h.add_tensor("latent.fc1.bias", GgmlType::F32, {d}, vec(0, 0.1f));
  h.add_tensor("latent.fc2.weight", GgmlType::F32, {d, d}, quantized(GgmlType::F32, random_matrix(rng, d, d, 0), d));
  h.add_tensor("latent.fc2.bias", GgmlType::F32, {d}, vec(0, 0.1f));
  h.add_tensor("latent.ln.weight", GgmlType::F32, {d}, vec(1, 0.1f));
  h.add_tensor("latent.ln.bias", GgmlType::F32, {d}, vec(0, 0.1f));
  h.write(sp.latent_path);
}

}  // namespace lro
