#include "latent_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "convert/llama_names.h"
#include "gguf.h"
#include "lora_adapter.h"
#include "ops.h"
#include "quants.h"
#include "rng.h"
#include "vec_ops.h"

namespace lro {

namespace {

constexpr const char* kCheckpointType = "lro-latent-train-checkpoint";
constexpr uint32_t kCheckpointVersion = 1;

std::vector<float> dequantized(const Weight& w) {
  std::vector<float> v(static_cast<size_t>(w.n_in * w.n_out));
  const size_t rs = row_size(w.type, w.n_in);
  for (int64_t r = 0; r < w.n_out; ++r) dequantize_row(w.type, w.data + rs * static_cast<size_t>(r), v.data() + r * w.n_in, w.n_in);
  return v;
}

std::vector<float> tensor_f32(const GgufTensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.nelements()));
  const size_t rs = row_size(t.type, t.ne[0]);
  for (int64_t r = 0; r < t.nrows(); ++r) dequantize_row(t.type, t.data + rs * static_cast<size_t>(r), v.data() + r * t.ne[0], t.ne[0]);
  return v;
}

TrainTensor make_tensor(std::string name, std::string gguf, std::vector<int64_t> shape, std::vector<float> w) {
  TrainTensor t;
  t.name = std::move(name);
  t.gguf = std::move(gguf);
  t.shape = std::move(shape);
  t.w = std::move(w);
  t.g.assign(t.w.size(), 0.0f);
  t.m.assign(t.w.size(), 0.0f);
  t.v.assign(t.w.size(), 0.0f);
  return t;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// GGUF ne of a PyTorch shape (reversed).
std::vector<int64_t> ne_of(const std::vector<int64_t>& shape) { return std::vector<int64_t>(shape.rbegin(), shape.rend()); }

GgufValue i64_bits(uint64_t v) {
  GgufValue g;
  g.type = GgufValueType::I64;
  g.num.i64 = static_cast<int64_t>(v);
  return g;
}

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

}  // namespace

const char* latent_objective_name(LatentObjective o) {
  switch (o) {
    case LatentObjective::CODI: return "codi";
    case LatentObjective::COCONUT: return "coconut";
    default: return "lm";
  }
}

LatentObjective latent_objective_from_name(const std::string& s) {
  if (s == "codi") return LatentObjective::CODI;
  if (s == "coconut") return LatentObjective::COCONUT;
  if (s == "lm") return LatentObjective::LM;
  throw std::invalid_argument("unknown objective '" + s + "' (expected codi, coconut or lm)");
}

// One sequence fed in chunks: the residual stream at every block boundary and each block's tape.
struct LatentTrainer::Seq {
  int64_t T = 0;
  std::vector<int32_t> tokens;  // -1 at latent rows
  std::vector<int32_t> pos;
  std::vector<int64_t> seq_start;
  std::vector<std::vector<float>> X;  // [n_layer + 1][T, d]: X[l] is block l's input, X[n_layer] the output
  std::vector<BlockTape> tapes;
  std::vector<BlockWeights> weights;
};

LatentTrainer::LatentTrainer(std::shared_ptr<const LlamaModel> model, std::shared_ptr<const LatentHead> head,
                             const LatentTrainConfig& cfg, const OptimConfig& optim)
    : model_(std::move(model)), head_(std::move(head)), cfg_(cfg), optim_(optim), pool_(cfg.threads) {
  if (model_->vocab_only()) throw std::invalid_argument("cannot train a vocab-only model");
  validate(optim_);
  if (cfg_.latent_steps < 0 || cfg_.latent_steps > 4096) throw std::invalid_argument("latent steps must be in [0, 4096]");
  if (cfg_.objective == LatentObjective::CODI && (!head_ || head_->settings().mode != "codi"))
    throw std::invalid_argument("the CODI objective needs a CODI latent head (prj); give the model's latent-head sidecar");
  if (cfg_.distill_factor < 0 || cfg_.ref_factor < 0) throw std::invalid_argument("distill and ref factors must be >= 0");
  if (cfg_.smooth_l1_beta <= 0) throw std::invalid_argument("the SmoothL1 beta must be positive");
  params_.reserve(static_cast<size_t>(model_->hparams().n_layer * 2 * kBlockLinears + 16));
  layer_params_.resize(static_cast<size_t>(model_->hparams().n_layer));
  if (cfg_.mode == LatentTrainMode::FULL)
    build_full();
  else
    build_lora();
  build_head();
  if (params_.empty()) throw std::invalid_argument("nothing to train");
}

void LatentTrainer::build_full() {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd;
  auto add = [&](TrainTensor t) {
    params_.push_back(std::move(t));
    return params_.size() - 1;
  };
  const size_t i_tok = add(make_tensor("model.embed_tokens.weight", "token_embd.weight", {hp.n_vocab, d}, dequantized(model_->tok_embd())));
  std::vector<size_t> i_mat(static_cast<size_t>(hp.n_layer * kBlockLinears)), i_norm(static_cast<size_t>(hp.n_layer * 2));
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const LlamaLayer& L = model_->layers()[static_cast<size_t>(l)];
    for (int t = 0; t < kBlockLinears; ++t) {
      const Weight& w = block_linear_weight(L, t);
      TrainTensor tt = make_tensor(layer_prefix(l) + block_linear_hf_name(t) + ".weight", w.name, {w.n_out, w.n_in}, dequantized(w));
      if (t == LIN_Q) tt.permute_heads = hp.n_head;
      if (t == LIN_K) tt.permute_heads = hp.n_head_kv;
      i_mat[static_cast<size_t>(l * kBlockLinears + t)] = add(std::move(tt));
    }
    const std::string blk = "blk." + std::to_string(l) + ".";
    i_norm[static_cast<size_t>(2 * l)] = add(make_tensor(layer_prefix(l) + "input_layernorm.weight", blk + "attn_norm.weight", {d}, L.attn_norm));
    i_norm[static_cast<size_t>(2 * l + 1)] =
        add(make_tensor(layer_prefix(l) + "post_attention_layernorm.weight", blk + "ffn_norm.weight", {d}, L.ffn_norm));
  }
  const size_t i_onorm = add(make_tensor("model.norm.weight", "output_norm.weight", {d}, model_->output_norm()));
  size_t i_out = i_tok;
  if (!model_->tied_output()) i_out = add(make_tensor("lm_head.weight", "output.weight", {hp.n_vocab, d}, dequantized(model_->output())));

  p_tok_ = &params_[i_tok];
  p_out_ = &params_[i_out];
  p_out_norm_ = &params_[i_onorm];
  tok_embd_ = Weight{p_tok_->gguf, GgmlType::F32, reinterpret_cast<const uint8_t*>(p_tok_->w.data()), d, hp.n_vocab};
  output_ = Weight{p_out_->gguf, GgmlType::F32, reinterpret_cast<const uint8_t*>(p_out_->w.data()), d, hp.n_vocab};
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    LayerParams& lp = layer_params_[static_cast<size_t>(l)];
    lp.attn_norm = &params_[i_norm[static_cast<size_t>(2 * l)]];
    lp.ffn_norm = &params_[i_norm[static_cast<size_t>(2 * l + 1)]];
    for (int t = 0; t < kBlockLinears; ++t) {
      lp.mat[t] = &params_[i_mat[static_cast<size_t>(l * kBlockLinears + t)]];
      const Weight& src = block_linear_weight(model_->layers()[static_cast<size_t>(l)], t);
      full_views_.push_back(Weight{src.name, GgmlType::F32, reinterpret_cast<const uint8_t*>(lp.mat[t]->w.data()), src.n_in, src.n_out});
    }
  }
}

void LatentTrainer::build_lora() {
  const auto& hp = model_->hparams();
  tok_embd_ = model_->tok_embd();
  output_ = model_->output();
  std::string init = cfg_.lora.init_adapter;
  std::vector<std::pair<int64_t, int>> slots;
  if (!init.empty()) {
    auto ad = LoraAdapter::load(init, *model_);
    for (int64_t l = 0; l < hp.n_layer; ++l)
      for (int t = 0; t < kBlockLinears; ++t) {
        const Weight& w = block_linear_weight(model_->layers()[static_cast<size_t>(l)], t);
        const LoraPair* p = ad->find(w.name);
        if (!p) continue;
        const std::string base = "codi.base_model.model." + layer_prefix(l) + block_linear_hf_name(t);
        TrainTensor a = make_tensor(base + ".lora_A.default.weight", w.name + ".lora_a", {p->rank, w.n_in}, dequantized(p->a));
        TrainTensor b = make_tensor(base + ".lora_B.default.weight", w.name + ".lora_b", {w.n_out, p->rank}, dequantized(p->b));
        if (t == LIN_Q) b.permute_heads = hp.n_head;
        if (t == LIN_K) b.permute_heads = hp.n_head_kv;
        params_.push_back(std::move(a));
        params_.push_back(std::move(b));
        layer_params_[static_cast<size_t>(l)].lora_scale[t] = lora_file_scale(1.0f, ad->alpha(), p->rank);
        slots.push_back({l, t});
      }
    for (const auto& kv : ad->pairs()) {
      bool used = false;
      for (const auto& s : slots)
        used |= block_linear_weight(model_->layers()[static_cast<size_t>(s.first)], s.second).name == kv.first;
      if (!used) throw std::invalid_argument(init + ": LoRA on '" + kv.first + "' cannot be trained (only the block matrices q k v o gate up down)");
    }
    if (slots.empty()) throw std::invalid_argument(init + ": the adapter has no LoRA pairs");
  } else {
    const LoraConfig& lc = cfg_.lora;
    if (lc.rank <= 0) throw std::invalid_argument("LoRA rank must be positive");
    std::vector<bool> on(kBlockLinears, false);
    for (const auto& t : lc.targets) {
      const int i = block_linear_from_name(t);
      if (i < 0) throw std::invalid_argument("unknown LoRA target '" + t + "' (expected q, k, v, o, gate, up, down)");
      on[static_cast<size_t>(i)] = true;
    }
    const float scale = lc.rslora ? lc.alpha / std::sqrt(static_cast<float>(lc.rank)) : lc.alpha / static_cast<float>(lc.rank);
    for (int64_t l = 0; l < hp.n_layer; ++l)
      for (int t = 0; t < kBlockLinears; ++t) {
        if (!on[static_cast<size_t>(t)]) continue;
        const Weight& w = block_linear_weight(model_->layers()[static_cast<size_t>(l)], t);
        std::vector<float> a(static_cast<size_t>(lc.rank * w.n_in));
        // PEFT's kaiming-uniform A, B = 0; one stream per matrix (as the oracle trainer).
        const double bound = 1.0 / std::sqrt(static_cast<double>(w.n_in));
        const uint64_t s = mix64(lc.init_seed ^ mix64(static_cast<uint64_t>(l * kBlockLinears + t) + 1));
        for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((2.0 * unit_double(mix64(s + i)) - 1.0) * bound);
        const std::string base = "codi.base_model.model." + layer_prefix(l) + block_linear_hf_name(t);
        TrainTensor ta = make_tensor(base + ".lora_A.default.weight", w.name + ".lora_a", {lc.rank, w.n_in}, std::move(a));
        TrainTensor tb = make_tensor(base + ".lora_B.default.weight", w.name + ".lora_b", {w.n_out, lc.rank},
                                     std::vector<float>(static_cast<size_t>(w.n_out * lc.rank), 0.0f));
        if (t == LIN_Q) tb.permute_heads = hp.n_head;
        if (t == LIN_K) tb.permute_heads = hp.n_head_kv;
        params_.push_back(std::move(ta));
        params_.push_back(std::move(tb));
        layer_params_[static_cast<size_t>(l)].lora_scale[t] = scale;
        slots.push_back({l, t});
      }
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    LayerParams& lp = layer_params_[static_cast<size_t>(slots[i].first)];
    lp.lora_a[slots[i].second] = &params_[2 * i];
    lp.lora_b[slots[i].second] = &params_[2 * i + 1];
  }
}

void LatentTrainer::build_head() {
  if (cfg_.objective != LatentObjective::CODI) return;
  const LatentHeadWeights hw = head_->weights();
  const int64_t d = hw.d, hid = hw.hidden;
  head_hidden_ = hid;
  auto f32 = [&](GgmlType type, const void* data, int64_t n_in, int64_t n_out) {
    Weight w{"", type, static_cast<const uint8_t*>(data), n_in, n_out};
    return dequantized(w);
  };
  std::vector<float> t[6] = {f32(hw.w1_type, hw.w1, d, hid), std::vector<float>(hw.b1, hw.b1 + hid),
                             f32(hw.w2_type, hw.w2, hid, d), std::vector<float>(hw.b2, hw.b2 + d),
                             std::vector<float>(hw.ln_w, hw.ln_w + d), std::vector<float>(hw.ln_b, hw.ln_b + d)};
  if (!cfg_.train_head) {
    for (int i = 0; i < 6; ++i) frozen_head_[i] = std::move(t[i]);
    return;
  }
  const size_t i0 = params_.size();
  params_.push_back(make_tensor("prj.1.weight", "latent.fc1.weight", {hid, d}, std::move(t[0])));
  params_.push_back(make_tensor("prj.1.bias", "latent.fc1.bias", {hid}, std::move(t[1])));
  params_.push_back(make_tensor("prj.3.weight", "latent.fc2.weight", {d, hid}, std::move(t[2])));
  params_.push_back(make_tensor("prj.3.bias", "latent.fc2.bias", {d}, std::move(t[3])));
  params_.push_back(make_tensor("prj.ln.weight", "latent.ln.weight", {d}, std::move(t[4])));
  params_.push_back(make_tensor("prj.ln.bias", "latent.ln.bias", {d}, std::move(t[5])));
  h_w1_ = &params_[i0];
  h_b1_ = &params_[i0 + 1];
  h_w2_ = &params_[i0 + 2];
  h_b2_ = &params_[i0 + 3];
  h_lnw_ = &params_[i0 + 4];
  h_lnb_ = &params_[i0 + 5];
}

TrainTensor* LatentTrainer::find(const std::string& name) {
  for (auto& t : params_)
    if (t.name == name) return &t;
  return nullptr;
}

BlockContext LatentTrainer::context() {
  return BlockContext{model_->hparams(), model_->rope_freqs().empty() ? nullptr : model_->rope_freqs().data(), pool_};
}

BlockWeights LatentTrainer::layer_weights(int layer) {
  const LayerParams& lp = layer_params_[static_cast<size_t>(layer)];
  if (cfg_.mode == LatentTrainMode::FULL) {
    BlockWeights w;
    w.attn_norm = lp.attn_norm->w.data();
    w.ffn_norm = lp.ffn_norm->w.data();
    w.g_attn_norm = lp.attn_norm->g.data();
    w.g_ffn_norm = lp.ffn_norm->g.data();
    for (int t = 0; t < kBlockLinears; ++t) {
      w.lin[t].w = &full_views_[static_cast<size_t>(layer * kBlockLinears + t)];
      w.lin[t].gw = lp.mat[t]->g.data();
    }
    return w;
  }
  BlockWeights w = block_weights(model_->layers()[static_cast<size_t>(layer)]);
  for (int t = 0; t < kBlockLinears; ++t) {
    if (!lp.lora_a[t]) continue;
    LoraTerm term;
    term.a = lp.lora_a[t]->w.data();
    term.b = lp.lora_b[t]->w.data();
    term.rank = lp.lora_a[t]->shape[0];
    term.scale = lp.lora_scale[t];
    term.ga = lp.lora_a[t]->g.data();
    term.gb = lp.lora_b[t]->g.data();
    w.lin[t].terms.push_back(term);
  }
  return w;
}

LatentHeadWeights LatentTrainer::head_weights() const {
  LatentHeadWeights w;
  w.d = model_->hparams().n_embd;
  if (cfg_.objective != LatentObjective::CODI) return w;
  w.identity = false;
  w.hidden = head_hidden_;
  w.ln_eps = head_->settings().ln_eps;
  auto pick = [&](const TrainTensor* t, int i) { return t ? t->w.data() : frozen_head_[i].data(); };
  w.w1 = pick(h_w1_, 0);
  w.b1 = pick(h_b1_, 1);
  w.w2 = pick(h_w2_, 2);
  w.b2 = pick(h_b2_, 3);
  w.ln_w = pick(h_lnw_, 4);
  w.ln_b = pick(h_lnb_, 5);
  return w;
}

LatentHeadGrads LatentTrainer::head_grads() {
  LatentHeadGrads g;
  if (!h_w1_) return g;
  g.w1 = h_w1_->g.data();
  g.b1 = h_b1_->g.data();
  g.w2 = h_w2_->g.data();
  g.b2 = h_b2_->g.data();
  g.ln_w = h_lnw_->g.data();
  g.ln_b = h_lnb_->g.data();
  return g;
}

void LatentTrainer::final_norm(const float* x, float* out, int64_t n) {
  const float* w = p_out_norm_ ? p_out_norm_->w.data() : model_->output_norm().data();
  rmsnorm_forward(out, x, w, n, model_->hparams().n_embd, model_->hparams().rms_eps, pool_);
}

void LatentTrainer::final_norm_backward(float* dx, const float* dout, const float* x, int64_t n) {
  const float* w = p_out_norm_ ? p_out_norm_->w.data() : model_->output_norm().data();
  rmsnorm_backward(dx, p_out_norm_ ? p_out_norm_->g.data() : nullptr, dout, x, w, n, model_->hparams().n_embd,
                   model_->hparams().rms_eps, pool_);
}

void LatentTrainer::embed(const int32_t* ids, int64_t n, float* out) {
  embedding_forward(out, ids, n, tok_embd_.type, tok_embd_.data, model_->hparams().n_embd);
}

void LatentTrainer::run_chunk(Seq& s, int64_t r0, int64_t n) {
  const int64_t d = model_->hparams().n_embd, kv_w = model_->hparams().n_head_kv * model_->hparams().head_dim;
  BlockRun run;
  run.n = n;
  run.row0 = r0;
  run.pos = s.pos.data();
  run.seq_start = s.seq_start.data();
  const BlockContext ctx = context();
  for (size_t l = 0; l < s.tapes.size(); ++l) {
    TapeKv kv(s.tapes[l], run, kv_w);
    block_forward(ctx, static_cast<int>(l), s.weights[l], run, s.X[l].data() + r0 * d, s.X[l + 1].data() + r0 * d,
                  s.tapes[l], kv);
  }
}

// Rows [r0, r0 + n): dtop holds dL/d(last block's output) for them; on return the chunk's
// dL/d(input embeddings) is in dtop's rows (the caller routes it to the table or the head).
// distill_grads: (entry j, d) added to dL/dX[j] at distill_row when it lies in the chunk.
void LatentTrainer::backward_chunk(Seq& s, int64_t r0, int64_t n, std::vector<float>& dtop,
                                   const std::vector<std::pair<int, std::vector<float>>>* distill_grads, int64_t distill_row) {
  const int64_t d = model_->hparams().n_embd, L = static_cast<int64_t>(s.tapes.size());
  std::vector<float> dx(dtop.begin() + r0 * d, dtop.begin() + (r0 + n) * d);
  BlockRun run;
  run.n = n;
  run.row0 = r0;
  run.pos = s.pos.data();
  run.seq_start = s.seq_start.data();
  const BlockContext ctx = context();
  const bool here = distill_grads && distill_row >= r0 && distill_row < r0 + n;
  for (int64_t l = L - 1; l >= 0; --l) {
    block_backward(ctx, static_cast<int>(l), s.weights[static_cast<size_t>(l)], run, s.X[static_cast<size_t>(l)].data() + r0 * d,
                   s.tapes[static_cast<size_t>(l)], dx.data(), true);
    if (here)
      for (const auto& g : *distill_grads)
        if (g.first == l) axpy_f32(dx.data() + (distill_row - r0) * d, 1.0f, g.second.data(), d);
  }
  std::copy(dx.begin(), dx.end(), dtop.begin() + r0 * d);
}

// Mean-free CE over the given rows of the top of the stream: returns the sum; with dtop, adds
// scale x its gradient (through the final norm) into dtop and the head's / norm's gradients.
double LatentTrainer::ce_rows(Seq& s, const std::vector<int64_t>& rows, const std::vector<int32_t>& targets, double scale,
                              std::vector<float>* dtop) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, nl = static_cast<int64_t>(rows.size());
  if (nl == 0) return 0;
  const float* top = s.X.back().data();
  std::vector<float> xf(static_cast<size_t>(nl * d)), xn(xf.size());
  for (int64_t i = 0; i < nl; ++i) std::memcpy(xf.data() + i * d, top + rows[i] * d, static_cast<size_t>(d) * sizeof(float));
  final_norm(xf.data(), xn.data(), nl);
  if (!dtop)
    return head_crossentropy_forward(xn.data(), targets.data(), nl, d, output_.type, output_.data, hp.n_vocab,
                                     cfg_.ce_chunk_rows, pool_);
  std::vector<float> dxn(xf.size(), 0.0f), dxf(xf.size(), 0.0f);
  const double sum = head_crossentropy_backward(dxn.data(), xn.data(), targets.data(), nl, d, output_.type, output_.data,
                                                hp.n_vocab, static_cast<float>(scale), cfg_.ce_chunk_rows, pool_,
                                                p_out_ ? p_out_->g.data() : nullptr);
  final_norm_backward(dxf.data(), dxn.data(), xf.data(), nl);
  for (int64_t i = 0; i < nl; ++i) axpy_f32(dtop->data() + rows[i] * d, 1.0f, dxf.data() + i * d, d);
  return sum;
}

LatentLoss LatentTrainer::example(const LatentExample& ex, double weight, bool backward, LatentTrace* trace) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, L = hp.n_layer, N = cfg_.latent_steps;
  const bool codi = cfg_.objective == LatentObjective::CODI, lm = cfg_.objective == LatentObjective::LM;
  const double teacher_factor = lm ? 1.0 : cfg_.ref_factor;
  LatentLoss out;
  auto make_seq = [&](int64_t T) {
    Seq s;
    s.T = T;
    s.pos.resize(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) s.pos[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    s.seq_start.assign(static_cast<size_t>(T), 0);
    s.X.assign(static_cast<size_t>(L + 1), std::vector<float>(static_cast<size_t>(T * d)));
    s.tapes.resize(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) {
      s.weights.push_back(layer_weights(static_cast<int>(l)));
      s.tapes[static_cast<size_t>(l)].resize(T, hp, s.weights.back());
      s.tapes[static_cast<size_t>(l)].dk.assign(static_cast<size_t>(T * hp.n_head_kv * hp.head_dim), 0.0f);
      s.tapes[static_cast<size_t>(l)].dv.assign(s.tapes[static_cast<size_t>(l)].dk.size(), 0.0f);
    }
    return s;
  };
  // rows predicting labels[j] (aligned with the ids starting at row `first`): row first + j - 1
  auto targets_of = [](const std::vector<int32_t>& labels, int64_t first, std::vector<int64_t>& rows, std::vector<int32_t>& tg) {
    for (size_t j = 0; j < labels.size(); ++j)
      if (labels[j] >= 0 && first + static_cast<int64_t>(j) >= 1) {
        rows.push_back(first + static_cast<int64_t>(j) - 1);
        tg.push_back(labels[j]);
      }
  };
  // entries j = 0..L-1: X[j] at row; entry L: the final-norm state
  auto states = [&](Seq& s, int64_t row) {
    std::vector<float> st(static_cast<size_t>((L + 1) * d));
    for (int64_t j = 0; j < L; ++j) std::memcpy(st.data() + j * d, s.X[static_cast<size_t>(j)].data() + row * d, static_cast<size_t>(d) * 4);
    final_norm(s.X.back().data() + row * d, st.data() + L * d, 1);
    return st;
  };

  // ---- teacher (CODI): its states are the distillation targets (detached); its CE is trained too
  std::vector<float> t_states;
  if (codi || lm) {
    const int64_t Tt = static_cast<int64_t>(ex.teacher.size());
    Seq t = make_seq(Tt);
    embed(ex.teacher.data(), Tt, t.X[0].data());
    run_chunk(t, 0, Tt);
    if (codi) t_states = states(t, ex.teacher_distill);
    std::vector<int64_t> rows;
    std::vector<int32_t> tg;
    targets_of(ex.teacher_labels, 0, rows, tg);
    out.ref_tokens = static_cast<int64_t>(rows.size());
    out.tokens += Tt;
    const double scale = rows.empty() ? 0 : weight * teacher_factor / static_cast<double>(rows.size());
    if (backward && teacher_factor > 0 && !rows.empty()) {
      std::vector<float> dtop(static_cast<size_t>(Tt * d), 0.0f);
      const double sum = ce_rows(t, rows, tg, scale, &dtop);
      out.ref_ce = sum / static_cast<double>(rows.size());
      backward_chunk(t, 0, Tt, dtop, nullptr, -1);
      if (p_tok_) embedding_backward(p_tok_->g.data(), dtop.data(), ex.teacher.data(), Tt, d);
    } else if (!rows.empty()) {
      out.ref_ce = ce_rows(t, rows, tg, 0, nullptr) / static_cast<double>(rows.size());
    }
    if (trace) trace->teacher_states = t_states;
    if (lm) {
      out.total = out.ref_ce;
      return out;
    }
  }

  // ---- student: prompt, N latent steps, suffix
  const int64_t np = static_cast<int64_t>(ex.prompt.size()), ns = static_cast<int64_t>(ex.suffix.size());
  const int64_t T = np + N + ns;
  Seq s = make_seq(T);
  out.tokens += np + ns;
  const LatentHeadWeights hw = head_weights();
  std::vector<float> h(static_cast<size_t>((N + 1) * d)), e(h.size());
  embed(ex.prompt.data(), np, s.X[0].data());
  run_chunk(s, 0, np);
  for (int64_t k = 0; k <= N; ++k) {
    const int64_t src = np + k - 1;  // the row whose final state is h_k
    final_norm(s.X.back().data() + src * d, h.data() + k * d, 1);
    latent_head_forward(hw, h.data() + k * d, e.data() + k * d, 1, pool_);
    if (k == N) break;  // e_N is computed but never fed
    std::memcpy(s.X[0].data() + (np + k) * d, e.data() + k * d, static_cast<size_t>(d) * sizeof(float));
    run_chunk(s, np + k, 1);
  }
  embed(ex.suffix.data(), ns, s.X[0].data() + (np + N) * d);
  run_chunk(s, np + N, ns);
  if (trace) {
    trace->h = h;
    trace->e = e;
  }

  std::vector<int64_t> rows;
  std::vector<int32_t> tg;
  targets_of(ex.suffix_labels, np + N, rows, tg);
  out.ce_tokens = static_cast<int64_t>(rows.size());
  std::vector<float> dtop;
  if (backward) dtop.assign(static_cast<size_t>(T * d), 0.0f);
  const double ce_scale = rows.empty() ? 0 : weight / static_cast<double>(rows.size());
  out.ce = rows.empty() ? 0 : ce_rows(s, rows, tg, ce_scale, backward ? &dtop : nullptr) / static_cast<double>(rows.size());

  // ---- distillation: d_j = SmoothL1(s_j, t_j) / std(t_j), mean over the L + 1 states
  std::vector<std::pair<int, std::vector<float>>> dgrads;
  int64_t drow = -1;
  if (codi) {
    drow = np + N + ex.student_distill;
    const std::vector<float> s_states = states(s, drow);
    if (trace) trace->student_states = s_states;
    const double beta = cfg_.smooth_l1_beta, J = static_cast<double>(L + 1);
    const double gscale = weight * cfg_.distill_factor;
    out.distill_per_state.resize(static_cast<size_t>(L + 1));
    double sum = 0;
    for (int64_t j = 0; j <= L; ++j) {
      const float* sj = s_states.data() + j * d;
      const float* tj = t_states.data() + j * d;
      double mean = 0, var = 0, l1 = 0;
      for (int64_t i = 0; i < d; ++i) mean += tj[i];
      mean /= static_cast<double>(d);
      for (int64_t i = 0; i < d; ++i) var += (tj[i] - mean) * (tj[i] - mean);
      const double sd = std::sqrt(var / static_cast<double>(d - 1));
      std::vector<float> g(static_cast<size_t>(d));
      for (int64_t i = 0; i < d; ++i) {
        const double x = static_cast<double>(sj[i]) - tj[i], ax = std::fabs(x);
        l1 += ax < beta ? 0.5 * x * x / beta : ax - 0.5 * beta;
        const double dl = ax < beta ? x / beta : (x > 0 ? 1.0 : -1.0);
        g[static_cast<size_t>(i)] = static_cast<float>(gscale * dl / (static_cast<double>(d) * sd * J));
      }
      const double dj = l1 / static_cast<double>(d) / sd;
      out.distill_per_state[static_cast<size_t>(j)] = dj;
      sum += dj;
      if (!backward || cfg_.distill_factor == 0) continue;
      if (j == L) {  // the final-norm state: back through the norm into the top of the stream
        std::vector<float> dx(static_cast<size_t>(d), 0.0f);
        final_norm_backward(dx.data(), g.data(), s.X.back().data() + drow * d, 1);
        axpy_f32(dtop.data() + drow * d, 1.0f, dx.data(), d);
      } else {
        dgrads.push_back({static_cast<int>(j), std::move(g)});
      }
    }
    out.distill = sum / J;
  }
  out.total = out.ce + cfg_.distill_factor * out.distill + cfg_.ref_factor * out.ref_ce;
  if (!backward) return out;

  // ---- student backward: suffix, then each latent row (its input gradient goes through the head
  // into the row before it), then the prompt.
  const LatentHeadGrads hg = head_grads();
  backward_chunk(s, np + N, ns, dtop, &dgrads, drow);
  if (p_tok_) embedding_backward(p_tok_->g.data(), dtop.data() + (np + N) * d, ex.suffix.data(), ns, d);
  for (int64_t k = N - 1; k >= 0; --k) {
    const int64_t r = np + k;
    backward_chunk(s, r, 1, dtop, &dgrads, drow);
    // e_k = head(h_k), h_k = final_norm(top of row r - 1)
    std::vector<float> dh(static_cast<size_t>(d), 0.0f), dx(static_cast<size_t>(d), 0.0f);
    latent_head_backward(hw, hg, h.data() + k * d, dtop.data() + r * d, dh.data(), 1, pool_);
    final_norm_backward(dx.data(), dh.data(), s.X.back().data() + (r - 1) * d, 1);
    axpy_f32(dtop.data() + (r - 1) * d, 1.0f, dx.data(), d);
  }
  backward_chunk(s, 0, np, dtop, &dgrads, drow);
  if (p_tok_) embedding_backward(p_tok_->g.data(), dtop.data(), ex.prompt.data(), np, d);
  return out;
}

std::vector<LatentLoss> LatentTrainer::accumulate(const std::vector<LatentExample>& mb, double weight,
                                                  std::vector<LatentTrace>* traces) {
  const auto& hp = model_->hparams();
  const bool codi = cfg_.objective == LatentObjective::CODI, lm = cfg_.objective == LatentObjective::LM;
  for (size_t e = 0; e < mb.size(); ++e) {
    const LatentExample& ex = mb[e];
    const std::string where = "example " + std::to_string(e);
    auto ids = [&](const std::vector<int32_t>& v, const char* what) {
      for (size_t t = 0; t < v.size(); ++t)
        if (v[t] < 0 || v[t] >= hp.n_vocab)
          throw std::invalid_argument(where + ": " + what + " id " + std::to_string(v[t]) + " at " + std::to_string(t) +
                                      " is outside the vocabulary [0, " + std::to_string(hp.n_vocab) + ")");
    };
    auto labels = [&](const std::vector<int32_t>& l, const std::vector<int32_t>& v, const char* what) {
      if (l.size() != v.size())
        throw std::invalid_argument(where + ": " + what + " labels has " + std::to_string(l.size()) + " entries, its ids " +
                                    std::to_string(v.size()));
      for (int32_t x : l)
        if (x >= hp.n_vocab) throw std::invalid_argument(where + ": " + what + " label " + std::to_string(x) + " is outside the vocabulary");
    };
    if (lm) {
      if (ex.teacher.empty()) throw std::invalid_argument(where + ": the LM objective needs the teacher sequence");
      ids(ex.teacher, "teacher");
      labels(ex.teacher_labels, ex.teacher, "teacher");
      continue;
    }
    if (ex.prompt.empty()) throw std::invalid_argument(where + " has no prompt ids");
    ids(ex.prompt, "prompt");
    ids(ex.suffix, "suffix");
    labels(ex.suffix_labels, ex.suffix, "suffix");
    if (codi) {
      if (ex.teacher.empty()) throw std::invalid_argument(where + ": CODI needs the teacher sequence");
      ids(ex.teacher, "teacher");
      labels(ex.teacher_labels, ex.teacher, "teacher");
      if (ex.student_distill < 0 || ex.student_distill >= static_cast<int64_t>(ex.suffix.size()))
        throw std::invalid_argument(where + ": the student distillation index " + std::to_string(ex.student_distill) +
                                    " is outside the suffix [0, " + std::to_string(ex.suffix.size()) + ")");
      if (ex.teacher_distill < 0 || ex.teacher_distill >= static_cast<int64_t>(ex.teacher.size()))
        throw std::invalid_argument(where + ": the teacher distillation index " + std::to_string(ex.teacher_distill) +
                                    " is outside the teacher sequence [0, " + std::to_string(ex.teacher.size()) + ")");
    }
  }
  std::vector<LatentLoss> out;
  if (traces) traces->assign(mb.size(), {});
  const double w = mb.empty() ? 0 : weight / static_cast<double>(mb.size());
  for (size_t e = 0; e < mb.size(); ++e) out.push_back(example(mb[e], w, weight != 0, traces ? &(*traces)[e] : nullptr));
  return out;
}

namespace {
std::vector<ParamSpan> spans_of(std::vector<TrainTensor>& ps) {
  std::vector<ParamSpan> v;
  for (auto& p : ps) v.push_back({p.w.data(), p.g.data(), p.m.data(), p.v.data(), p.w.size()});
  return v;
}
}  // namespace

void LatentTrainer::zero_grad() { zero_gradients(spans_of(params_)); }
double LatentTrainer::grad_norm() { return lro::grad_norm(spans_of(params_)); }

LatentStepResult LatentTrainer::step(const std::vector<std::vector<LatentExample>>& micro_batches) {
  if (micro_batches.empty()) throw std::invalid_argument("step: no micro-batches");
  LatentStepResult r;
  zero_grad();
  const double w = 1.0 / static_cast<double>(micro_batches.size());
  int64_t n_examples = 0;
  for (const auto& mb : micro_batches) {
    auto losses = accumulate(mb, w);
    for (const auto& l : losses) {
      const double k = w / static_cast<double>(mb.size());
      r.loss += k * l.total;
      r.ce += k * l.ce;
      r.distill += k * l.distill;
      r.ref_ce += k * l.ref_ce;
      r.tokens += l.tokens;
      r.examples.push_back(l);
    }
    n_examples += static_cast<int64_t>(mb.size());
  }
  const auto spans = spans_of(params_);
  r.grad_norm = lro::grad_norm(spans);
  if (keep_preclip_) {
    preclip_.resize(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) preclip_[i] = params_[i].g;
  }
  if (optim_.max_grad_norm > 0) r.clip_coef = clip_gradients(spans, optim_.max_grad_norm);
  r.lr = lr_at(optim_, step_);
  adamw_update(spans, optim_, r.lr, ++step_, pool_);
  data_pos_ += n_examples;
  r.step = step_;
  return r;
}

// ---------------------------------------------------------------------------------------------
// files

std::vector<float> LatentTrainer::hf_values(const TrainTensor& t, bool grad) const {
  std::vector<float> v = t.w;
  if (grad) {
    const size_t i = static_cast<size_t>(&t - params_.data());
    v = keep_preclip_ && i < preclip_.size() ? preclip_[i] : t.g;
  }
  if (t.permute_heads > 0) convert::permute_qk_rows(v, t.shape[0], static_cast<int64_t>(v.size()) / t.shape[0], t.permute_heads, true);
  return v;
}

void LatentTrainer::save_model(const std::string& path, const std::string& name,
                               const std::vector<std::pair<std::string, std::string>>& extra) const {
  GgufWriter w;
  auto add_extra = [&] {
    for (const auto& kv : extra) w.set_string(kv.first, kv.second);
  };
  if (cfg_.mode == LatentTrainMode::LORA) {
    // One alpha for the file (llama.cpp): every pair's scale must be alpha over its rank.
    double alpha = -1;
    for (const auto& lp : layer_params_)
      for (int t = 0; t < kBlockLinears; ++t)
        if (lp.lora_a[t]) {
          const double a = static_cast<double>(lp.lora_scale[t]) * static_cast<double>(lp.lora_a[t]->shape[0]);
          if (alpha >= 0 && std::fabs(a - alpha) > 1e-5 * alpha)
            throw std::runtime_error("save_model: LoRA pairs have different alpha, which one GGUF adapter cannot express");
          alpha = a;
        }
    const auto& hp = model_->hparams();
    w.set_string("general.architecture", "llama");
    w.set_string("general.type", "adapter");
    if (!name.empty()) w.set_string("general.name", name);
    w.set_string("adapter.type", "lora");
    w.set_f32("adapter.lora.alpha", static_cast<float>(alpha));
    w.set_u32("lro.adapter.head_count", static_cast<uint32_t>(hp.n_head));
    w.set_u32("lro.adapter.head_count_kv", static_cast<uint32_t>(hp.n_head_kv));
    add_extra();
    for (const auto& lp : layer_params_)
      for (int t = 0; t < kBlockLinears; ++t)
        if (lp.lora_a[t]) {
          w.add_tensor(lp.lora_a[t]->gguf, GgmlType::F32, ne_of(lp.lora_a[t]->shape), f32_bytes(lp.lora_a[t]->w));
          w.add_tensor(lp.lora_b[t]->gguf, GgmlType::F32, ne_of(lp.lora_b[t]->shape), f32_bytes(lp.lora_b[t]->w));
        }
    w.write(path);
    return;
  }
  // Full mode: the source model's metadata (tokenizer included), every tensor f32 from the masters.
  for (const auto& kv : model_->file().metadata()) {
    if (kv.first == "general.file_type" || kv.first.rfind("lro.latent.", 0) == 0) continue;
    if (kv.first == "general.name" && !name.empty()) continue;
    bool replaced = false;
    for (const auto& e : extra) replaced |= e.first == kv.first;
    if (!replaced) w.set_value(kv.first, kv.second);
  }
  add_extra();
  if (!name.empty()) w.set_string("general.name", name);
  w.set_u32("general.file_type", 0);  // ALL_F32
  for (const auto& t : params_) {
    if (t.gguf.rfind("latent.", 0) == 0) continue;
    w.add_tensor(t.gguf, GgmlType::F32, ne_of(t.shape), f32_bytes(t.w));
  }
  if (!model_->rope_freqs().empty())
    w.add_tensor("rope_freqs.weight", GgmlType::F32, {static_cast<int64_t>(model_->rope_freqs().size())}, f32_bytes(model_->rope_freqs()));
  w.write(path);
}

void LatentTrainer::save_head(const std::string& path) const {
  if (!head_) throw std::runtime_error("save_head: the model has no latent head");
  GgufWriter w;
  for (const auto& kv : head_->file().metadata())
    if (kv.first.rfind("lro.latent.", 0) == 0 || kv.first == "general.architecture" || kv.first == "general.name") w.set_value(kv.first, kv.second);
  w.set_string("general.type", "latent-head");
  if (cfg_.objective == LatentObjective::CODI) {
    const LatentHeadWeights hw = head_weights();
    const int64_t d = hw.d, hid = hw.hidden;
    auto put = [&](const char* n, const float* p, std::vector<int64_t> ne) {
      int64_t c = 1;
      for (int64_t x : ne) c *= x;
      w.add_tensor(n, GgmlType::F32, ne, f32_bytes(std::vector<float>(p, p + c)));
    };
    put("latent.fc1.weight", static_cast<const float*>(hw.w1), {d, hid});
    put("latent.fc1.bias", hw.b1, {hid});
    put("latent.fc2.weight", static_cast<const float*>(hw.w2), {hid, d});
    put("latent.fc2.bias", hw.b2, {d});
    put("latent.ln.weight", hw.ln_w, {d});
    put("latent.ln.bias", hw.ln_b, {d});
  } else {
    for (const auto& t : head_->file().tensors())
      w.add_tensor(t.name, GgmlType::F32, std::vector<int64_t>(t.ne, t.ne + t.n_dims), f32_bytes(tensor_f32(t)));
  }
  w.write(path);
}

void LatentTrainer::save_checkpoint(const std::string& path) const {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", kCheckpointType);
  w.set_u32("lro.train.version", kCheckpointVersion);
  w.set_value("lro.train.step", i64_bits(static_cast<uint64_t>(step_)));
  w.set_value("lro.train.data_position", i64_bits(static_cast<uint64_t>(data_pos_)));
  w.set_string("lro.train.mode", cfg_.mode == LatentTrainMode::FULL ? "full" : "lora");
  w.set_string("lro.train.objective", latent_objective_name(cfg_.objective));
  std::vector<std::string> names;
  for (const auto& t : params_) names.push_back(t.name);
  w.set_string_array("lro.train.tensors", names);
  for (const auto& t : params_) {
    const std::vector<int64_t> ne = {static_cast<int64_t>(t.w.size())};
    w.add_tensor(t.name, GgmlType::F32, ne, f32_bytes(t.w));
    w.add_tensor(t.name + ".adam_m", GgmlType::F32, ne, f32_bytes(t.m));
    w.add_tensor(t.name + ".adam_v", GgmlType::F32, ne, f32_bytes(t.v));
  }
  w.write(path);
}

void LatentTrainer::load_checkpoint(const std::string& path) {
  auto f = GgufFile::open(path);
  if (f->get_string("general.type", "") != kCheckpointType)
    throw GgufError(path + ": not an lro latent-training checkpoint (general.type '" + f->get_string("general.type", "") + "')");
  if (f->get_int("lro.train.version", 0) != kCheckpointVersion) throw GgufError(path + ": unsupported checkpoint version");
  const std::string mode = cfg_.mode == LatentTrainMode::FULL ? "full" : "lora";
  if (f->get_string("lro.train.mode", "") != mode)
    throw GgufError(path + ": the checkpoint is of mode '" + f->get_string("lro.train.mode", "") + "', this run '" + mode + "'");
  const auto& names = f->get("lro.train.tensors").as_array("lro.train.tensors");
  if (names.size() != params_.size())
    throw GgufError(path + ": the checkpoint has " + std::to_string(names.size()) + " tensors, this trainer " + std::to_string(params_.size()));
  auto tensor = [&](const std::string& n, size_t count) {
    const GgufTensorInfo* t = f->find_tensor(n);
    if (!t) throw GgufError(path + ": tensor '" + n + "' is missing");
    if (t->type != GgmlType::F32 || t->nelements() != static_cast<int64_t>(count))
      throw GgufError(path + ": tensor '" + n + "' is not f32 with " + std::to_string(count) + " values");
    return reinterpret_cast<const float*>(t->data);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    if (names[i].as_string("lro.train.tensors") != params_[i].name)
      throw GgufError(path + ": tensor " + std::to_string(i) + " is '" + names[i].as_string("lro.train.tensors") +
                      "', this trainer has '" + params_[i].name + "'");
    for (const char* s : {"", ".adam_m", ".adam_v"}) tensor(params_[i].name + s, params_[i].w.size());
  }
  for (auto& t : params_) {
    const size_t n = t.w.size();
    std::memcpy(t.w.data(), tensor(t.name, n), n * 4);
    std::memcpy(t.m.data(), tensor(t.name + ".adam_m", n), n * 4);
    std::memcpy(t.v.data(), tensor(t.name + ".adam_v", n), n * 4);
    std::fill(t.g.begin(), t.g.end(), 0.0f);
  }
  step_ = f->get("lro.train.step").as_int("lro.train.step");
  data_pos_ = f->get("lro.train.data_position").as_int("lro.train.data_position");
}

}  // namespace lro
