#include "train/latent_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/gguf.h"
#include "model/lora_adapter.h"
#include "model/qk_order.h"
#include "ops/ops.h"
#include "quant/quants.h"
#include "core/rng.h"
#include "train/checkpoint_file.h"
#include "core/vec_ops.h"

namespace lro {

namespace {

constexpr const char* kCheckpointType = "lro-latent-train-checkpoint";
constexpr uint32_t kCheckpointVersion = 1;

std::vector<float> dequantized(const Weight& w) { return dequantize_rows(w.type, w.data, w.n_in, w.n_out); }
std::vector<float> tensor_f32(const GgufTensorInfo& t) { return dequantize_rows(t.type, t.data, t.ne[0], t.nrows()); }

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


// GGUF ne of a PyTorch shape (reversed).
std::vector<int64_t> ne_of(const std::vector<int64_t>& shape) { return std::vector<int64_t>(shape.rbegin(), shape.rend()); }


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

// Sequences laid end to end (one per example), fed in chunks: the residual stream at every block
// boundary and each block's tape, over all rows.
struct LatentTrainer::Seq {
  int64_t T = 0;
  std::vector<int32_t> pos;
  std::vector<int64_t> seq_start;
  std::vector<std::vector<float>> X;  // [n_layer + 1][T, d]: X[l] is block l's input, X[n_layer] the output
  std::vector<BlockTape> tapes;
  std::vector<BlockWeights> weights;
};

namespace {

// The tape's per-row buffers with their widths, to gather a chunk's rows out of them and back.
std::vector<std::pair<std::vector<float>*, int64_t>> tape_fields(BlockTape& t, const LlamaHparams& hp) {
  const int64_t d = hp.n_embd, q_w = hp.n_head * hp.head_dim, kv_w = hp.n_head_kv * hp.head_dim, ff = hp.n_ff;
  std::vector<std::pair<std::vector<float>*, int64_t>> f = {{&t.xn1, d},  {&t.q, q_w},    {&t.k, kv_w},  {&t.v, kv_w},
                                                            {&t.att, q_w}, {&t.x_mid, d}, {&t.xn2, d},   {&t.gate, ff},
                                                            {&t.up, ff},   {&t.h, ff}};
  for (int i = 0; i < kBlockLinears; ++i)
    if (t.u_rank[i] > 0) f.push_back({&t.u[i], t.u_rank[i]});
  return f;
}

void gather_rows(float* dst, const float* src, const std::vector<int64_t>& rows, int64_t w) {
  for (size_t i = 0; i < rows.size(); ++i) std::memcpy(dst + static_cast<int64_t>(i) * w, src + rows[i] * w, static_cast<size_t>(w) * 4);
}
void scatter_rows(float* dst, const float* src, const std::vector<int64_t>& rows, int64_t w) {
  for (size_t i = 0; i < rows.size(); ++i) std::memcpy(dst + rows[i] * w, src + static_cast<int64_t>(i) * w, static_cast<size_t>(w) * 4);
}

// A chunk made of several examples' rows: the block runs on them gathered into a small tape, and
// its attention reads (and differentiates) the keys and values of the whole pass's tape.
class GatherKv : public BlockKv {
 public:
  GatherKv(BlockTape& full, const std::vector<int32_t>& pos, const std::vector<int64_t>& seq_start,
           const std::vector<std::pair<int64_t, int64_t>>& ranges, const std::vector<int64_t>& rows, int64_t kv_w)
      : full_(full), pos_(pos), seq_start_(seq_start), ranges_(ranges), rows_(rows), kv_w_(kv_w) {}

  AttentionRows attend(int, const float* k, const float* v, int64_t n, bool* kv_f16) override {
    scatter_rows(full_.k.data(), k, rows_, kv_w_);
    scatter_rows(full_.v.data(), v, rows_, kv_w_);
    kp_.resize(static_cast<size_t>(n));
    vp_.resize(kp_.size());
    cp_.resize(kp_.size());
    nc_.resize(kp_.size());
    qpos_.resize(kp_.size());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = rows_[static_cast<size_t>(i)], s0 = seq_start_[static_cast<size_t>(t)];
      kp_[i] = full_.k.data() + s0 * kv_w_;
      vp_[i] = full_.v.data() + s0 * kv_w_;
      cp_[i] = pos_.data() + s0;
      nc_[i] = t - s0 + 1;
      qpos_[i] = pos_[static_cast<size_t>(t)];
    }
    *kv_f16 = false;
    return AttentionRows{kp_.data(), vp_.data(), cp_.data(), nc_.data(), qpos_.data()};
  }

  void attend_backward(const BlockContext& c, const BlockRun&, BlockTape& a, const float* datt, float* dq) override {
    const LlamaHparams& hp = c.hp;
    const int64_t q_w = hp.n_head * hp.head_dim;
    int64_t off = 0;
    std::vector<int64_t> zeros;
    for (const auto& rg : ranges_) {
      const int64_t s0 = seq_start_[static_cast<size_t>(rg.first)], rows = rg.first + rg.second - s0;
      zeros.assign(static_cast<size_t>(rows), 0);
      attention_backward(dq + off * q_w, full_.dk.data() + s0 * kv_w_, full_.dv.data() + s0 * kv_w_, datt + off * q_w,
                         a.q.data() + off * q_w, full_.k.data() + s0 * kv_w_, full_.v.data() + s0 * kv_w_, zeros.data(),
                         pos_.data() + s0, rows, hp.n_head, hp.n_head_kv, hp.head_dim,
                         1.0f / std::sqrt(static_cast<float>(hp.head_dim)), c.pool, rg.first - s0);
      off += rg.second;
    }
    a.dk.resize(rows_.size() * static_cast<size_t>(kv_w_));
    a.dv.resize(a.dk.size());
    gather_rows(a.dk.data(), full_.dk.data(), rows_, kv_w_);
    gather_rows(a.dv.data(), full_.dv.data(), rows_, kv_w_);
  }

 private:
  BlockTape& full_;
  const std::vector<int32_t>& pos_;
  const std::vector<int64_t>& seq_start_;
  const std::vector<std::pair<int64_t, int64_t>>& ranges_;
  const std::vector<int64_t>& rows_;
  int64_t kv_w_;
  std::vector<const void*> kp_, vp_;
  std::vector<const int32_t*> cp_;
  std::vector<int64_t> nc_;
  std::vector<int32_t> qpos_;
};

std::vector<int64_t> rows_of(const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<int64_t> rows;
  for (const auto& r : ranges)
    for (int64_t i = 0; i < r.second; ++i) rows.push_back(r.first + i);
  return rows;
}

}  // namespace

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
  if (cfg_.objective != LatentObjective::CODI) {
    w.scale = head_ ? head_->settings().scale : 1.0f;  // Coconut: the identity feed at the head's scale
    return w;
  }
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

void LatentTrainer::run_chunk(Seq& s, const Ranges& ranges) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, kv_w = hp.n_head_kv * hp.head_dim;
  const BlockContext ctx = context();
  if (ranges.size() == 1) {  // one contiguous run of rows: straight on the pass's tape
    BlockRun run;
    run.n = ranges[0].second;
    run.row0 = ranges[0].first;
    run.pos = s.pos.data();
    run.seq_start = s.seq_start.data();
    const int64_t r0 = run.row0;
    for (size_t l = 0; l < s.tapes.size(); ++l) {
      TapeKv kv(s.tapes[l], run, kv_w);
      block_forward(ctx, static_cast<int>(l), s.weights[l], run, s.X[l].data() + r0 * d, s.X[l + 1].data() + r0 * d,
                    s.tapes[l], kv);
    }
    return;
  }
  const std::vector<int64_t> rows = rows_of(ranges);
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<int32_t> pos(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) pos[i] = s.pos[static_cast<size_t>(rows[i])];
  BlockRun run;
  run.n = n;
  run.pos = pos.data();
  std::vector<float> x(static_cast<size_t>(n * d)), y(x.size());
  gather_rows(x.data(), s.X[0].data(), rows, d);
  for (size_t l = 0; l < s.tapes.size(); ++l) {
    BlockTape& t = chunk_tape_;
    t.resize(n, hp, s.weights[l]);
    GatherKv kv(s.tapes[l], s.pos, s.seq_start, ranges, rows, kv_w);
    block_forward(ctx, static_cast<int>(l), s.weights[l], run, x.data(), y.data(), t, kv);
    auto full = tape_fields(s.tapes[l], hp);
    auto mine = tape_fields(t, hp);
    for (size_t f = 0; f < full.size(); ++f) scatter_rows(full[f].first->data(), mine[f].first->data(), rows, full[f].second);
    scatter_rows(s.X[l + 1].data(), y.data(), rows, d);
    std::swap(x, y);
  }
}

// The chunk's rows: dtop holds dL/d(last block's output) for them; on return their dL/d(input
// embeddings) is in dtop's rows (the caller routes it to the table or the head). Distillation
// gradients (row, entry j, vector) are added to dL/dX[j] at their rows inside the chunk.
void LatentTrainer::backward_chunk(Seq& s, const Ranges& ranges, std::vector<float>& dtop, const DistillGrads& distill) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, L = static_cast<int64_t>(s.tapes.size()), kv_w = hp.n_head_kv * hp.head_dim;
  const BlockContext ctx = context();
  const std::vector<int64_t> rows = rows_of(ranges);
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> dx(static_cast<size_t>(n * d));
  gather_rows(dx.data(), dtop.data(), rows, d);
  auto add_distill = [&](int64_t l) {
    for (const auto& g : distill) {
      if (g.entry != l) continue;
      for (int64_t i = 0; i < n; ++i)
        if (rows[static_cast<size_t>(i)] == g.row) axpy_f32(dx.data() + i * d, 1.0f, g.grad.data(), d);
    }
  };
  if (ranges.size() == 1) {
    BlockRun run;
    run.n = n;
    run.row0 = ranges[0].first;
    run.pos = s.pos.data();
    run.seq_start = s.seq_start.data();
    run.scratch = &scratch_;
    for (int64_t l = L - 1; l >= 0; --l) {
      TapeKv kv(s.tapes[static_cast<size_t>(l)], run, kv_w);
      block_backward(ctx, static_cast<int>(l), s.weights[static_cast<size_t>(l)], run,
                     s.X[static_cast<size_t>(l)].data() + run.row0 * d, s.tapes[static_cast<size_t>(l)], dx.data(), true, kv);
      add_distill(l);
    }
  } else {
    std::vector<int32_t> pos(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) pos[i] = s.pos[static_cast<size_t>(rows[i])];
    BlockRun run;
    run.n = n;
    run.pos = pos.data();
    run.scratch = &scratch_;
    std::vector<float> x(static_cast<size_t>(n * d));
    for (int64_t l = L - 1; l >= 0; --l) {
      BlockTape& full = s.tapes[static_cast<size_t>(l)];
      BlockTape& t = chunk_tape_;
      t.resize(n, hp, s.weights[static_cast<size_t>(l)]);
      auto fs = tape_fields(full, hp);
      auto mine = tape_fields(t, hp);
      for (size_t f = 0; f < fs.size(); ++f) gather_rows(mine[f].first->data(), fs[f].first->data(), rows, fs[f].second);
      gather_rows(x.data(), s.X[static_cast<size_t>(l)].data(), rows, d);
      GatherKv kv(full, s.pos, s.seq_start, ranges, rows, kv_w);
      block_backward(ctx, static_cast<int>(l), s.weights[static_cast<size_t>(l)], run, x.data(), t, dx.data(), true, kv);
      add_distill(l);
    }
  }
  scatter_rows(dtop.data(), dx.data(), rows, d);
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

std::vector<LatentLoss> LatentTrainer::batch(const std::vector<LatentExample>& mb, double weight, bool backward,
                                             std::vector<LatentTrace>* traces) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, L = hp.n_layer, N = cfg_.latent_steps, B = static_cast<int64_t>(mb.size());
  const bool codi = cfg_.objective == LatentObjective::CODI, lm = cfg_.objective == LatentObjective::LM;
  const double teacher_factor = lm ? 1.0 : cfg_.ref_factor;
  const double w = B ? weight / static_cast<double>(B) : 0;  // each example's share of the batch mean
  std::vector<LatentLoss> out(static_cast<size_t>(B));
  // Sequences of the given lengths laid end to end, in a kept Seq: its buffers only grow, and every
  // row a pass reads is written by it first (embeddings, head outputs, blocks), except the keys'
  // and values' gradients, which accumulate and are zeroed here.
  auto make_seq = [&](std::shared_ptr<Seq>& kept, const std::vector<int64_t>& lens) -> Seq& {
    if (!kept) kept = std::make_shared<Seq>();
    Seq& s = *kept;
    s.T = 0;
    s.pos.clear();
    s.seq_start.clear();
    s.weights.clear();
    for (int64_t n : lens) {
      for (int64_t t = 0; t < n; ++t) {
        s.pos.push_back(static_cast<int32_t>(t));
        s.seq_start.push_back(s.T);
      }
      s.T += n;
    }
    s.X.resize(static_cast<size_t>(L + 1));
    for (auto& x : s.X) x.resize(static_cast<size_t>(s.T * d));
    s.tapes.resize(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) {
      s.weights.push_back(layer_weights(static_cast<int>(l)));
      BlockTape& t = s.tapes[static_cast<size_t>(l)];
      t.resize(s.T, hp, s.weights.back());
      t.dk.assign(static_cast<size_t>(s.T * hp.n_head_kv * hp.head_dim), 0.0f);
      t.dv.assign(t.dk.size(), 0.0f);
    }
    return s;
  };
  // rows predicting labels[j] (aligned with the ids starting at row `first`): row first + j - 1
  auto targets_of = [](const std::vector<int32_t>& labels, int64_t first, int64_t seq0, std::vector<int64_t>& rows,
                       std::vector<int32_t>& tg) {
    for (size_t j = 0; j < labels.size(); ++j)
      if (labels[j] >= 0 && first + static_cast<int64_t>(j) - 1 >= seq0) {
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
  auto embed_ranges = [&](Seq& s, const Ranges& rg, const std::vector<const int32_t*>& ids) {
    for (size_t i = 0; i < rg.size(); ++i) embed(ids[i], rg[i].second, s.X[0].data() + rg[i].first * d);
  };
  auto embed_backward = [&](const std::vector<float>& dtop, const Ranges& rg, const std::vector<const int32_t*>& ids) {
    if (!p_tok_) return;
    for (size_t i = 0; i < rg.size(); ++i) embedding_backward(p_tok_->g.data(), dtop.data() + rg[i].first * d, ids[i], rg[i].second, d);
  };
  if (traces) traces->assign(static_cast<size_t>(B), {});

  // ---- teachers (CODI, LM), all in one packed pass: their states are the distillation targets
  // (detached); their CE is trained too.
  std::vector<std::vector<float>> t_states(static_cast<size_t>(B));
  if (codi || lm) {
    std::vector<int64_t> lens;
    for (const auto& ex : mb) lens.push_back(static_cast<int64_t>(ex.teacher.size()));
    Seq& t = make_seq(teacher_seq_, lens);
    Ranges all = {{0, t.T}};
    Ranges each;
    std::vector<const int32_t*> ids;
    for (int64_t b = 0, o = 0; b < B; o += lens[static_cast<size_t>(b)], ++b) {
      each.push_back({o, lens[static_cast<size_t>(b)]});
      ids.push_back(mb[static_cast<size_t>(b)].teacher.data());
    }
    embed_ranges(t, each, ids);
    run_chunk(t, all);
    std::vector<float>& dtop = dtop_teacher_;
    const bool grad = backward && teacher_factor > 0;
    if (grad) dtop.assign(static_cast<size_t>(t.T * d), 0.0f);
    for (int64_t b = 0; b < B; ++b) {
      const LatentExample& ex = mb[static_cast<size_t>(b)];
      LatentLoss& lo = out[static_cast<size_t>(b)];
      const int64_t o = each[static_cast<size_t>(b)].first;
      if (codi) t_states[static_cast<size_t>(b)] = states(t, o + ex.teacher_distill);
      std::vector<int64_t> rows;
      std::vector<int32_t> tg;
      targets_of(ex.teacher_labels, o, o, rows, tg);
      lo.ref_tokens = static_cast<int64_t>(rows.size());
      lo.tokens += lens[static_cast<size_t>(b)];
      if (!rows.empty()) {
        const double scale = w * teacher_factor / static_cast<double>(rows.size());
        lo.ref_ce = ce_rows(t, rows, tg, scale, grad ? &dtop : nullptr) / static_cast<double>(rows.size());
      }
      if (traces) (*traces)[static_cast<size_t>(b)].teacher_states = t_states[static_cast<size_t>(b)];
      if (lm) lo.total = lo.ref_ce;
    }
    if (grad) {
      backward_chunk(t, all, dtop, {});
      embed_backward(dtop, each, ids);
    }
    if (lm) return out;
  }

  // ---- students, fed together: every prompt, then latent step k of every example, then every suffix
  std::vector<int64_t> lens, off;
  for (const auto& ex : mb) lens.push_back(static_cast<int64_t>(ex.prompt.size() + ex.suffix.size()) + N);
  Seq& s = make_seq(student_seq_, lens);
  Ranges prompts, suffixes;
  std::vector<const int32_t*> prompt_ids, suffix_ids;
  for (int64_t b = 0, o = 0; b < B; o += lens[static_cast<size_t>(b)], ++b) {
    const LatentExample& ex = mb[static_cast<size_t>(b)];
    const int64_t np = static_cast<int64_t>(ex.prompt.size());
    off.push_back(o);
    prompts.push_back({o, np});
    suffixes.push_back({o + np + N, static_cast<int64_t>(ex.suffix.size())});
    prompt_ids.push_back(ex.prompt.data());
    suffix_ids.push_back(ex.suffix.data());
    out[static_cast<size_t>(b)].tokens += static_cast<int64_t>(ex.prompt.size() + ex.suffix.size());
  }
  auto latent_ranges = [&](int64_t k) {
    Ranges r;
    for (int64_t b = 0; b < B; ++b) r.push_back({prompts[static_cast<size_t>(b)].first + prompts[static_cast<size_t>(b)].second + k, 1});
    return r;
  };
  const LatentHeadWeights hw = head_weights();
  // h[k]: [B, d] the final states the head reads at step k; e[k] = head(h[k])
  std::vector<std::vector<float>> h(static_cast<size_t>(N + 1)), e(static_cast<size_t>(N + 1));
  std::vector<int64_t> src(static_cast<size_t>(B));
  embed_ranges(s, prompts, prompt_ids);
  run_chunk(s, prompts);
  for (int64_t k = 0; k <= N; ++k) {
    for (int64_t b = 0; b < B; ++b) src[static_cast<size_t>(b)] = prompts[static_cast<size_t>(b)].first + prompts[static_cast<size_t>(b)].second + k - 1;
    std::vector<float> top(static_cast<size_t>(B * d));
    gather_rows(top.data(), s.X.back().data(), src, d);
    h[static_cast<size_t>(k)].resize(top.size());
    e[static_cast<size_t>(k)].resize(top.size());
    final_norm(top.data(), h[static_cast<size_t>(k)].data(), B);
    latent_head_forward(hw, h[static_cast<size_t>(k)].data(), e[static_cast<size_t>(k)].data(), B, pool_);
    if (k == N) break;  // e_N is computed but never fed
    const Ranges lr = latent_ranges(k);
    std::vector<int64_t> dst;
    for (const auto& r : lr) dst.push_back(r.first);
    scatter_rows(s.X[0].data(), e[static_cast<size_t>(k)].data(), dst, d);
    run_chunk(s, lr);
  }
  embed_ranges(s, suffixes, suffix_ids);
  run_chunk(s, suffixes);
  if (traces)
    for (int64_t b = 0; b < B; ++b) {
      auto& tr = (*traces)[static_cast<size_t>(b)];
      for (int64_t k = 0; k <= N; ++k) {
        tr.h.insert(tr.h.end(), h[static_cast<size_t>(k)].begin() + b * d, h[static_cast<size_t>(k)].begin() + (b + 1) * d);
        tr.e.insert(tr.e.end(), e[static_cast<size_t>(k)].begin() + b * d, e[static_cast<size_t>(k)].begin() + (b + 1) * d);
      }
    }

  std::vector<float>& dtop = dtop_student_;
  if (backward) dtop.assign(static_cast<size_t>(s.T * d), 0.0f);
  DistillGrads dgrads;
  for (int64_t b = 0; b < B; ++b) {
    const LatentExample& ex = mb[static_cast<size_t>(b)];
    LatentLoss& lo = out[static_cast<size_t>(b)];
    std::vector<int64_t> rows;
    std::vector<int32_t> tg;
    targets_of(ex.suffix_labels, suffixes[static_cast<size_t>(b)].first, off[static_cast<size_t>(b)], rows, tg);
    lo.ce_tokens = static_cast<int64_t>(rows.size());
    if (!rows.empty())
      lo.ce = ce_rows(s, rows, tg, w / static_cast<double>(rows.size()), backward ? &dtop : nullptr) / static_cast<double>(rows.size());

    // distillation: d_j = SmoothL1(s_j, t_j) / std(t_j), mean over the L + 1 states
    if (codi) {
      const int64_t drow = suffixes[static_cast<size_t>(b)].first + ex.student_distill;
      const std::vector<float> s_states = states(s, drow);
      const std::vector<float>& ts = t_states[static_cast<size_t>(b)];
      if (traces) (*traces)[static_cast<size_t>(b)].student_states = s_states;
      const double beta = cfg_.smooth_l1_beta, J = static_cast<double>(L + 1);
      const double gscale = w * cfg_.distill_factor;
      lo.distill_per_state.resize(static_cast<size_t>(L + 1));
      double sum = 0;
      for (int64_t j = 0; j <= L; ++j) {
        const float* sj = s_states.data() + j * d;
        const float* tj = ts.data() + j * d;
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
        lo.distill_per_state[static_cast<size_t>(j)] = dj;
        sum += dj;
        if (!backward || cfg_.distill_factor == 0) continue;
        if (j == L) {  // the final-norm state: back through the norm into the top of the stream
          std::vector<float> dx(static_cast<size_t>(d), 0.0f);
          final_norm_backward(dx.data(), g.data(), s.X.back().data() + drow * d, 1);
          axpy_f32(dtop.data() + drow * d, 1.0f, dx.data(), d);
        } else {
          dgrads.push_back({drow, j, std::move(g)});
        }
      }
      lo.distill = sum / J;
    }
    // latent targets: the row whose final state becomes e_k predicts latent_labels[k]
    if (!ex.latent_labels.empty()) {
      std::vector<int64_t> lrows;
      std::vector<int32_t> ltg;
      const int64_t first = prompts[static_cast<size_t>(b)].first + prompts[static_cast<size_t>(b)].second - 1;
      for (int64_t k = 0; k < N; ++k)
        if (ex.latent_labels[static_cast<size_t>(k)] >= 0) {
          lrows.push_back(first + k);
          ltg.push_back(ex.latent_labels[static_cast<size_t>(k)]);
        }
      lo.latent_tokens = static_cast<int64_t>(lrows.size());
      if (!lrows.empty()) {
        const double n = static_cast<double>(lrows.size());
        lo.latent_ce = ce_rows(s, lrows, ltg, w * cfg_.latent_factor / n, backward && cfg_.latent_factor > 0 ? &dtop : nullptr) / n;
      }
    }
    lo.total = lo.ce + cfg_.distill_factor * lo.distill + cfg_.ref_factor * lo.ref_ce + cfg_.latent_factor * lo.latent_ce;
  }
  if (!backward) return out;

  // ---- students backward: suffixes, then each latent step (its input gradient goes through the
  // head into the row before it), then the prompts.
  const LatentHeadGrads hg = head_grads();
  backward_chunk(s, suffixes, dtop, dgrads);
  embed_backward(dtop, suffixes, suffix_ids);
  for (int64_t k = N - 1; k >= 0; --k) {
    const Ranges lr = latent_ranges(k);
    backward_chunk(s, lr, dtop, dgrads);
    std::vector<int64_t> rows, prev;
    for (const auto& r : lr) {
      rows.push_back(r.first);
      prev.push_back(r.first - 1);
    }
    // e_k = head(h_k), h_k = final_norm(top of the row before)
    std::vector<float> de(static_cast<size_t>(B * d)), dh(de.size(), 0.0f), dx(de.size(), 0.0f), top(de.size());
    gather_rows(de.data(), dtop.data(), rows, d);
    latent_head_backward(hw, hg, h[static_cast<size_t>(k)].data(), de.data(), dh.data(), B, pool_);
    gather_rows(top.data(), s.X.back().data(), prev, d);
    final_norm_backward(dx.data(), dh.data(), top.data(), B);
    for (int64_t b = 0; b < B; ++b) axpy_f32(dtop.data() + prev[static_cast<size_t>(b)] * d, 1.0f, dx.data() + b * d, d);
  }
  backward_chunk(s, prompts, dtop, dgrads);
  embed_backward(dtop, prompts, prompt_ids);
  return out;
}

std::vector<LatentLoss> LatentTrainer::accumulate(const std::vector<LatentExample>& mb, double weight,
                                                  std::vector<LatentTrace>* traces) {
  // From step_here this runs inline: that is on the lead already.
  return pool_.call_on_lead([&] { return accumulate_here(mb, weight, traces); });
}

std::vector<LatentLoss> LatentTrainer::accumulate_here(const std::vector<LatentExample>& mb, double weight,
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
    if (!ex.latent_labels.empty()) {
      if (static_cast<int64_t>(ex.latent_labels.size()) != cfg_.latent_steps)
        throw std::invalid_argument(where + ": latent labels has " + std::to_string(ex.latent_labels.size()) +
                                    " entries, expected one per latent step (" + std::to_string(cfg_.latent_steps) + ")");
      for (int32_t x : ex.latent_labels)
        if (x >= hp.n_vocab) throw std::invalid_argument(where + ": latent label " + std::to_string(x) + " is outside the vocabulary");
    }
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
  return batch(mb, weight, weight != 0, traces);
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
  // As Trainer::step: the step's parallel_fors run from the pool's lead thread.
  return pool_.call_on_lead([&] { return step_here(micro_batches); });
}

LatentStepResult LatentTrainer::step_here(const std::vector<std::vector<LatentExample>>& micro_batches) {
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
      r.latent_ce += k * l.latent_ce;
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
  if (t.permute_heads > 0) permute_qk_rows(v, t.shape[0], static_cast<int64_t>(v.size()) / t.shape[0], t.permute_heads, true);
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
  GgufWriter w = checkpoint_writer(kCheckpointType, kCheckpointVersion, step_, data_pos_);
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
  CheckpointHeader header = open_checkpoint(path, kCheckpointType, kCheckpointVersion, "latent-training");
  const auto& f = header.file;
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
  step_ = header.step;
  data_pos_ = header.data_position;
}

}  // namespace lro
