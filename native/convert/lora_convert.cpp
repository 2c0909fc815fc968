#include "convert/lora_convert.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "convert/checkpoint.h"
#include "convert/gguf_stream.h"
#include "convert/hf_config.h"
#include "convert/json.h"
#include "convert/llama_names.h"
#include "convert/safetensors.h"
#include "core/gguf.h"
#include "quant/quants.h"

namespace lro {
namespace convert {

namespace {

// Extra GGUF keys that make a converted adapter self-contained for the way back. llama.cpp
// ignores keys it does not know.
constexpr const char* kKeyHeads = "lro.adapter.head_count";
constexpr const char* kKeyHeadsKv = "lro.adapter.head_count_kv";
constexpr const char* kKeyRslora = "lro.adapter.use_rslora";
constexpr const char* kKeyPeftAlpha = "lro.adapter.peft_alpha";
constexpr const char* kKeyBaseModel = "lro.adapter.base_model";

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

struct Heads {
  int64_t n_head = 0, n_head_kv = 0;
  std::string source;
  bool have_shapes = false;
  int64_t n_layer = 0, n_embd = 0, n_ff = 0, head_dim = 0, n_vocab = -1;
};

Heads heads_from_path(const std::string& p) {
  Heads h;
  if (ends_with(p, ".gguf")) {
    auto f = GgufFile::open(p);
    std::string arch = f->get_string("general.architecture", "llama");
    h.n_head = f->get_int(arch + ".attention.head_count", 0);
    h.n_head_kv = f->get_int(arch + ".attention.head_count_kv", h.n_head);
    if (h.n_head <= 0) throw ConvertError(p + ": '" + arch + ".attention.head_count' is missing (not a model GGUF?)");
    h.source = p;
    return h;
  }
  std::string cfg = p;
  if (is_directory(p)) {
    cfg = path_join(p, "config.json");
    if (!file_exists(cfg)) cfg = path_join(p, "base_config.json");
    if (!file_exists(cfg)) throw ConvertError(p + ": no config.json or base_config.json in the base model folder");
  }
  LlamaConfig c = read_llama_config(cfg);
  h.n_head = c.n_head;
  h.n_head_kv = c.n_head_kv;
  h.source = cfg;
  h.have_shapes = true;
  h.n_layer = c.n_layer;
  h.n_embd = c.n_embd;
  h.n_ff = c.n_ff;
  h.head_dim = c.head_dim_eff;
  h.n_vocab = c.vocab_size;
  return h;
}

// Looks for the base model the adapter names, next to the adapter folder.
std::string find_base(const std::string& adapter_dir, const std::string& base_name) {
  if (base_name.empty()) return "";
  std::vector<std::string> candidates;
  if (base_name[0] == '/') candidates.push_back(base_name);
  candidates.push_back(path_join(path_dirname(adapter_dir), base_name));
  candidates.push_back(path_join(adapter_dir, base_name));
  for (const auto& c : candidates)
    if (is_directory(c) && (file_exists(path_join(c, "config.json")) || file_exists(path_join(c, "base_config.json")))) return c;
  return "";
}

GgmlType parse_type(const std::string& t) {
  if (t == "f32") return GgmlType::F32;
  if (t == "f16") return GgmlType::F16;
  if (t == "bf16") return GgmlType::BF16;
  if (t == "q8_0") return GgmlType::Q8_0;
  throw ConvertError("adapter output type '" + t + "' is not supported (f32, f16, bf16, q8_0)");
}

// Moves whole rows; works on raw bytes, so F32/F16/BF16 data round-trips bit for bit.
void permute_rows_bytes(std::vector<uint8_t>& data, int64_t rows, int64_t n_heads, bool inverse) {
  const size_t row_bytes = data.size() / static_cast<size_t>(rows);
  if (n_heads <= 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0)
    throw ConvertError("Q/K permutation: " + std::to_string(rows) + " rows do not split into " + std::to_string(n_heads) + " heads of even size");
  const int64_t hd = rows / n_heads, half = hd / 2;
  std::vector<uint8_t> out(data.size());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        int64_t hf_row = h * hd + s * half + j, gg_row = h * hd + 2 * j + s;
        int64_t from = inverse ? gg_row : hf_row, to = inverse ? hf_row : gg_row;
        std::memcpy(out.data() + static_cast<size_t>(to) * row_bytes, data.data() + static_cast<size_t>(from) * row_bytes, row_bytes);
      }
  data.swap(out);
}

json::Value number_json(double x) {
  if (std::floor(x) == x && std::fabs(x) < 1e15) return json::Value::make_int(static_cast<int64_t>(x));
  return json::Value::make_number(x);
}

// ---------------------------------------------------------------- PEFT -> GGUF

AdapterConvertSummary peft_to_gguf(const std::string& in, const std::string& out, const AdapterConvertOptions& opt) {
  AdapterConvertSummary sum;
  sum.direction = "peft->gguf";
  sum.out = out;
  const GgmlType otype = parse_type(opt.type);
  std::string dir = in, weights;
  if (is_directory(in)) {
    weights = path_join(in, "adapter_model.safetensors");
    if (!file_exists(weights)) weights = path_join(in, "adapter_model.bin");
    if (!file_exists(weights)) throw ConvertError(in + ": no adapter_model.safetensors (or adapter_model.bin) in the adapter folder");
  } else {
    weights = in;
    dir = path_dirname(in);
  }
  const std::string cfg_path = path_join(dir, "adapter_config.json");
  if (!file_exists(cfg_path)) throw ConvertError(cfg_path + ": missing (a PEFT adapter needs its adapter_config.json for r and lora_alpha)");
  const json::Value cfg = json::parse_file(cfg_path);
  if (!cfg.is_object()) throw ConvertError(cfg_path + ": not a JSON object");
  const std::string peft_type = json::get_string_or(cfg, "peft_type", "LORA", cfg_path);
  if (peft_type != "LORA") throw ConvertError(cfg_path + ": peft_type is '" + peft_type + "'; only LORA adapters convert");
  if (json::get_bool_or(cfg, "use_dora", false, cfg_path)) throw ConvertError(cfg_path + ": DoRA adapters (use_dora true) have no GGUF form");
  if (json::get_bool_or(cfg, "fan_in_fan_out", false, cfg_path))
    throw ConvertError(cfg_path + ": fan_in_fan_out true (Conv1D layouts) is not supported for Llama adapters");
  if (const json::Value* ap = cfg.find("alpha_pattern"); ap && ap->is_object() && !ap->members.empty())
    throw ConvertError(cfg_path + ": alpha_pattern gives per-module alphas; a GGUF adapter has a single alpha");
  if (const json::Value* m = cfg.find("modules_to_save"); m && m->is_array() && !m->items.empty())
    sum.warnings.push_back(cfg_path + ": modules_to_save (fully trained modules) are not part of a LoRA GGUF and are dropped");
  const std::string bias = json::get_string_or(cfg, "bias", "none", cfg_path);
  if (bias != "none") throw ConvertError(cfg_path + ": bias '" + bias + "' (trained biases) has no GGUF LoRA form");
  const double alpha = json::get_number_or(cfg, "lora_alpha", std::nan(""), cfg_path);
  if (std::isnan(alpha)) throw ConvertError(cfg_path + ": 'lora_alpha' is missing");
  const int64_t r_cfg = json::get_int_or(cfg, "r", -1, cfg_path);
  sum.rslora = json::get_bool_or(cfg, "use_rslora", false, cfg_path);
  sum.alpha = alpha;
  const std::string base_name = json::get_string_or(cfg, "base_model_name_or_path", "", cfg_path);

  std::string fmt;
  std::vector<TensorRef> ts = load_weights_file(weights, &fmt);
  struct Item {
    const TensorRef* t;
    std::string gguf;   // <weight>.lora_a / .lora_b
    std::string module; // q_proj, ...
    bool is_b;
    bool qk;            // q or k projection
    bool is_k;
    int layer;
  };
  std::vector<Item> items;
  std::map<std::string, int> pair_count;
  for (const auto& t : ts) {
    std::string n = t.name;
    if (starts_with(n, "base_model.model.")) n = n.substr(17);
    size_t la = n.find(".lora_A."), lb = n.find(".lora_B.");
    if (la == std::string::npos && lb == std::string::npos)
      throw ConvertError(t.describe() + ": not a LoRA tensor (lora_A / lora_B); embedding LoRA, DoRA and saved modules are not supported");
    const bool is_b = la == std::string::npos;
    const size_t p = is_b ? lb : la;
    const std::string rest = n.substr(p + 8);
    if (rest != "weight" && !ends_with(rest, ".weight"))
      throw ConvertError(t.describe() + ": LoRA " + (rest == "bias" || ends_with(rest, ".bias") ? "biases are" : "tensor name is") + " not supported");
    const std::string module = n.substr(0, p);
    int layer = -1;
    const std::string g = hf_to_gguf_name(module + ".weight", &layer);
    if (g.empty() || starts_with(g, "token_embd") || ends_with(g, "_norm.weight"))
      throw ConvertError(t.describe() + ": module '" + module + "' has no LoRA slot in a llama.cpp adapter");
    if (t.shape.size() != 2) throw ConvertError(t.describe() + ": LoRA tensors must be 2-D, got " + shape_str(t.shape));
    Item it{&t, g + (is_b ? ".lora_b" : ".lora_a"), module.substr(module.rfind('.') + 1), is_b,
            g.find(".attn_q.") != std::string::npos || g.find(".attn_k.") != std::string::npos,
            g.find(".attn_k.") != std::string::npos, layer};
    pair_count[g] += is_b ? 2 : 1;
    items.push_back(it);
  }
  if (items.empty()) throw ConvertError(weights + ": holds no LoRA tensors");
  for (const auto& pc : pair_count)
    if (pc.second != 3) throw ConvertError(weights + ": '" + pc.first + "' has " + (pc.second == 1 ? "lora_A without lora_B" : pc.second == 2 ? "lora_B without lora_A" : "duplicate LoRA tensors"));
  // Ranks: lora_A rows = lora_B columns.
  std::map<std::string, int64_t> rank_of;
  for (const auto& it : items)
    if (!it.is_b) rank_of[it.gguf.substr(0, it.gguf.size() - 7)] = it.t->shape[0];
  for (const auto& it : items)
    if (it.is_b && it.t->shape[1] != rank_of[it.gguf.substr(0, it.gguf.size() - 7)])
      throw ConvertError(it.t->describe() + ": lora_B " + shape_str(it.t->shape) + " does not match its lora_A rank " +
                         std::to_string(rank_of[it.gguf.substr(0, it.gguf.size() - 7)]));
  for (const auto& rk : rank_of) sum.rank = std::max(sum.rank, rk.second);
  if (r_cfg > 0 && sum.rank != r_cfg) {
    const json::Value* rp = cfg.find("rank_pattern");
    if (!rp || !rp->is_object() || rp->members.empty())
      throw ConvertError(cfg_path + ": r is " + std::to_string(r_cfg) + " but the tensors have rank " + std::to_string(sum.rank));
  }
  bool uniform = true;
  for (const auto& rk : rank_of) uniform &= rk.second == sum.rank;
  if (sum.rslora && !uniform)
    throw ConvertError(cfg_path + ": rsLoRA with per-module ranks cannot be expressed with one GGUF alpha");

  // Head counts for the Q/K permutation, and shapes to check against when a config is at hand.
  bool need_heads = false;
  for (const auto& it : items) need_heads |= it.qk && it.is_b;
  Heads heads;
  if (!opt.base_config.empty()) {
    heads = heads_from_path(opt.base_config);
  } else if (std::string b = find_base(dir, base_name); !b.empty()) {
    heads = heads_from_path(b);
  } else if (need_heads) {
    throw ConvertError(in + ": the adapter has q_proj/k_proj LoRA weights, whose lora_B rows must be permuted like the base "
                       "weights, which needs the base model's head counts: pass the base config (a config.json, its folder, or the model GGUF)" +
                       (base_name.empty() ? std::string() : " (base_model_name_or_path '" + base_name + "' was not found next to the adapter)"));
  }
  sum.base_config = heads.source;

  GgufStreamWriter w;
  const std::string name = !opt.name.empty() ? opt.name : id_to_title(path_basename(dir));
  const double gguf_alpha = sum.rslora ? alpha * std::sqrt(static_cast<double>(sum.rank)) : alpha;
  sum.gguf_alpha = gguf_alpha;
  if (sum.rslora)
    sum.warnings.push_back("rsLoRA: scale alpha/sqrt(r) = " + std::to_string(alpha / std::sqrt(static_cast<double>(sum.rank))) +
                           " is written as adapter.lora.alpha = alpha*sqrt(r) = " + std::to_string(gguf_alpha) +
                           " (llama.cpp applies alpha/r)");
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", "lora");
  w.set_string("general.name", name);
  w.set_f32("adapter.lora.alpha", static_cast<float>(gguf_alpha));
  w.set_u32("general.quantization_version", 2);
  if (heads.n_head > 0) {
    w.set_u32(kKeyHeads, static_cast<uint32_t>(heads.n_head));
    w.set_u32(kKeyHeadsKv, static_cast<uint32_t>(heads.n_head_kv));
  }
  if (sum.rslora) {
    w.set_bool(kKeyRslora, true);
    w.set_f32(kKeyPeftAlpha, static_cast<float>(alpha));
  }
  if (!base_name.empty()) w.set_string(kKeyBaseModel, base_name);

  std::set<std::string> targets;
  for (const auto& it : items) {
    const auto& s = it.t->shape;
    if (heads.have_shapes && it.layer >= heads.n_layer)
      throw ConvertError(it.t->describe() + ": layer " + std::to_string(it.layer) + " but the base model has " + std::to_string(heads.n_layer));
    if (heads.have_shapes) {
      // (out, in) of the base weight this pair attaches to.
      int64_t q = heads.n_head * heads.head_dim, kv = heads.n_head_kv * heads.head_dim, o = -1, i = -1;
      const std::string& m = it.module;
      if (m == "q_proj") o = q, i = heads.n_embd;
      else if (m == "k_proj" || m == "v_proj") o = kv, i = heads.n_embd;
      else if (m == "o_proj") o = heads.n_embd, i = q;
      else if (m == "gate_proj" || m == "up_proj") o = heads.n_ff, i = heads.n_embd;
      else if (m == "down_proj") o = heads.n_embd, i = heads.n_ff;
      if (o > 0 && ((it.is_b && s[0] != o) || (!it.is_b && s[1] != i)))
        throw ConvertError(it.t->describe() + ": shape " + shape_str(s) + " does not fit the base weight (" + std::to_string(o) + " x " +
                           std::to_string(i) + ") of " + heads.source);
    }
    GgmlType tt = otype;
    if (tt == GgmlType::Q8_0 && s[1] % QK8_0 != 0) tt = GgmlType::F16;
    w.add_tensor(it.gguf, tt, {s[1], s[0]});
    targets.insert(it.module);
    if (it.is_b) ++sum.n_pairs;
    if (it.is_b && it.qk) ++sum.n_permuted;
  }
  sum.targets.assign(targets.begin(), targets.end());
  const int64_t total = static_cast<int64_t>(items.size());
  w.write(out, [&](size_t i, std::vector<uint8_t>& bytes) {
    const Item& it = items[i];
    if (opt.progress) opt.progress("tensor", static_cast<int64_t>(i), total, it.gguf);
    std::vector<float> v = it.t->to_f32();
    const int64_t rows = it.t->shape[0], cols = it.t->shape[1];
    if (it.is_b && it.qk) permute_qk_rows(v, rows, cols, it.is_k ? heads.n_head_kv : heads.n_head, false);
    const GgmlType tt = w.tensor_type(i);
    bytes.resize(row_size(tt, cols) * static_cast<size_t>(rows));
    if (tt == GgmlType::F32) {
      std::memcpy(bytes.data(), v.data(), bytes.size());
    } else {
      for (int64_t r = 0; r < rows; ++r) quantize_row(tt, v.data() + r * cols, bytes.data() + static_cast<size_t>(r) * row_size(tt, cols), cols);
    }
  });
  if (opt.progress) opt.progress("tensor", total, total, "");
  return sum;
}

// ---------------------------------------------------------------- GGUF -> PEFT

AdapterConvertSummary gguf_to_peft(const std::string& in, const std::string& out, const AdapterConvertOptions& opt) {
  AdapterConvertSummary sum;
  sum.direction = "gguf->peft";
  sum.out = out;
  auto f = GgufFile::open(in);
  const std::string type = f->get_string("general.type", "");
  if (type != "adapter") throw ConvertError(in + ": general.type is '" + type + "', expected 'adapter' (a llama.cpp LoRA adapter)");
  const std::string atype = f->get_string("adapter.type", "");
  if (atype != "lora") throw ConvertError(in + ": adapter.type is '" + atype + "', expected 'lora'");
  if (!f->find("adapter.lora.alpha")) throw ConvertError(in + ": 'adapter.lora.alpha' is missing");
  sum.gguf_alpha = f->get_float("adapter.lora.alpha", 0);
  sum.rslora = f->find(kKeyRslora) && f->get(kKeyRslora).as_bool(kKeyRslora);

  struct Pair {
    const GgufTensorInfo* a = nullptr;
    const GgufTensorInfo* b = nullptr;
  };
  std::vector<std::string> order;
  std::map<std::string, Pair> pairs;
  for (const auto& t : f->tensors()) {
    const bool is_a = ends_with(t.name, ".lora_a"), is_b = ends_with(t.name, ".lora_b");
    if (!is_a && !is_b) throw ConvertError(in + ": tensor '" + t.name + "' is neither <weight>.lora_a nor <weight>.lora_b");
    const std::string wname = t.name.substr(0, t.name.size() - 7);
    if (gguf_to_hf_name(wname).empty()) throw ConvertError(in + ": tensor '" + t.name + "' names no Llama weight ('" + wname + "')");
    if (t.n_dims != 2) throw ConvertError(in + ": tensor '" + t.name + "' must be 2-D");
    if (!traits(t.type).supported) throw ConvertError(in + ": tensor '" + t.name + "' has an unsupported type");
    if (!pairs.count(wname)) order.push_back(wname);
    Pair& p = pairs[wname];
    (is_a ? p.a : p.b) = &t;
  }
  if (pairs.empty()) throw ConvertError(in + ": the adapter holds no tensors");

  bool need_heads = false;
  for (const auto& p : pairs) need_heads |= p.first.find(".attn_q.") != std::string::npos || p.first.find(".attn_k.") != std::string::npos;
  Heads heads;
  if (!opt.base_config.empty()) {
    heads = heads_from_path(opt.base_config);
  } else if (f->find(kKeyHeads)) {
    heads.n_head = f->get_int(kKeyHeads, 0);
    heads.n_head_kv = f->get_int(kKeyHeadsKv, heads.n_head);
    heads.source = in + " (" + kKeyHeads + ")";
  } else if (need_heads) {
    throw ConvertError(in + ": the adapter has attn_q/attn_k LoRA weights whose lora_b rows must be un-permuted, which needs "
                       "the base model's head counts: pass the base config (a config.json, its folder, or the model GGUF)");
  }
  if (need_heads) sum.base_config = heads.source;

  std::vector<SafetensorsOut> outs;
  std::map<int64_t, int> rank_hist;
  std::map<std::string, int64_t> ranks;
  std::set<std::string> targets;
  int64_t done = 0;
  for (const auto& wname : order) {
    const Pair& p = pairs[wname];
    if (!p.a || !p.b) throw ConvertError(in + ": '" + wname + "' has only one of lora_a / lora_b");
    const int64_t r = p.a->ne[1];
    if (p.b->ne[0] != r)
      throw ConvertError(in + ": '" + wname + "' lora_a ne " + shape_str({p.a->ne[0], p.a->ne[1]}) + " and lora_b ne " +
                         shape_str({p.b->ne[0], p.b->ne[1]}) + " do not share a rank");
    const std::string module = gguf_to_hf_name(wname);
    const std::string mod = module.substr(0, module.size() - 7);  // drop ".weight"
    targets.insert(mod.substr(mod.rfind('.') + 1));
    ranks[mod] = r;
    rank_hist[r]++;
    const bool qk = wname.find(".attn_q.") != std::string::npos || wname.find(".attn_k.") != std::string::npos;
    const bool is_k = wname.find(".attn_k.") != std::string::npos;
    for (const GgufTensorInfo* t : {p.a, p.b}) {
      if (opt.progress) opt.progress("tensor", done++, static_cast<int64_t>(2 * order.size()), t->name);
      SafetensorsOut o;
      o.name = "base_model.model." + mod + (t == p.a ? ".lora_A.weight" : ".lora_B.weight");
      o.shape = {t->ne[1], t->ne[0]};
      if (t->type == GgmlType::F32 || t->type == GgmlType::F16 || t->type == GgmlType::BF16) {
        o.dtype = t->type == GgmlType::F32 ? DType::F32 : t->type == GgmlType::F16 ? DType::F16 : DType::BF16;
        o.bytes.assign(t->data, t->data + t->nbytes);
      } else {
        o.dtype = DType::F32;
        std::vector<float> v(static_cast<size_t>(t->nelements()));
        for (int64_t row = 0; row < t->ne[1]; ++row)
          dequantize_row(t->type, t->data + static_cast<size_t>(row) * row_size(t->type, t->ne[0]), v.data() + row * t->ne[0], t->ne[0]);
        o.bytes.resize(v.size() * 4);
        std::memcpy(o.bytes.data(), v.data(), o.bytes.size());
      }
      if (t == p.b && qk) {
        permute_rows_bytes(o.bytes, o.shape[0], is_k ? heads.n_head_kv : heads.n_head, true);
        ++sum.n_permuted;
      }
      outs.push_back(std::move(o));
    }
    ++sum.n_pairs;
  }
  // r: the most common rank; others go to rank_pattern as PEFT records them.
  int64_t r = 0;
  int best = -1;
  for (const auto& h : rank_hist)
    if (h.second > best) best = h.second, r = h.first;
  for (const auto& h : rank_hist) sum.rank = std::max(sum.rank, h.first);
  double alpha = sum.gguf_alpha;
  if (sum.rslora) {
    alpha = f->find(kKeyPeftAlpha) ? f->get_float(kKeyPeftAlpha, alpha) : alpha / std::sqrt(static_cast<double>(r));
  }
  // adapter.lora.alpha is an F32; give back the short decimal PEFT wrote when it is one.
  if (std::fabs(alpha - std::round(alpha)) < 1e-6 * std::max(1.0, std::fabs(alpha))) alpha = std::round(alpha);
  sum.alpha = alpha;
  sum.targets.assign(targets.begin(), targets.end());

  json::Value cfg = json::Value::make_object();
  json::Value rank_pattern = json::Value::make_object();
  for (const auto& rk : ranks)
    if (rk.second != r) rank_pattern.set(rk.first, json::Value::make_int(rk.second));
  cfg.set("alpha_pattern", json::Value::make_object());
  const std::string base_name = f->get_string(kKeyBaseModel, "");
  cfg.set("base_model_name_or_path", base_name.empty() ? json::Value() : json::Value::make_string(base_name));
  cfg.set("bias", json::Value::make_string("none"));
  cfg.set("fan_in_fan_out", json::Value::make_bool(false));
  cfg.set("inference_mode", json::Value::make_bool(true));
  cfg.set("init_lora_weights", json::Value::make_bool(true));
  cfg.set("layers_pattern", json::Value());
  cfg.set("layers_to_transform", json::Value());
  cfg.set("lora_alpha", number_json(alpha));
  cfg.set("lora_dropout", json::Value::make_number(0.0));
  cfg.set("modules_to_save", json::Value());
  cfg.set("peft_type", json::Value::make_string("LORA"));
  cfg.set("r", json::Value::make_int(r));
  cfg.set("rank_pattern", std::move(rank_pattern));
  cfg.set("revision", json::Value());
  json::Value tm = json::Value::make_array();
  for (const auto& t : sum.targets) tm.push(json::Value::make_string(t));
  cfg.set("target_modules", std::move(tm));
  cfg.set("task_type", json::Value::make_string("CAUSAL_LM"));
  cfg.set("use_dora", json::Value::make_bool(false));
  cfg.set("use_rslora", json::Value::make_bool(sum.rslora));

  make_directories(out);
  write_safetensors(path_join(out, "adapter_model.safetensors"), std::move(outs), {{"format", "pt"}});
  write_text_file(path_join(out, "adapter_config.json"), json::dump(cfg, 2) + "\n");
  if (opt.progress) opt.progress("tensor", done, done, "");
  return sum;
}

}  // namespace

AdapterConvertSummary convert_adapter(const std::string& in, const std::string& out, const AdapterConvertOptions& opt) {
  if (is_directory(in) || ends_with(in, ".safetensors") || ends_with(in, ".bin")) {
    if (is_directory(out)) throw ConvertError(out + ": is a folder; converting a PEFT adapter writes a .gguf file");
    return peft_to_gguf(in, out, opt);
  }
  if (ends_with(in, ".gguf")) {
    if (file_exists(out)) throw ConvertError(out + ": is a file; converting a GGUF adapter writes a PEFT folder");
    return gguf_to_peft(in, out, opt);
  }
  if (!file_exists(in)) throw ConvertError(in + ": not found");
  throw ConvertError(in + ": cannot tell the adapter format (expected a PEFT folder, a .safetensors file or a .gguf file)");
}

AdapterAsGguf::AdapterAsGguf(const std::string& path, const std::string& base_model) : path_(path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) return;
  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/lro-adapter-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const int fd = mkstemp(buf.data());
  if (fd < 0) throw ConvertError("cannot create a temporary file for the PEFT adapter conversion");
  close(fd);
  temp_ = path_ = std::string(buf.data());
  try {
    AdapterConvertOptions co;
    co.base_config = base_model;  // the head counts for the q/k permutation
    co.type = "f32";
    convert_adapter(path, temp_, co);
  } catch (...) {
    std::remove(temp_.c_str());
    throw;
  }
}

AdapterAsGguf::~AdapterAsGguf() {
  if (!temp_.empty()) std::remove(temp_.c_str());
}

}  // namespace convert
}  // namespace lro
