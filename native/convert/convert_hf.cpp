#include "convert/convert_hf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "convert/checkpoint.h"
#include "convert/gguf_stream.h"
#include "convert/hf_config.h"
#include "convert/hf_vocab.h"
#include "convert/json.h"
#include "convert/llama_names.h"
#include "core/ggml_types.h"
#include "core/gguf.h"
#include "model/latent_head.h"
#include "quant/quants.h"

namespace lro {
namespace convert {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

struct OutType {
  GgmlType type;
  uint32_t file_type;  // general.file_type (llama_ftype)
};

OutType parse_out_type(const std::string& t) {
  if (t == "f32") return {GgmlType::F32, 0};
  if (t == "f16") return {GgmlType::F16, 1};
  if (t == "bf16") return {GgmlType::BF16, 32};
  if (t == "q8_0") return {GgmlType::Q8_0, 7};
  throw ConvertError("output type '" + t + "' is not supported (f32, f16, bf16, q8_0)");
}

// Encodes rows of ne0 floats into a GGUF tensor type.
std::vector<uint8_t> encode(GgmlType type, const std::vector<float>& data, int64_t ne0) {
  const int64_t rows = ne0 > 0 ? static_cast<int64_t>(data.size()) / ne0 : 0;
  std::vector<uint8_t> out(row_size(type, ne0) * static_cast<size_t>(rows));
  if (type == GgmlType::F32) {
    if (!data.empty()) std::memcpy(out.data(), data.data(), data.size() * sizeof(float));
    return out;
  }
  const size_t rs = row_size(type, ne0);
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, data.data() + r * ne0, out.data() + static_cast<size_t>(r) * rs, ne0);
  return out;
}

// W[out, in] += scale * B[out, r] @ A[r, in], accumulated in double and rounded once per element.
void merge_lora(std::vector<float>& w, const std::vector<float>& a, const std::vector<float>& b, int64_t n_out, int64_t n_in,
                int64_t r, double scale, int threads) {
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    std::vector<double> acc(static_cast<size_t>(n_in));
    for (int64_t o; (o = next.fetch_add(1)) < n_out;) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < r; ++k) {
        const double bk = b[static_cast<size_t>(o * r + k)];
        if (bk == 0) continue;
        const float* ar = a.data() + k * n_in;
        for (int64_t i = 0; i < n_in; ++i) acc[static_cast<size_t>(i)] += bk * static_cast<double>(ar[i]);
      }
      float* wr = w.data() + o * n_in;
      for (int64_t i = 0; i < n_in; ++i) wr[i] = static_cast<float>(static_cast<double>(wr[i]) + scale * acc[static_cast<size_t>(i)]);
    }
  };
  int nt = std::max(1, std::min<int>(threads, static_cast<int>(std::min<int64_t>(n_out, 64))));
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

struct LoraParts {
  const TensorRef* a = nullptr;
  const TensorRef* b = nullptr;
};

struct PlanItem {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;        // ggml order
  const TensorRef* src = nullptr;
  std::vector<float> fixed;       // generated data (rope_freqs)
  LoraParts lora;
  double lora_scale = 0;
  int64_t permute_heads = 0;      // > 0: rows permuted rotate-half -> pairs with this many heads
};

// Values read from an optional README.json / adapter_config.json next to a CODI checkpoint.
struct FolderFacts {
  bool has_alpha = false;
  double alpha = 0;
  std::string alpha_source;
  int64_t r = -1;
  bool rslora = false;
  int64_t num_latent = -1;
  int64_t pad = -1, bot = -1, eot = -1;
  std::string prompt_format, latent_mode;  // README.json of an export-hf folder
  double latent_scale = 1.0;
};

FolderFacts read_folder_facts(const std::string& dir) {
  FolderFacts f;
  const std::string readme = path_join(dir, "README.json");
  if (file_exists(readme)) {
    json::Value j = json::parse_file(readme);
    if (!j.is_object()) throw ConvertError(readme + ": not a JSON object");
    if (const json::Value* l = j.find("lora"); l && l->is_object()) {
      if (const json::Value* a = l->find("alpha"); a && a->is_number()) {
        f.has_alpha = true;
        f.alpha = a->number;
        f.alpha_source = "README.json";
      }
      f.r = json::get_int_or(*l, "r", -1, readme + " lora");
      f.rslora = json::get_bool_or(*l, "use_rslora", false, readme + " lora");
    }
    f.num_latent = json::get_int_or(j, "num_latent", -1, readme);
    // export-hf's README.json states these as strings (a CODI checkpoint's prompt_format is an object describing it).
    if (const json::Value* pf = j.find("prompt_format"); pf && pf->is_string()) f.prompt_format = pf->str;
    if (const json::Value* lm = j.find("latent_mode"); lm && lm->is_string()) f.latent_mode = lm->str;
    f.latent_scale = json::get_number_or(j, "latent_scale", 1.0, readme);
    if (!std::isfinite(f.latent_scale) || f.latent_scale <= 0 || f.latent_scale > 1e4)
      throw ConvertError(readme + ": latent_scale must be a positive number");
    if (!f.prompt_format.empty() && f.prompt_format != "codi-answer-only" && f.prompt_format != "codi" && f.prompt_format != "plain")
      throw ConvertError(readme + ": prompt_format '" + f.prompt_format + "' is not codi-answer-only, codi or plain");
    if (const json::Value* s = j.find("special_ids"); s && s->is_object()) {
      f.pad = json::get_int_or(*s, "pad", -1, readme + " special_ids");
      f.bot = json::get_int_or(*s, "bot", -1, readme + " special_ids");
      f.eot = json::get_int_or(*s, "eot", -1, readme + " special_ids");
    }
  }
  const std::string ac = path_join(dir, "adapter_config.json");
  if (file_exists(ac)) {
    json::Value j = json::parse_file(ac);
    if (!f.has_alpha) {
      if (const json::Value* a = j.find("lora_alpha"); a && a->is_number()) {
        f.has_alpha = true;
        f.alpha = a->number;
        f.alpha_source = "adapter_config.json";
        f.r = json::get_int_or(j, "r", f.r, ac);
        f.rslora = json::get_bool_or(j, "use_rslora", f.rslora, ac);
      }
    }
  }
  return f;
}

void write_latent_sidecar(const std::string& path, const std::string& name, const LatentSettings& s,
                          const std::map<std::string, const TensorRef*>& prj, int64_t d, HfConvertSummary& sum) {
  GgufStreamWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "latent-head");
  w.set_string("general.name", name + " latent head");
  w.set_string(kLatentMode, s.mode);
  w.set_u32(kLatentSteps, static_cast<uint32_t>(s.steps));
  w.set_i32(kLatentBot, s.bot_id);
  w.set_i32(kLatentEot, s.eot_id);
  w.set_i32(kLatentPad, s.pad_id);
  w.set_string(kLatentPromptFormat, s.prompt_format);
  w.set_f32(kLatentLnEps, s.ln_eps);
  if (s.scale != 1.0f) w.set_f32(kLatentScale, s.scale);
  w.set_i32_array(kLatentExclude, s.exclude_ids);
  std::vector<const TensorRef*> srcs;
  if (s.mode == "codi") {
    const TensorRef* w1 = prj.at("prj.1.weight");
    const int64_t h = w1->shape[0];
    struct Spec {
      const char* src;
      const char* dst;
      std::vector<int64_t> shape;  // numpy order
    };
    const Spec specs[] = {
        {"prj.1.weight", "latent.fc1.weight", {h, d}}, {"prj.1.bias", "latent.fc1.bias", {h}},
        {"prj.3.weight", "latent.fc2.weight", {d, h}}, {"prj.3.bias", "latent.fc2.bias", {d}},
        {"prj.ln.weight", "latent.ln.weight", {d}},    {"prj.ln.bias", "latent.ln.bias", {d}},
    };
    for (const auto& sp : specs) {
      auto it = prj.find(sp.src);
      if (it == prj.end()) throw ConvertError("CODI projection tensor '" + std::string(sp.src) + "' is missing from the checkpoint");
      if (it->second->shape != sp.shape)
        throw ConvertError(it->second->describe() + ": shape " + shape_str(it->second->shape) + ", expected " + shape_str(sp.shape));
      std::vector<int64_t> ne(sp.shape.rbegin(), sp.shape.rend());
      w.add_tensor(sp.dst, GgmlType::F32, ne);
      srcs.push_back(it->second);
    }
  }
  w.write(path, [&](size_t i, std::vector<uint8_t>& bytes) {
    auto v = srcs[i]->to_f32();
    bytes.resize(v.size() * sizeof(float));
    if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  });
  sum.latent_out = path;
}

// The llama.* hyper-parameters, general.file_type and the quantization version, in the order the
// reference converter's set_gguf_parameters writes them (its vocab-only files carry them too).
void set_llama_params(GgufStreamWriter& w, const LlamaConfig& cfg, uint32_t file_type, int64_t n_vocab) {
  w.set_u32("llama.block_count", static_cast<uint32_t>(cfg.n_layer));
  w.set_u32("llama.context_length", static_cast<uint32_t>(cfg.n_ctx));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(cfg.n_embd));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(cfg.n_ff));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(cfg.n_head));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(cfg.n_head_kv));
  if (cfg.rope_type == "linear" || cfg.rope_type == "yarn") {
    w.set_string("llama.rope.scaling.type", cfg.rope_type);
    w.set_f32("llama.rope.scaling.factor", static_cast<float>(cfg.rope_factor));
    if (cfg.rope_type == "yarn") w.set_u32("llama.rope.scaling.original_context_length", static_cast<uint32_t>(cfg.rope_orig_ctx));
  }
  w.set_f32("llama.rope.freq_base", static_cast<float>(cfg.rope_theta));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(cfg.rms_eps));
  if (cfg.head_dim > 0) {
    w.set_u32("llama.attention.key_length", static_cast<uint32_t>(cfg.head_dim));
    w.set_u32("llama.attention.value_length", static_cast<uint32_t>(cfg.head_dim));
  }
  w.set_u32("general.file_type", file_type);
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(n_vocab));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(cfg.head_dim_eff));
  w.set_u32("general.quantization_version", 2);
}

void set_tokenizer(GgufStreamWriter& w, const GgufVocab& vocab) {
  w.set_string("tokenizer.ggml.model", vocab.model);
  w.set_string("tokenizer.ggml.pre", vocab.pre);
  w.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.set_i32_array("tokenizer.ggml.token_type", vocab.types);
  if (!vocab.merges.empty()) w.set_string_array("tokenizer.ggml.merges", vocab.merges);
  for (const auto& s : vocab.special_ids) w.set_u32("tokenizer.ggml." + s.first + "_token_id", static_cast<uint32_t>(s.second));
  for (const auto& f : vocab.add_flags) w.set_bool("tokenizer.ggml.add_" + f.first + "_token", f.second);
  if (vocab.has_chat_template) w.set_string("tokenizer.chat_template", vocab.chat_template);
}

// Tensor names as the full conversion normalises them (CODI / PEFT wrappers stripped).
std::string normalized_name(std::string n, bool* codi) {
  if (starts_with(n, "codi.")) {
    *codi = true;
    n = n.substr(5);
  }
  if (starts_with(n, "base_model.model.")) n = n.substr(17);
  size_t bl;
  while ((bl = n.find(".base_layer.")) != std::string::npos) n.erase(bl, 11);
  return n;
}

bool folder_has_weights(const std::string& dir) {
  for (const auto& n : list_directory(dir))
    if ((starts_with(n, "model") && ends_with(n, ".safetensors")) || (starts_with(n, "pytorch_model") && ends_with(n, ".bin"))) return true;
  return false;
}

// Tokenizer metadata without tensors. The row count follows the embedding when weights are present
// (so CODI's extra rows get the same names as in the full file), else config.json's vocab_size,
// else the tokenizer itself: a folder holding only tokenizer files is enough.
HfConvertSummary convert_vocab_only(const std::string& dir, const std::string& out, const HfConvertOptions& opt, const OutType& ot) {
  HfConvertSummary sum;
  sum.vocab_only = true;
  sum.type = opt.type;
  sum.out = out;
  std::string cfg_path = path_join(dir, "config.json");
  if (!file_exists(cfg_path)) cfg_path = path_join(dir, "base_config.json");
  const bool have_cfg = file_exists(cfg_path);
  LlamaConfig cfg;
  if (have_cfg) {
    cfg = read_llama_config(cfg_path);
    sum.config_file = cfg_path;
    sum.n_layer = cfg.n_layer;
    sum.n_embd = cfg.n_embd;
    sum.tied = cfg.tie_embeddings;
  }

  int64_t n_vocab = have_cfg && cfg.vocab_size > 0 ? cfg.vocab_size : -1;
  bool has_prj = false;
  if (!opt.weights.empty() || folder_has_weights(dir)) {
    const Checkpoint ck = load_checkpoint(dir, opt.weights);
    sum.source_format = ck.format;
    sum.source_files = ck.files;
    const TensorRef* embd = nullptr;
    for (const TensorRef& t : ck.tensors) {
      const std::string n = normalized_name(t.name, &sum.codi);
      if (starts_with(n, "prj.")) has_prj = true;
      if (n == "model.embed_tokens.weight") embd = &t;
    }
    if (!embd) throw ConvertError(dir + ": model.embed_tokens.weight is missing");
    if (embd->shape.size() != 2) throw ConvertError(embd->describe() + ": shape " + shape_str(embd->shape) + " is not 2-D");
    if (n_vocab > 0 && n_vocab != embd->shape[0])
      sum.warnings.push_back(cfg_path + ": vocab_size " + std::to_string(n_vocab) + " differs from the " + std::to_string(embd->shape[0]) +
                             " embedding rows; the GGUF uses the rows");
    n_vocab = embd->shape[0];
  }
  if (opt.latent == "codi" || opt.latent == "coconut")
    sum.warnings.push_back("a vocab-only conversion writes no latent-head sidecar (latent mode " + opt.latent + " ignored)");

  VocabOptions vo;
  vo.n_vocab = n_vocab;
  const bool codi_rows = opt.pad_names == "codi" || sum.codi || (opt.latent.empty() ? has_prj : opt.latent == "codi");
  vo.pad_names = codi_rows ? PadNames::Codi : opt.pad_names == "llama" ? PadNames::Llama : PadNames::Auto;
  vo.pre_override = opt.pre;
  const std::string tok_dir = opt.tokenizer_dir.empty() ? dir : opt.tokenizer_dir;
  GgufVocab vocab = read_hf_vocab(tok_dir, cfg, vo);
  sum.n_vocab = static_cast<int64_t>(vocab.tokens.size());
  sum.tokenizer_size = vocab.tokenizer_size;
  sum.pre = vocab.pre;
  for (auto& w : vocab.warnings) sum.warnings.push_back(w);

  GgufStreamWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "model");
  w.set_string("general.name", opt.name.empty() ? id_to_title(path_basename(dir)) : opt.name);
  if (have_cfg) set_llama_params(w, cfg, ot.file_type, sum.n_vocab);
  set_tokenizer(w, vocab);
  sum.bytes = w.write(out, [](size_t, std::vector<uint8_t>&) {});
  return sum;
}

}  // namespace

HfConvertSummary convert_hf(const std::string& dir, const std::string& out, const HfConvertOptions& opt) {
  HfConvertSummary sum;
  const OutType ot = parse_out_type(opt.type);
  sum.type = opt.type;
  sum.out = out;
  auto progress = [&](const std::string& stage, int64_t done, int64_t total, const std::string& item) {
    if (opt.progress) opt.progress(stage, done, total, item);
  };
  if (!is_directory(dir)) throw ConvertError(dir + ": not a directory (expected a Hugging Face model folder)");
  if (opt.latent != "" && opt.latent != "codi" && opt.latent != "coconut" && opt.latent != "none")
    throw ConvertError("latent mode '" + opt.latent + "' is not supported (codi, coconut, none)");
  if (opt.pad_names != "auto" && opt.pad_names != "codi" && opt.pad_names != "llama")
    throw ConvertError("pad naming '" + opt.pad_names + "' is not supported (auto, codi, llama)");
  if (opt.vocab_only) {
    progress("read", 0, 1, dir);
    HfConvertSummary vs = convert_vocab_only(dir, out, opt, ot);
    progress("read", 1, 1, dir);
    return vs;
  }

  progress("read", 0, 1, dir);
  // Config: config.json, or base_config.json in CODI folders.
  std::string cfg_path = path_join(dir, "config.json");
  if (!file_exists(cfg_path)) cfg_path = path_join(dir, "base_config.json");
  if (!file_exists(cfg_path)) throw ConvertError(dir + ": neither config.json nor base_config.json is present");
  const LlamaConfig cfg = read_llama_config(cfg_path);
  sum.config_file = cfg_path;
  sum.n_layer = cfg.n_layer;
  sum.n_embd = cfg.n_embd;

  const Checkpoint ck = load_checkpoint(dir, opt.weights);
  sum.source_format = ck.format;
  sum.source_files = ck.files;

  // Sort the checkpoint's tensors into base weights, LoRA pieces and the CODI projection.
  std::vector<std::pair<std::string, const TensorRef*>> base;  // normalized HF name, in file order
  std::map<std::string, LoraParts> lora;                      // module -> A/B
  std::map<std::string, const TensorRef*> prj;
  std::set<std::string> adapter_names;
  std::vector<std::string> unknown;
  for (const TensorRef& t : ck.tensors) {
    std::string n = t.name;
    if (starts_with(n, "codi.")) {
      sum.codi = true;
      n = n.substr(5);
    }
    if (starts_with(n, "base_model.model.")) n = n.substr(17);
    if (starts_with(n, "prj.")) {
      prj[n] = &t;
      continue;
    }
    if (n.find("lora_embedding_") != std::string::npos || n.find("lora_magnitude_vector") != std::string::npos)
      throw ConvertError(t.describe() + ": embedding LoRA and DoRA weights are not supported");
    size_t la = n.find(".lora_A."), lb = n.find(".lora_B.");
    if (la != std::string::npos || lb != std::string::npos) {
      size_t p = la != std::string::npos ? la : lb;
      std::string module = n.substr(0, p);
      std::string rest = n.substr(p + 8);  // "<adapter>.weight" or "weight"
      if (rest != "weight") {
        if (!ends_with(rest, ".weight")) throw ConvertError(t.describe() + ": unexpected LoRA tensor name");
        adapter_names.insert(rest.substr(0, rest.size() - 7));
      }
      (la != std::string::npos ? lora[module].a : lora[module].b) = &t;
      continue;
    }
    size_t bl;
    while ((bl = n.find(".base_layer.")) != std::string::npos) n.erase(bl, 11);
    if (ends_with(n, "rotary_emb.inv_freq") || ends_with(n, ".attention.masked_bias") || ends_with(n, ".attention.bias")) continue;
    if (hf_to_gguf_name(n).empty()) {
      unknown.push_back(t.name);
      continue;
    }
    base.emplace_back(n, &t);
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 8; ++i) list += (i ? ", " : "") + unknown[i];
    if (unknown.size() > 8) list += ", ... (" + std::to_string(unknown.size()) + " in all)";
    throw ConvertError(dir + ": tensors that are not part of a Llama model: " + list);
  }
  if (adapter_names.size() > 1) throw ConvertError(dir + ": the checkpoint holds LoRA weights of several adapters; merge needs exactly one");

  // Vocabulary size comes from the embedding rows (CODI adds rows past the config's vocab_size).
  const TensorRef* embd = nullptr;
  for (const auto& b : base)
    if (b.first == "model.embed_tokens.weight") embd = b.second;
  if (!embd) throw ConvertError(dir + ": model.embed_tokens.weight is missing");
  if (embd->shape.size() != 2 || embd->shape[1] != cfg.n_embd)
    throw ConvertError(embd->describe() + ": shape " + shape_str(embd->shape) + " does not fit hidden_size " + std::to_string(cfg.n_embd));
  const int64_t n_vocab = embd->shape[0];
  sum.n_vocab = n_vocab;
  if (cfg.vocab_size > 0 && cfg.vocab_size != n_vocab)
    sum.warnings.push_back(cfg_path + ": vocab_size " + std::to_string(cfg.vocab_size) + " differs from the " +
                           std::to_string(n_vocab) + " embedding rows; the GGUF uses the rows");

  // LoRA scale: alpha / r (alpha / sqrt(r) for rsLoRA).
  FolderFacts facts = read_folder_facts(dir);
  double alpha = 0;
  if (!lora.empty()) {
    int64_t r0 = -1;
    for (const auto& l : lora) {
      if (!l.second.a || !l.second.b) throw ConvertError(dir + ": LoRA module '" + l.first + "' lacks its lora_A or lora_B tensor");
      if (l.second.a->shape.size() != 2 || l.second.b->shape.size() != 2 || l.second.a->shape[0] != l.second.b->shape[1])
        throw ConvertError(dir + ": LoRA module '" + l.first + "': lora_A " + shape_str(l.second.a->shape) + " and lora_B " +
                           shape_str(l.second.b->shape) + " do not share a rank");
      if (r0 < 0) r0 = l.second.a->shape[0];
    }
    sum.lora_rank = r0;
    if (!std::isnan(opt.lora_alpha)) {
      alpha = opt.lora_alpha;
      sum.lora_alpha_source = "option";
    } else if (facts.has_alpha) {
      alpha = facts.alpha;
      sum.lora_alpha_source = facts.alpha_source;
      if (facts.r > 0 && facts.r != r0)
        throw ConvertError(path_join(dir, facts.alpha_source) + ": states LoRA r " + std::to_string(facts.r) + " but the lora_A tensors have rank " +
                           std::to_string(r0));
    } else {
      throw ConvertError(dir + ": the checkpoint holds LoRA weights (rank " + std::to_string(r0) +
                         ") but no LoRA alpha is known: pass --lora-alpha (bcywinski/codi_llama1b-answer_only was trained with "
                         "r 128, alpha 32), or put a README.json ({\"lora\": {\"alpha\": ...}}) or adapter_config.json next to the weights");
    }
    if (!(alpha > 0) || !std::isfinite(alpha)) throw ConvertError(dir + ": LoRA alpha must be a positive number");
    sum.lora_alpha = alpha;
    sum.rslora = facts.rslora;
  }

  // Latent mode.
  std::string latent = opt.latent;
  if (latent.empty() && (facts.latent_mode == "codi" || facts.latent_mode == "coconut")) latent = facts.latent_mode;
  if (latent.empty()) latent = prj.empty() ? "none" : "codi";
  if (latent == "codi" && prj.empty())
    throw ConvertError(dir + ": --latent codi needs the CODI projection (prj.1.*, prj.3.*, prj.ln.*) in the checkpoint");
  if (!prj.empty() && latent != "codi")
    sum.warnings.push_back("the CODI projection prj.* is not written (latent mode " + latent + ")");

  // Vocabulary.
  VocabOptions vo;
  vo.n_vocab = n_vocab;
  vo.pad_names = opt.pad_names == "codi" || sum.codi || latent == "codi" ? PadNames::Codi
                 : opt.pad_names == "llama"                              ? PadNames::Llama
                                                                         : PadNames::Auto;
  vo.pre_override = opt.pre;
  const std::string tok_dir = opt.tokenizer_dir.empty() ? dir : opt.tokenizer_dir;
  GgufVocab vocab = read_hf_vocab(tok_dir, cfg, vo);
  sum.tokenizer_size = vocab.tokenizer_size;
  sum.pre = vocab.pre;
  for (auto& w : vocab.warnings) sum.warnings.push_back(w);

  // Tensor plan, in llama.cpp's order: generated tensors first, then the checkpoint's.
  std::vector<PlanItem> plan;
  if (cfg.rope_type == "llama3") {
    PlanItem p;
    p.name = "rope_freqs.weight";
    p.fixed = llama3_rope_factors(cfg);
    p.ne = {static_cast<int64_t>(p.fixed.size())};
    plan.push_back(std::move(p));
  }
  const int64_t hd = cfg.head_dim_eff;
  std::set<std::string> have;
  std::set<std::string> used_lora;
  struct Unmerged {
    std::string weight;  // GGUF name of the base weight
    const LoraParts* lora;
    int64_t permute_heads;
  };
  std::vector<Unmerged> unmerged;
  bool has_lm_head = false;
  for (const auto& b : base) {
    const std::string& hf = b.first;
    const TensorRef* t = b.second;
    int layer = -1;
    std::string g = hf_to_gguf_name(hf, &layer);
    if (g == "output.weight") {
      has_lm_head = true;
      if (cfg.tie_embeddings) continue;  // llama.cpp reads token_embd for a tied output
    }
    if (layer >= cfg.n_layer) throw ConvertError(t->describe() + ": layer " + std::to_string(layer) + " but num_hidden_layers is " + std::to_string(cfg.n_layer));
    // Expected numpy shape.
    std::vector<int64_t> want;
    const bool bias = ends_with(g, ".bias");
    auto mat = [&](int64_t rows, int64_t cols) { want = bias ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols}; };
    if (g == "token_embd.weight" || g == "output.weight") mat(n_vocab, cfg.n_embd);
    else if (ends_with(g, "_norm.weight")) want = {cfg.n_embd};
    else if (g.find(".attn_q.") != std::string::npos) mat(cfg.n_head * hd, cfg.n_embd);
    else if (g.find(".attn_k.") != std::string::npos || g.find(".attn_v.") != std::string::npos) mat(cfg.n_head_kv * hd, cfg.n_embd);
    else if (g.find(".attn_output.") != std::string::npos) mat(cfg.n_embd, cfg.n_head * hd);
    else if (g.find(".ffn_gate.") != std::string::npos || g.find(".ffn_up.") != std::string::npos) mat(cfg.n_ff, cfg.n_embd);
    else if (g.find(".ffn_down.") != std::string::npos) mat(cfg.n_embd, cfg.n_ff);
    if (bias && g.find(".attn_") == std::string::npos) throw ConvertError(t->describe() + ": biases are only supported on attention projections");
    if (t->shape != want)
      throw ConvertError(t->describe() + ": shape " + shape_str(t->shape) + " does not match the config (expected " + shape_str(want) + ")");
    PlanItem p;
    p.name = g;
    p.src = t;
    p.ne.assign(want.rbegin(), want.rend());
    const std::string module = hf.substr(0, hf.rfind('.'));
    if (!bias) {
      auto it = lora.find(module);
      if (opt.no_merge && it != lora.end()) {
        unmerged.push_back({g, &it->second, 0});
        if (g.find(".attn_q.") != std::string::npos) unmerged.back().permute_heads = cfg.n_head;
        if (g.find(".attn_k.") != std::string::npos) unmerged.back().permute_heads = cfg.n_head_kv;
        used_lora.insert(module);
        it = lora.end();
      }
      if (it != lora.end()) {
        const LoraParts& lp = it->second;
        if (lp.a->shape[1] != want[1] || lp.b->shape[0] != want[0])
          throw ConvertError(lp.a->describe() + ": LoRA shapes lora_A " + shape_str(lp.a->shape) + " / lora_B " + shape_str(lp.b->shape) +
                             " do not fit the base weight " + shape_str(want));
        p.lora = lp;
        const double r = static_cast<double>(lp.a->shape[0]);
        p.lora_scale = facts.rslora ? alpha / std::sqrt(r) : alpha / r;
        used_lora.insert(module);
      }
    }
    if (g.find(".attn_q.") != std::string::npos) p.permute_heads = cfg.n_head;
    if (g.find(".attn_k.") != std::string::npos) p.permute_heads = cfg.n_head_kv;
    have.insert(g);
    plan.push_back(std::move(p));
  }
  for (const auto& l : lora)
    if (!used_lora.count(l.first)) throw ConvertError(dir + ": LoRA weights for '" + l.first + "' have no base weight to merge into");
  sum.lora_merged = static_cast<int64_t>(used_lora.size() - unmerged.size());
  // Completeness: every block needs its nine tensors.
  std::vector<std::string> missing;
  for (const char* g : {"token_embd.weight", "output_norm.weight"})
    if (!have.count(g)) missing.push_back(g);
  for (int64_t l = 0; l < cfg.n_layer; ++l)
    for (const char* w : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"}) {
      std::string g = "blk." + std::to_string(l) + "." + w + ".weight";
      if (!have.count(g)) missing.push_back(g);
    }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 6; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 6) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw ConvertError(dir + ": the checkpoint lacks tensors the config requires: " + list);
  }
  sum.tied = !have.count("output.weight");
  if (!cfg.tie_embeddings && !has_lm_head)
    sum.warnings.push_back(cfg_path + ": tie_word_embeddings is false but there is no lm_head.weight; the output uses token_embd");

  // Tensor types, as llama.cpp's prepare_tensors picks them.
  for (auto& p : plan) {
    const bool one_d = p.ne.size() <= 1;
    if (one_d || ends_with(p.name, "_norm.weight") || !ends_with(p.name, ".weight")) {
      p.type = GgmlType::F32;
    } else {
      p.type = ot.type;
      if (p.type == GgmlType::Q8_0 && p.ne[0] % QK8_0 != 0) {
        p.type = GgmlType::F16;  // the reference converter's fallback for rows that do not fill blocks
        sum.warnings.push_back(p.name + ": row length " + std::to_string(p.ne[0]) + " is not a multiple of 32, written as F16");
      }
    }
    int64_t n = 1;
    for (int64_t d : p.ne) n *= d;
    sum.n_params += static_cast<uint64_t>(n);
  }

  // Metadata, in the reference converter's order.
  GgufStreamWriter w;
  const std::string name = opt.name.empty() ? id_to_title(path_basename(dir)) : opt.name;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "model");
  w.set_string("general.name", name);
  w.set_string("general.size_label", size_label(sum.n_params));
  set_llama_params(w, cfg, ot.file_type, n_vocab);
  set_tokenizer(w, vocab);

  for (const auto& p : plan) w.add_tensor(p.name, p.type, p.ne);
  sum.n_tensors = static_cast<int64_t>(plan.size());
  const int threads = opt.threads > 0 ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const int64_t total = static_cast<int64_t>(plan.size());
  sum.bytes = w.write(out, [&](size_t i, std::vector<uint8_t>& bytes) {
    const PlanItem& p = plan[i];
    progress("tensor", static_cast<int64_t>(i), total, p.name);
    std::vector<float> data = p.src ? p.src->to_f32() : p.fixed;
    const int64_t cols = p.ne[0];
    const int64_t rows = p.ne.size() > 1 ? p.ne[1] : 1;
    if (p.lora.a) {
      const int64_t r = p.lora.a->shape[0];
      merge_lora(data, p.lora.a->to_f32(), p.lora.b->to_f32(), rows, cols, r, p.lora_scale, threads);
    }
    if (p.permute_heads > 0) {
      if (p.ne.size() > 1)
        permute_qk_rows(data, rows, cols, p.permute_heads, false);
      else
        permute_qk_rows(data, cols, 1, p.permute_heads, false);  // a bias: one value per row
    }
    bytes = encode(p.type, data, cols);
  });
  progress("tensor", total, total, "");

  // The unmerged LoRA as a llama.cpp adapter: lora_a ne [n_in, r], lora_b ne [r, n_out] with the q/k
  // rows in the base weight's (permuted) order; alpha such that alpha / r is the checkpoint's scale.
  if (!unmerged.empty()) {
    const double r = static_cast<double>(unmerged.front().lora->a->shape[0]);
    const double scale = facts.rslora ? alpha / std::sqrt(r) : alpha / r;
    GgufWriter aw;
    aw.set_string("general.architecture", "llama");
    aw.set_string("general.type", "adapter");
    aw.set_string("general.name", name + " LoRA");
    aw.set_string("adapter.type", "lora");
    aw.set_f32("adapter.lora.alpha", static_cast<float>(scale * r));
    aw.set_u32("lro.adapter.head_count", static_cast<uint32_t>(cfg.n_head));
    aw.set_u32("lro.adapter.head_count_kv", static_cast<uint32_t>(cfg.n_head_kv));
    if (facts.rslora) {
      aw.set_bool("lro.adapter.use_rslora", true);
      aw.set_f32("lro.adapter.peft_alpha", static_cast<float>(alpha));
    }
    auto bytes_of = [](const std::vector<float>& v) {
      std::vector<uint8_t> b(v.size() * sizeof(float));
      std::memcpy(b.data(), v.data(), b.size());
      return b;
    };
    for (const auto& u : unmerged) {
      if (static_cast<double>(u.lora->a->shape[0]) != r)
        throw ConvertError(u.lora->a->describe() + ": LoRA ranks differ between modules; one GGUF adapter needs one rank");
      const int64_t rank = u.lora->a->shape[0], n_in = u.lora->a->shape[1], n_out = u.lora->b->shape[0];
      std::vector<float> b = u.lora->b->to_f32();
      if (u.permute_heads > 0) permute_qk_rows(b, n_out, rank, u.permute_heads, false);
      aw.add_tensor(u.weight + ".lora_a", GgmlType::F32, {n_in, rank}, bytes_of(u.lora->a->to_f32()));
      aw.add_tensor(u.weight + ".lora_b", GgmlType::F32, {rank, n_out}, bytes_of(b));
    }
    sum.lora_out = opt.lora_out.empty() ? (ends_with(out, ".gguf") ? out.substr(0, out.size() - 5) : out) + ".lora.gguf" : opt.lora_out;
    progress("lora", 0, 1, sum.lora_out);
    aw.write(sum.lora_out);
    progress("lora", 1, 1, sum.lora_out);
  }

  // Latent-head sidecar.
  if (latent == "codi" || latent == "coconut") {
    LatentSettings s;
    s.mode = latent;
    const int64_t V = vocab.tokenizer_size;
    s.steps = opt.latent_steps >= 0 ? opt.latent_steps : facts.num_latent >= 0 ? facts.num_latent : 6;
    if (latent == "codi") {
      s.pad_id = static_cast<int32_t>(facts.pad >= 0 ? facts.pad : V);
      s.bot_id = static_cast<int32_t>(facts.bot >= 0 ? facts.bot : V + 1);
      s.eot_id = static_cast<int32_t>(facts.eot >= 0 ? facts.eot : V + 2);
      s.prompt_format = facts.prompt_format.empty() ? "codi-answer-only" : facts.prompt_format;
    } else {
      int64_t bot = vocab.find("<|start-latent|>"), eot = vocab.find("<|end-latent|>"), lat = vocab.find("<|latent|>");
      if (bot < 0 && vocab.codi_names) {
        bot = V + 1;
        eot = V + 2;
        lat = V;
      }
      if (facts.bot >= 0) bot = facts.bot;  // README.json (export-hf) states them
      if (facts.eot >= 0) eot = facts.eot;
      if (facts.pad >= 0) lat = facts.pad;
      s.bot_id = static_cast<int32_t>(bot);
      s.eot_id = static_cast<int32_t>(eot);
      s.pad_id = static_cast<int32_t>(lat);
      s.prompt_format = facts.prompt_format.empty() ? "plain" : facts.prompt_format;
      s.scale = static_cast<float>(facts.latent_scale);
      if (bot < 0) sum.warnings.push_back("coconut sidecar: no <|start-latent|> / <|end-latent|> tokens found; bot/eot ids are -1");
    }
    for (int32_t id : {s.pad_id, s.bot_id, s.eot_id}) {
      if (id >= n_vocab) throw ConvertError(dir + ": latent special id " + std::to_string(id) + " is outside the " + std::to_string(n_vocab) + "-row vocabulary");
      if (id >= 0) s.exclude_ids.push_back(id);
    }
    s.ln_eps = 1e-5f;
    std::string lpath = opt.latent_out;
    if (lpath.empty()) lpath = (ends_with(out, ".gguf") ? out.substr(0, out.size() - 5) : out) + ".latent.gguf";
    progress("latent", 0, 1, lpath);
    write_latent_sidecar(lpath, name, s, prj, cfg.n_embd, sum);
    sum.latent_mode = latent;
    sum.bot_id = s.bot_id;
    sum.eot_id = s.eot_id;
    sum.pad_id = s.pad_id;
    sum.latent_steps = s.steps;
    progress("latent", 1, 1, lpath);
  }
  return sum;
}

}  // namespace convert
}  // namespace lro
