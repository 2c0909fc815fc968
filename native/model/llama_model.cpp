#include "model/llama_model.h"

#include "quant/quants.h"

namespace lro {

namespace {
std::string shape_str(const GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "]";
}
}  // namespace

std::shared_ptr<LlamaModel> LlamaModel::load(const std::string& path, bool vocab_only) {
  std::shared_ptr<LlamaModel> m(new LlamaModel());
  m->file_ = GgufFile::open(path);
  const GgufFile& f = *m->file_;
  m->tokenizer_ = Tokenizer::from_gguf(f);
  m->vocab_only_ = vocab_only || f.tensors().empty();
  auto& hp = m->hp_;
  hp.arch = f.get_string("general.architecture", "");
  if (m->vocab_only_) {
    hp.n_vocab = m->tokenizer_->n_tokens();
    return m;
  }
  if (hp.arch != "llama")
    throw GgufError(path + ": general.architecture is '" + hp.arch +
                    "'; lro-native runs only 'llama' (Llama 2/3 family) models");
  const std::string a = hp.arch + ".";
  auto req = [&](const std::string& key) {
    int64_t v = f.get(a + key).as_int(a + key);
    if (v <= 0 || v > (int64_t(1) << 24))
      throw GgufError(path + ": metadata '" + a + key + "' = " + std::to_string(v) + " is out of range");
    return v;
  };
  hp.n_embd = req("embedding_length");
  hp.n_layer = req("block_count");
  hp.n_head = req("attention.head_count");
  hp.n_head_kv = f.find(a + "attention.head_count_kv") ? req("attention.head_count_kv") : hp.n_head;
  hp.n_ff = req("feed_forward_length");
  hp.head_dim = f.find(a + "attention.key_length") ? req("attention.key_length") : hp.n_embd / hp.n_head;
  if (f.find(a + "attention.value_length") && req("attention.value_length") != hp.head_dim)
    throw GgufError(path + ": attention.value_length differs from key_length; not a Llama layout");
  hp.n_rot = f.find(a + "rope.dimension_count") ? req("rope.dimension_count") : hp.head_dim;
  hp.n_ctx_train = f.get_int(a + "context_length", 4096);
  hp.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  hp.rope_base = static_cast<float>(f.get_float(a + "rope.freq_base", 10000.0));
  if (hp.n_head % hp.n_head_kv != 0)
    throw GgufError(path + ": head_count " + std::to_string(hp.n_head) + " is not a multiple of head_count_kv " +
                    std::to_string(hp.n_head_kv));
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    throw GgufError(path + ": rope.dimension_count " + std::to_string(hp.n_rot) + " must be even and <= head dim " +
                    std::to_string(hp.head_dim));
  if (const GgufValue* rs = f.find(a + "rope.scaling.type")) {
    const std::string& t = rs->as_string(a + "rope.scaling.type");
    if (t != "none" && t != "")
      throw GgufError(path + ": rope scaling type '" + t + "' is not supported (llama3 scaling comes as rope_freqs.weight)");
  }
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) throw GgufError(path + ": tensor 'token_embd.weight' is missing");
  hp.n_vocab = emb->ne[1];
  m->load_weights();
  return m;
}

Weight LlamaModel::matrix(const std::string& name, int64_t n_in, int64_t n_out) const {
  const GgufTensorInfo* t = file_->find_tensor(name);
  if (!t) throw GgufError(file_->path() + ": tensor '" + name + "' is missing");
  if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
    throw GgufError(file_->path() + ": tensor '" + name + "' has shape " + shape_str(*t) + ", expected [" +
                    std::to_string(n_in) + ", " + std::to_string(n_out) + "]");
  if (!traits(t->type).supported)
    throw GgufError(file_->path() + ": tensor '" + name + "' has type " + traits(t->type).name +
                    ", which lro-native cannot compute with (supported: f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)");
  require_finite(file_->path(), *t);
  return Weight{name, t->type, t->data, n_in, n_out};
}

std::vector<float> LlamaModel::vector_f32(const std::string& name, int64_t n) const {
  const GgufTensorInfo* t = file_->find_tensor(name);
  if (!t) throw GgufError(file_->path() + ": tensor '" + name + "' is missing");
  if (t->nelements() != n || t->ne[0] != n)
    throw GgufError(file_->path() + ": tensor '" + name + "' has shape " + shape_str(*t) + ", expected [" +
                    std::to_string(n) + "]");
  if (!traits(t->type).supported || t->ne[0] % traits(t->type).block_size != 0)
    throw GgufError(file_->path() + ": tensor '" + name + "' has unsupported type " + traits(t->type).name);
  require_finite(file_->path(), *t);
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t->type, t->data, out.data(), n);
  return out;
}

void LlamaModel::load_weights() {
  const auto& hp = hp_;
  const int64_t d = hp.n_embd, q_w = hp.n_head * hp.head_dim, kv_w = hp.n_head_kv * hp.head_dim;
  tok_embd_ = matrix("token_embd.weight", d, hp.n_vocab);
  output_norm_ = vector_f32("output_norm.weight", d);
  if (file_->find_tensor("output.weight")) {
    output_ = matrix("output.weight", d, hp.n_vocab);
  } else {
    output_ = tok_embd_;
    tied_ = true;
  }
  if (file_->find_tensor("rope_freqs.weight")) rope_freqs_ = vector_f32("rope_freqs.weight", hp.n_rot / 2);
  layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    auto& L = layers_[static_cast<size_t>(l)];
    L.attn_norm = vector_f32(p + "attn_norm.weight", d);
    L.ffn_norm = vector_f32(p + "ffn_norm.weight", d);
    L.wq = matrix(p + "attn_q.weight", d, q_w);
    L.wk = matrix(p + "attn_k.weight", d, kv_w);
    L.wv = matrix(p + "attn_v.weight", d, kv_w);
    L.wo = matrix(p + "attn_output.weight", q_w, d);
    L.w_gate = matrix(p + "ffn_gate.weight", d, hp.n_ff);
    L.w_up = matrix(p + "ffn_up.weight", d, hp.n_ff);
    L.w_down = matrix(p + "ffn_down.weight", hp.n_ff, d);
  }
}

}  // namespace lro
