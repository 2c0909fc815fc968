#include "convert/export_hf.h"

#include <cstring>

#include "model/block.h"
#include "convert/common.h"
#include "convert/json.h"
#include "convert/llama_names.h"
#include "convert/safetensors.h"
#include "core/gguf.h"
#include "model/latent_head.h"
#include "model/llama_model.h"
#include "quant/quants.h"

namespace lro {
namespace convert {

namespace {

// The Llama 3 split regex: convert_hf recognises it as "llama-bpe".
const char* const kLlama3Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

constexpr int64_t kTypeNormal = 1, kTypeControl = 3, kTypeUserDefined = 4, kTypeUnused = 5;

using json::Value;

std::vector<uint8_t> bytes_of(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> dequantized(const Weight& w) { return dequantize_rows(w.type, w.data, w.n_in, w.n_out); }
std::vector<float> tensor_f32(const GgufTensorInfo& t) { return dequantize_rows(t.type, t.data, t.ne[0], t.nrows()); }

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

Value str(const std::string& s) { return Value::make_string(s); }
Value num(int64_t i) { return Value::make_int(i); }

}  // namespace

HfExportSummary export_hf(const std::string& model_path, const std::string& out_dir, const HfExportOptions& opt) {
  auto model = LlamaModel::load(model_path);
  const GgufFile& f = model->file();
  const LlamaHparams& hp = model->hparams();
  const std::string L = model_path;
  if (!model->rope_freqs().empty())
    throw ConvertError(L + ": the model has rope_freqs (Llama 3 rope scaling); its scaling parameters are not in the GGUF, so an "
                           "HF config cannot state them");
  if (f.get_string("tokenizer.ggml.model", "") != "gpt2")
    throw ConvertError(L + ": tokenizer.ggml.model is '" + f.get_string("tokenizer.ggml.model", "") +
                       "'; only byte-level BPE (gpt2) tokenizers can be exported");
  const std::string pre = f.get_string("tokenizer.ggml.pre", "default");
  if (pre != "llama-bpe" && pre != "gpt-2")
    throw ConvertError(L + ": tokenizer.ggml.pre '" + pre + "' cannot be exported (llama-bpe and gpt-2 only)");

  std::shared_ptr<LatentHead> head;
  std::string head_path = opt.latent_head;
  if (head_path.empty()) {
    const std::string side = (ends_with(model_path, ".gguf") ? model_path.substr(0, model_path.size() - 5) : model_path) + ".latent.gguf";
    if (file_exists(side)) head_path = side;
  }
  if (!head_path.empty()) head = LatentHead::load(head_path, hp.n_embd);
  else head = LatentHead::from_file(model->shared_file(), hp.n_embd);

  make_directories(out_dir);
  HfExportSummary sum;
  sum.dir = out_dir;

  // ---- tensors
  std::vector<SafetensorsOut> ts;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    SafetensorsOut o;
    o.name = name;
    o.shape = std::move(shape);
    o.bytes = bytes_of(v);
    ts.push_back(std::move(o));
  };
  add("model.embed_tokens.weight", {hp.n_vocab, hp.n_embd}, dequantized(model->tok_embd()));
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const LlamaLayer& Ly = model->layers()[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hp.n_embd}, Ly.attn_norm);
    for (int t = 0; t < kBlockLinears; ++t) {
      const Weight& w = block_linear_weight(Ly, t);
      std::vector<float> v = dequantized(w);
      if (t == LIN_Q) permute_qk_rows(v, w.n_out, w.n_in, hp.n_head, true);
      if (t == LIN_K) permute_qk_rows(v, w.n_out, w.n_in, hp.n_head_kv, true);
      add(p + block_linear_hf_name(t) + ".weight", {w.n_out, w.n_in}, v);
    }
    add(p + "post_attention_layernorm.weight", {hp.n_embd}, Ly.ffn_norm);
  }
  add("model.norm.weight", {hp.n_embd}, model->output_norm());
  if (!model->tied_output()) add("lm_head.weight", {hp.n_vocab, hp.n_embd}, dequantized(model->output()));
  if (head && head->settings().mode == "codi") {
    const GgufFile& hf = head->file();
    const std::pair<const char*, const char*> names[] = {{"latent.fc1.weight", "prj.1.weight"}, {"latent.fc1.bias", "prj.1.bias"},
                                                         {"latent.fc2.weight", "prj.3.weight"}, {"latent.fc2.bias", "prj.3.bias"},
                                                         {"latent.ln.weight", "prj.ln.weight"}, {"latent.ln.bias", "prj.ln.bias"}};
    for (const auto& n : names) {
      const GgufTensorInfo* t = hf.find_tensor(n.first);
      if (!t) throw ConvertError(head->path() + ": tensor '" + n.first + "' is missing");
      std::vector<int64_t> shape;
      for (int64_t dd = static_cast<int64_t>(t->n_dims) - 1; dd >= 0; --dd) shape.push_back(t->ne[dd]);
      add(n.second, shape, tensor_f32(*t));
    }
  }
  sum.n_tensors = static_cast<int64_t>(ts.size());
  write_safetensors(path_join(out_dir, "model.safetensors"), std::move(ts), {{"format", "pt"}});
  sum.files.push_back("model.safetensors");

  // ---- tokenizer: normal tokens in the BPE vocab, control / user-defined ones as added tokens;
  // trailing unused [PAD<id>] rows are left to the embedding size (convert_hf names them again).
  const auto& toks = f.get("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens");
  const GgufValue* types_v = f.find("tokenizer.ggml.token_type");
  auto type_of = [&](size_t i) -> int64_t {
    return types_v && i < types_v->arr.size() ? types_v->arr[i].as_int("tokenizer.ggml.token_type") : kTypeNormal;
  };
  size_t n_tok = toks.size();
  while (n_tok > 0 && type_of(n_tok - 1) == kTypeUnused) --n_tok;
  Value vocab = Value::make_object(), added = Value::make_array();
  for (size_t i = 0; i < n_tok; ++i) {
    const std::string& t = toks[i].as_string("tokenizer.ggml.tokens");
    const int64_t ty = type_of(i);
    if (ty == kTypeNormal) {
      vocab.set(t, num(static_cast<int64_t>(i)));
    } else if (ty == kTypeControl || ty == kTypeUserDefined) {
      Value a = Value::make_object();
      a.set("id", num(static_cast<int64_t>(i)));
      a.set("content", str(t));
      a.set("single_word", Value::make_bool(false));
      a.set("lstrip", Value::make_bool(false));
      a.set("rstrip", Value::make_bool(false));
      a.set("normalized", Value::make_bool(ty == kTypeUserDefined));
      a.set("special", Value::make_bool(ty == kTypeControl));
      added.push(std::move(a));
    } else {
      throw ConvertError(L + ": token " + std::to_string(i) + " has type " + std::to_string(ty) + ", which tokenizer.json cannot state");
    }
  }
  Value merges = Value::make_array();
  if (const GgufValue* m = f.find("tokenizer.ggml.merges"))
    for (const auto& x : m->as_array("tokenizer.ggml.merges")) merges.push(str(x.as_string("tokenizer.ggml.merges")));
  auto token_text = [&](const char* key) -> std::string {
    const int64_t id = f.get_int(key, -1);
    return id >= 0 && static_cast<size_t>(id) < toks.size() ? toks[static_cast<size_t>(id)].as_string(key) : "";
  };
  const std::string bos = token_text("tokenizer.ggml.bos_token_id"), eos = token_text("tokenizer.ggml.eos_token_id");
  const bool add_bos = f.find("tokenizer.ggml.add_bos_token") ? f.get("tokenizer.ggml.add_bos_token").as_bool("tokenizer.ggml.add_bos_token") : false;

  Value tj = Value::make_object();
  tj.set("version", str("1.0"));
  tj.set("truncation", Value::make_null());
  tj.set("padding", Value::make_null());
  tj.set("added_tokens", std::move(added));
  tj.set("normalizer", Value::make_null());
  Value bl = Value::make_object();
  bl.set("type", str("ByteLevel"));
  bl.set("add_prefix_space", Value::make_bool(false));
  bl.set("trim_offsets", Value::make_bool(true));
  bl.set("use_regex", Value::make_bool(pre == "gpt-2"));
  if (pre == "llama-bpe") {
    Value split = Value::make_object(), pat = Value::make_object();
    split.set("type", str("Split"));
    pat.set("Regex", str(kLlama3Split));
    split.set("pattern", std::move(pat));
    split.set("behavior", str("Isolated"));
    split.set("invert", Value::make_bool(false));
    Value seq = Value::make_object(), list = Value::make_array();
    seq.set("type", str("Sequence"));
    list.push(std::move(split));
    list.push(bl);
    seq.set("pretokenizers", std::move(list));
    tj.set("pre_tokenizer", std::move(seq));
  } else {
    tj.set("pre_tokenizer", bl);
  }
  if (add_bos && !bos.empty()) {
    auto special = [&](const std::string& tok) {
      Value o = Value::make_object(), st = Value::make_object();
      st.set("id", str(tok));
      st.set("type_id", num(0));
      o.set("SpecialToken", std::move(st));
      return o;
    };
    auto seq_item = [&](const char* id) {
      Value o = Value::make_object(), st = Value::make_object();
      st.set("id", str(id));
      st.set("type_id", num(0));
      o.set("Sequence", std::move(st));
      return o;
    };
    Value pp = Value::make_object(), single = Value::make_array(), pair = Value::make_array(), sp = Value::make_object();
    pp.set("type", str("TemplateProcessing"));
    single.push(special(bos));
    single.push(seq_item("A"));
    pair.push(special(bos));
    pair.push(seq_item("A"));
    pair.push(special(bos));
    pair.push(seq_item("B"));
    pp.set("single", std::move(single));
    pp.set("pair", std::move(pair));
    Value entry = Value::make_object(), ids = Value::make_array(), tk = Value::make_array();
    entry.set("id", str(bos));
    ids.push(num(f.get_int("tokenizer.ggml.bos_token_id", -1)));
    tk.push(str(bos));
    entry.set("ids", std::move(ids));
    entry.set("tokens", std::move(tk));
    sp.set(bos, std::move(entry));
    pp.set("special_tokens", std::move(sp));
    tj.set("post_processor", std::move(pp));
  } else {
    tj.set("post_processor", Value::make_null());
  }
  Value dec = Value::make_object();
  dec.set("type", str("ByteLevel"));
  dec.set("add_prefix_space", Value::make_bool(true));
  dec.set("trim_offsets", Value::make_bool(true));
  dec.set("use_regex", Value::make_bool(true));
  tj.set("decoder", std::move(dec));
  Value mdl = Value::make_object();
  mdl.set("type", str("BPE"));
  mdl.set("dropout", Value::make_null());
  mdl.set("unk_token", Value::make_null());
  mdl.set("continuing_subword_prefix", Value::make_null());
  mdl.set("end_of_word_suffix", Value::make_null());
  mdl.set("fuse_unk", Value::make_bool(false));
  mdl.set("byte_fallback", Value::make_bool(false));
  mdl.set("ignore_merges", Value::make_bool(pre == "llama-bpe"));
  mdl.set("vocab", std::move(vocab));
  mdl.set("merges", std::move(merges));
  tj.set("model", std::move(mdl));
  write_text_file(path_join(out_dir, "tokenizer.json"), json::dump(tj, 1) + "\n");
  sum.files.push_back("tokenizer.json");

  Value tc = Value::make_object();
  if (!bos.empty()) tc.set("bos_token", str(bos));
  if (!eos.empty()) tc.set("eos_token", str(eos));
  const std::string pad = token_text("tokenizer.ggml.padding_token_id");
  if (!pad.empty()) tc.set("pad_token", str(pad));
  tc.set("add_bos_token", Value::make_bool(add_bos));
  tc.set("add_eos_token", Value::make_bool(false));
  tc.set("clean_up_tokenization_spaces", Value::make_bool(false));
  tc.set("model_max_length", num(hp.n_ctx_train > 0 ? hp.n_ctx_train : 8192));
  tc.set("tokenizer_class", str("PreTrainedTokenizerFast"));
  write_text_file(path_join(out_dir, "tokenizer_config.json"), json::dump(tc, 1) + "\n");
  sum.files.push_back("tokenizer_config.json");

  // ---- config.json
  Value cfg = Value::make_object(), arch = Value::make_array();
  arch.push(str("LlamaForCausalLM"));
  cfg.set("architectures", std::move(arch));
  cfg.set("model_type", str("llama"));
  cfg.set("hidden_size", num(hp.n_embd));
  cfg.set("intermediate_size", num(hp.n_ff));
  cfg.set("num_hidden_layers", num(hp.n_layer));
  cfg.set("num_attention_heads", num(hp.n_head));
  cfg.set("num_key_value_heads", num(hp.n_head_kv));
  cfg.set("head_dim", num(hp.head_dim));
  cfg.set("hidden_act", str("silu"));
  cfg.set("rms_norm_eps", Value::make_number(hp.rms_eps));
  cfg.set("rope_theta", Value::make_number(hp.rope_base));
  cfg.set("rope_scaling", Value::make_null());
  cfg.set("max_position_embeddings", num(hp.n_ctx_train > 0 ? hp.n_ctx_train : 8192));
  cfg.set("vocab_size", num(hp.n_vocab));
  cfg.set("tie_word_embeddings", Value::make_bool(model->tied_output()));
  cfg.set("attention_bias", Value::make_bool(false));
  cfg.set("mlp_bias", Value::make_bool(false));
  cfg.set("initializer_range", Value::make_number(0.02));
  if (f.get_int("tokenizer.ggml.bos_token_id", -1) >= 0) cfg.set("bos_token_id", num(f.get_int("tokenizer.ggml.bos_token_id", -1)));
  if (f.get_int("tokenizer.ggml.eos_token_id", -1) >= 0) cfg.set("eos_token_id", num(f.get_int("tokenizer.ggml.eos_token_id", -1)));
  cfg.set("torch_dtype", str("float32"));
  write_text_file(path_join(out_dir, "config.json"), json::dump(cfg, 1) + "\n");
  sum.files.push_back("config.json");

  // ---- the latent settings, as convert_hf reads them back
  if (head) {
    const LatentSettings& s = head->settings();
    Value r = Value::make_object(), ids = Value::make_object();
    r.set("format", str("lro-native export-hf: a latent reasoning model; prj.* is the CODI projection head"));
    r.set("latent_mode", str(s.mode));
    r.set("num_latent", num(s.steps));
    r.set("prompt_format", str(s.prompt_format));
    // lro-native's Coconut feed scale (e = scale x h); Coconut itself feeds h as it is.
    if (s.scale != 1.0f) r.set("latent_scale", Value::make_number(s.scale));
    ids.set("bot", num(s.bot_id));
    ids.set("eot", num(s.eot_id));
    ids.set("pad", num(s.pad_id));
    r.set("special_ids", std::move(ids));
    write_text_file(path_join(out_dir, "README.json"), json::dump(r, 1) + "\n");
    sum.files.push_back("README.json");
    sum.latent_mode = s.mode;
  }
  return sum;
}

}  // namespace convert
}  // namespace lro
