#include "train/train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>


#include "core/gguf.h"
#include "model/lora_adapter.h"
#include "ops/ops.h"
#include "quant/quants.h"
#include "core/rng.h"
#include "train/checkpoint_file.h"

namespace lro {

namespace {

constexpr const char* kCheckpointType = "lro-train-checkpoint";
constexpr uint32_t kCheckpointVersion = 1;



}  // namespace

// The rows of one packed pass: examples laid end to end, each with positions 0..n_b-1.
struct Trainer::Pass {
  int64_t n = 0;
  bool train = false;      // dropout on
  uint64_t rng = 0;        // dropout stream position of this pass
  std::vector<int32_t> tokens, pos, targets;  // targets[t]: label of row t+1 of the same example, or -1
  std::vector<int64_t> seq_start;
  std::vector<int64_t> inj_rows, inj_example, inj_index;  // packed row, example, index in the example
  std::vector<float> inj_vecs;                            // [K, d]
};

Trainer::Trainer(std::shared_ptr<const LlamaModel> model, const LoraConfig& lora, const OptimConfig& optim,
                 const TrainOptions& opts)
    : model_(std::move(model)), lora_(lora), optim_(optim), opts_(opts), pool_(opts.threads) {
  if (model_->vocab_only()) throw std::invalid_argument("cannot train a vocab-only model");
  const auto& hp = model_->hparams();
  if (opts_.inject_layer < -1 || opts_.inject_layer >= hp.n_layer)
    throw std::invalid_argument("inject_layer " + std::to_string(opts_.inject_layer) + " is outside [-1, " +
                                std::to_string(hp.n_layer) + ")");
  if (lora_.dropout < 0 || lora_.dropout >= 1) throw std::invalid_argument("LoRA dropout must be in [0, 1)");
  validate(optim_);
  if (lora_.init_adapter.empty())
    init_fresh();
  else
    init_from_adapter(lora_.init_adapter);
}

Trainer::~Trainer() = default;

void Trainer::build_params() {
  const auto& hp = model_->hparams();
  slot_.assign(static_cast<size_t>(hp.n_layer * kLoraTargets), nullptr);
  for (auto& p : params_) {
    p.ga.assign(p.a.size(), 0.0f);
    p.gb.assign(p.b.size(), 0.0f);
    p.ma.assign(p.a.size(), 0.0f);
    p.va.assign(p.a.size(), 0.0f);
    p.mb.assign(p.b.size(), 0.0f);
    p.vb.assign(p.b.size(), 0.0f);
  }
  for (auto& p : params_) slot_[static_cast<size_t>(p.layer * kLoraTargets + p.target)] = &p;
}

void Trainer::init_fresh() {
  const auto& hp = model_->hparams();
  if (lora_.rank <= 0) throw std::invalid_argument("LoRA rank must be positive");
  std::vector<bool> on(kLoraTargets, false);
  for (const auto& t : lora_.targets) {
    int i = block_linear_from_name(t);
    if (i < 0) throw std::invalid_argument("unknown LoRA target '" + t + "' (expected q, k, v, o, gate, up, down)");
    on[static_cast<size_t>(i)] = true;
  }
  const float scale = lora_.rslora ? lora_.alpha / std::sqrt(static_cast<float>(lora_.rank))
                                   : lora_.alpha / static_cast<float>(lora_.rank);
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!on[static_cast<size_t>(t)]) continue;
      const Weight& w = block_linear_weight(model_->layers()[static_cast<size_t>(l)], t);
      LoraParam p;
      p.weight = w.name;
      p.layer = static_cast<int>(l);
      p.target = t;
      p.base = &w;
      p.rank = lora_.rank;
      p.n_in = w.n_in;
      p.n_out = w.n_out;
      p.scale = scale;
      p.a.resize(static_cast<size_t>(p.rank * p.n_in));
      p.b.assign(static_cast<size_t>(p.n_out * p.rank), 0.0f);
      // One stream per matrix, so adding or removing a target leaves the others' init unchanged.
      const double bound = 1.0 / std::sqrt(static_cast<double>(p.n_in));
      const uint64_t s = mix64(lora_.init_seed ^ mix64(static_cast<uint64_t>(l * kLoraTargets + t) + 1));
      for (size_t i = 0; i < p.a.size(); ++i) {
        double u01 = static_cast<double>(mix64(s + i) >> 11) * (1.0 / 9007199254740992.0);
        p.a[i] = static_cast<float>((2.0 * u01 - 1.0) * bound);
      }
      params_.push_back(std::move(p));
    }
  }
  if (params_.empty()) throw std::invalid_argument("no LoRA targets");
  build_params();
}

// path: a GGUF adapter (a PEFT one is converted by the caller: convert::AdapterAsGguf).
void Trainer::init_from_adapter(const std::string& path) {
  const auto& hp = model_->hparams();
  auto ad = LoraAdapter::load(path, *model_);
  auto f = GgufFile::open(path);
  const bool rslora = f->find("lro.adapter.use_rslora") && f->get("lro.adapter.use_rslora").as_bool("lro.adapter.use_rslora");
  lora_.targets.clear();
  lora_.rank = 0;
  lora_.alpha = ad->alpha();
  lora_.rslora = rslora;
  if (rslora && f->find("lro.adapter.peft_alpha")) lora_.alpha = static_cast<float>(f->get_float("lro.adapter.peft_alpha", 0));
  std::vector<bool> seen(kLoraTargets, false);
  for (const auto& kv : ad->pairs()) {
    int layer = -1, target = -1;
    for (int64_t l = 0; l < hp.n_layer && target < 0; ++l)
      for (int t = 0; t < kLoraTargets; ++t)
        if (block_linear_weight(model_->layers()[static_cast<size_t>(l)], t).name == kv.first) {
          layer = static_cast<int>(l);
          target = t;
          break;
        }
    if (target < 0) throw std::invalid_argument(path + ": LoRA on '" + kv.first + "' cannot be trained (only the block matrices q k v o gate up down)");
    const LoraPair& pr = kv.second;
    const Weight& w = block_linear_weight(model_->layers()[static_cast<size_t>(layer)], target);
    LoraParam p;
    p.weight = w.name;
    p.layer = layer;
    p.target = target;
    p.base = &w;
    p.rank = pr.rank;
    p.n_in = w.n_in;
    p.n_out = w.n_out;
    p.scale = lora_file_scale(1.0f, ad->alpha(), pr.rank);
    p.a.resize(static_cast<size_t>(p.rank * p.n_in));
    p.b.resize(static_cast<size_t>(p.n_out * p.rank));
    for (int64_t r = 0; r < p.rank; ++r)
      dequantize_row(pr.a.type, pr.a.data + row_size(pr.a.type, p.n_in) * static_cast<size_t>(r), p.a.data() + r * p.n_in, p.n_in);
    for (int64_t o = 0; o < p.n_out; ++o)
      dequantize_row(pr.b.type, pr.b.data + row_size(pr.b.type, p.rank) * static_cast<size_t>(o), p.b.data() + o * p.rank, p.rank);
    lora_.rank = std::max(lora_.rank, p.rank);
    seen[static_cast<size_t>(target)] = true;
    params_.push_back(std::move(p));
  }
  if (params_.empty()) throw std::invalid_argument(path + ": the adapter has no LoRA pairs");
  for (int t = 0; t < kLoraTargets; ++t)
    if (seen[static_cast<size_t>(t)]) lora_.targets.push_back(block_linear_name(t));
  std::sort(params_.begin(), params_.end(), [](const LoraParam& x, const LoraParam& y) {
    return x.layer != y.layer ? x.layer < y.layer : x.target < y.target;
  });
  build_params();
}

LoraParam* Trainer::find(const std::string& weight) {
  for (auto& p : params_)
    if (p.weight == weight) return &p;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// one block: the engine's block (block.h) with this trainer's LoRA terms

BlockWeights Trainer::layer_weights(const Pass& p, int layer) {
  BlockWeights w = block_weights(model_->layers()[static_cast<size_t>(layer)]);
  for (int t = 0; t < kLoraTargets; ++t) {
    LoraParam* lp = param_for(layer, t);
    if (!lp) continue;
    LoraTerm term;
    term.a = lp->a.data();
    term.b = lp->b.data();
    term.rank = lp->rank;
    term.scale = lp->scale;
    term.ga = lp->ga.data();
    term.gb = lp->gb.data();
    term.dropout = lora_.dropout;
    // A pure function of (seed, pass, layer, target): backward and a recomputed forward regenerate the masks.
    term.dropout_key = mix64(opts_.seed ^ mix64(p.rng ^ mix64(static_cast<uint64_t>(layer * kLoraTargets + t))));
    w.lin[t].terms.push_back(term);
  }
  return w;
}

void Trainer::layer_forward(Pass& p, int layer, const float* x_in, float* x_out, BlockTape& a) {
  const BlockWeights w = layer_weights(p, layer);
  a.resize(p.n, model_->hparams(), w);
  BlockRun run;
  run.n = p.n;
  run.pos = p.pos.data();
  run.seq_start = p.seq_start.data();
  run.train = p.train;
  TapeKv kv(a, run, model_->hparams().n_head_kv * model_->hparams().head_dim);
  block_forward(block_context(), layer, w, run, const_cast<float*>(x_in), x_out, a, kv);
}

void Trainer::layer_backward(Pass& p, int layer, const float* x_in, BlockTape& a, float* dx, bool need_dx_in) {
  const BlockWeights w = layer_weights(p, layer);
  BlockRun run;
  run.n = p.n;
  run.pos = p.pos.data();
  run.seq_start = p.seq_start.data();
  run.train = p.train;
  run.scratch = &scratch_;
  std::fill(a.dk.begin(), a.dk.end(), 0.0f);
  std::fill(a.dv.begin(), a.dv.end(), 0.0f);
  TapeKv kv(a, run, model_->hparams().n_head_kv * model_->hparams().head_dim);
  block_backward(block_context(), layer, w, run, x_in, a, dx, need_dx_in, kv);
}

BlockContext Trainer::block_context() {
  return BlockContext{model_->hparams(), model_->rope_freqs().empty() ? nullptr : model_->rope_freqs().data(), pool_};
}

// ---------------------------------------------------------------------------------------------
// passes

double Trainer::run_pass(const std::vector<TrainExample>& mb, size_t e0, size_t e1, double grad_scale, bool backward,
                         bool train) {
  const auto& hp = model_->hparams();
  const int64_t d = hp.n_embd, n_layer = hp.n_layer;
  Pass p;
  p.train = train;
  p.rng = rng_counter_;
  for (size_t e = e0; e < e1; ++e) {
    const TrainExample& ex = mb[e];
    const int64_t off = static_cast<int64_t>(p.tokens.size()), nb = static_cast<int64_t>(ex.tokens.size());
    for (int64_t t = 0; t < nb; ++t) {
      p.tokens.push_back(ex.tokens[static_cast<size_t>(t)]);
      p.pos.push_back(static_cast<int32_t>(t));
      p.seq_start.push_back(off);
      const int32_t next = t + 1 < nb ? ex.labels[static_cast<size_t>(t + 1)] : -1;
      p.targets.push_back(next >= 0 ? next : -1);
    }
    for (size_t k = 0; k < ex.inject_positions.size(); ++k) {
      p.inj_rows.push_back(off + ex.inject_positions[k]);
      p.inj_example.push_back(static_cast<int64_t>(e));
      p.inj_index.push_back(static_cast<int64_t>(k));
    }
    p.inj_vecs.insert(p.inj_vecs.end(), ex.vectors.begin(), ex.vectors.end());
  }
  const int64_t n = p.n = static_cast<int64_t>(p.tokens.size());
  const int64_t K = static_cast<int64_t>(p.inj_rows.size());
  std::vector<float> terms(static_cast<size_t>(K * d));
  auto inject = [&](float* x) {
    inject_forward(x, d, p.inj_rows.data(), p.inj_vecs.data(), K, opts_.inject_coef, opts_.inject_eps,
                   opts_.inject_replace, terms.data());
    for (int64_t k = 0; k < K; ++k) {
      auto& dst = terms_[static_cast<size_t>(p.inj_example[static_cast<size_t>(k)])];
      std::memcpy(dst.data() + p.inj_index[static_cast<size_t>(k)] * d, terms.data() + k * d,
                  static_cast<size_t>(d) * sizeof(float));
    }
  };

  // Residual stream: every block input when training (plus the final output), else two buffers.
  const size_t n_x = backward ? static_cast<size_t>(n_layer + 1) : 2;
  if (xs_.size() < n_x) xs_.resize(n_x);
  for (size_t i = 0; i < n_x; ++i) xs_[i].resize(static_cast<size_t>(n * d));  // each is written before it is read
  auto X = [&](int64_t l) -> float* { return xs_[backward ? static_cast<size_t>(l) : static_cast<size_t>(l % 2)].data(); };
  const bool keep_all = backward && !opts_.recompute;
  if (tapes_.size() < (keep_all ? static_cast<size_t>(n_layer) : 1)) tapes_.resize(keep_all ? static_cast<size_t>(n_layer) : 1);
  auto A = [&](int64_t l) -> BlockTape& { return tapes_[keep_all ? static_cast<size_t>(l) : 0]; };

  embedding_forward(X(0), p.tokens.data(), n, model_->tok_embd().type, model_->tok_embd().data, d);  // [n, d]
  if (opts_.inject_layer == -1) inject(X(0));
  for (int64_t l = 0; l < n_layer; ++l) {
    layer_forward(p, static_cast<int>(l), X(l), X(l + 1), A(l));
    if (l == opts_.inject_layer) inject(X(l + 1));
  }

  // Only rows with a target reach the head: the final norm and logits of the others are unused.
  std::vector<int64_t> lrows;
  std::vector<int32_t> ltgt;
  for (int64_t t = 0; t < n; ++t)
    if (p.targets[static_cast<size_t>(t)] >= 0) {
      lrows.push_back(t);
      ltgt.push_back(p.targets[static_cast<size_t>(t)]);
    }
  const int64_t nl = static_cast<int64_t>(lrows.size());
  std::vector<float> xf(static_cast<size_t>(nl * d)), xn(xf.size());
  const float* xL = X(n_layer);
  for (int64_t i = 0; i < nl; ++i) std::memcpy(xf.data() + i * d, xL + lrows[i] * d, static_cast<size_t>(d) * sizeof(float));
  rmsnorm_forward(xn.data(), xf.data(), model_->output_norm().data(), nl, d, hp.rms_eps, pool_);  // [nl, d]
  const Weight& head = model_->output();
  // Only passes that draw dropout masks move the stream, so evaluating between steps changes nothing.
  if (train) ++rng_counter_;
  if (!backward) {
    return head_crossentropy_forward(xn.data(), ltgt.data(), nl, d, head.type, head.data, hp.n_vocab,
                                     opts_.ce_chunk_rows, pool_);
  }
  std::vector<float> dxn(xf.size(), 0.0f), dxf(xf.size(), 0.0f);
  if (nl == 0) return 0;  // nothing to differentiate in this pass
  const double loss_sum = head_crossentropy_backward(dxn.data(), xn.data(), ltgt.data(), nl, d, head.type, head.data,
                                                     hp.n_vocab, static_cast<float>(grad_scale), opts_.ce_chunk_rows, pool_);
  rmsnorm_backward(dxf.data(), nullptr, dxn.data(), xf.data(), model_->output_norm().data(), nl, d, hp.rms_eps, pool_);
  std::vector<float> dx(static_cast<size_t>(n * d), 0.0f);
  for (int64_t i = 0; i < nl; ++i) std::memcpy(dx.data() + lrows[i] * d, dxf.data() + i * d, static_cast<size_t>(d) * sizeof(float));

  // Blocks below the lowest adapted one need no backward at all.
  int lowest = static_cast<int>(n_layer);
  for (const auto& pr : params_) lowest = std::min(lowest, pr.layer);
  std::vector<float> scratch_out;
  for (int64_t l = n_layer - 1; l >= lowest; --l) {
    if (l == opts_.inject_layer) inject_backward(dx.data(), d, p.inj_rows.data(), K, opts_.inject_replace);
    if (opts_.recompute && l != n_layer - 1) {  // the last block's activations are still there
      // Same inputs, same dropout stream position: the recomputed activations equal the first ones.
      scratch_out.resize(static_cast<size_t>(n * d));
      layer_forward(p, static_cast<int>(l), X(l), scratch_out.data(), A(l));
    }
    layer_backward(p, static_cast<int>(l), X(l), A(l), dx.data(), l > lowest);
  }
  return loss_sum;
}

double Trainer::accumulate(const std::vector<TrainExample>& mb, double weight, int64_t* tokens, int64_t* loss_tokens) {
  return accumulate_impl(mb, weight, weight != 0, tokens, loss_tokens);
}

double Trainer::eval_loss(const std::vector<TrainExample>& examples, bool dropout) {
  return pool_.call_on_lead([&] { return accumulate_impl(examples, 0.0, dropout, nullptr, nullptr); });
}

double Trainer::accumulate_impl(const std::vector<TrainExample>& mb, double weight, bool train, int64_t* tokens,
                                int64_t* loss_tokens) {
  const auto& hp = model_->hparams();
  int64_t n_loss = 0, n_tok = 0;
  for (size_t e = 0; e < mb.size(); ++e) {
    const TrainExample& ex = mb[e];
    const std::string where = "example " + std::to_string(e);
    const int64_t nb = static_cast<int64_t>(ex.tokens.size());
    if (nb == 0) throw std::invalid_argument(where + " has no tokens");
    if (ex.labels.size() != ex.tokens.size())
      throw std::invalid_argument(where + ": labels has " + std::to_string(ex.labels.size()) + " entries, tokens " + std::to_string(nb));
    for (int64_t t = 0; t < nb; ++t) {
      const int32_t id = ex.tokens[static_cast<size_t>(t)], lb = ex.labels[static_cast<size_t>(t)];
      if (id < 0 || id >= hp.n_vocab) throw std::invalid_argument(where + ": token " + std::to_string(id) + " at " + std::to_string(t) + " is outside the vocabulary");
      if (lb >= hp.n_vocab) throw std::invalid_argument(where + ": label " + std::to_string(lb) + " at " + std::to_string(t) + " is outside the vocabulary");
      if (t > 0 && lb >= 0) ++n_loss;
    }
    for (int32_t q : ex.inject_positions)
      if (q < 0 || q >= nb) throw std::invalid_argument(where + ": injection position " + std::to_string(q) + " is outside [0, " + std::to_string(nb) + ")");
    if (ex.vectors.size() != ex.inject_positions.size() * static_cast<size_t>(hp.n_embd))
      throw std::invalid_argument(where + ": vectors has " + std::to_string(ex.vectors.size()) + " values, expected " +
                                  std::to_string(ex.inject_positions.size()) + " x " + std::to_string(hp.n_embd));
    n_tok += nb;
  }
  terms_.assign(mb.size(), {});
  for (size_t e = 0; e < mb.size(); ++e) terms_[e].assign(mb[e].vectors.size(), 0.0f);
  if (tokens) *tokens += n_tok;
  if (loss_tokens) *loss_tokens += n_loss;
  if (n_loss == 0) return 0;
  const double grad_scale = weight / static_cast<double>(n_loss);
  double total = 0;
  for (size_t e0 = 0; e0 < mb.size();) {
    size_t e1 = e0 + 1;
    int64_t len = static_cast<int64_t>(mb[e0].tokens.size());
    while (opts_.pack_tokens > 0 && e1 < mb.size() && len + static_cast<int64_t>(mb[e1].tokens.size()) <= opts_.pack_tokens)
      len += static_cast<int64_t>(mb[e1++].tokens.size());
    total += run_pass(mb, e0, e1, grad_scale, weight != 0, train);
    e0 = e1;
  }
  return total / static_cast<double>(n_loss);
}

std::vector<ParamSpan> Trainer::spans() {
  std::vector<ParamSpan> v;
  for (auto& p : params_) {
    v.push_back({p.a.data(), p.ga.data(), p.ma.data(), p.va.data(), p.a.size()});
    v.push_back({p.b.data(), p.gb.data(), p.mb.data(), p.vb.data(), p.b.size()});
  }
  return v;
}

void Trainer::zero_grad() { zero_gradients(spans()); }
double Trainer::grad_norm() const { return lro::grad_norm(const_cast<Trainer*>(this)->spans()); }
double Trainer::clip_gradients(double max_norm) { return lro::clip_gradients(spans(), max_norm); }
double Trainer::lr_at(int64_t s) const { return lro::lr_at(optim_, s); }
void Trainer::adamw_update(double lr) { lro::adamw_update(spans(), optim_, lr, ++step_, pool_); }

StepResult Trainer::step(const std::vector<std::vector<TrainExample>>& micro_batches) {
  // A step runs hundreds of parallel_fors: from the pool's own lead thread, not the caller's (see
  // ThreadPool::run_on_lead; the handoff's ~50 us is well under a step).
  return pool_.call_on_lead([&] { return step_here(micro_batches); });
}

StepResult Trainer::step_here(const std::vector<std::vector<TrainExample>>& micro_batches) {
  if (micro_batches.empty()) throw std::invalid_argument("step: no micro-batches");
  StepResult r;
  zero_grad();
  const double w = 1.0 / static_cast<double>(micro_batches.size());
  int64_t n_examples = 0;
  for (const auto& mb : micro_batches) {
    const double l = accumulate(mb, w, &r.tokens, &r.loss_tokens);
    r.micro_losses.push_back(l);
    r.loss += l * w;
    n_examples += static_cast<int64_t>(mb.size());
  }
  r.grad_norm = grad_norm();
  if (optim_.max_grad_norm > 0) r.clip_coef = clip_gradients(optim_.max_grad_norm);
  r.lr = lr_at(step_);
  adamw_update(r.lr);
  data_pos_ += n_examples;
  r.step = step_;
  return r;
}

// ---------------------------------------------------------------------------------------------
// files

void Trainer::save_adapter(const std::string& path, const std::string& name) const {
  const auto& hp = model_->hparams();
  // One alpha for the whole file (llama.cpp): every pair's scale must be that alpha over its rank.
  const double alpha_gguf = static_cast<double>(params_.front().scale) * static_cast<double>(params_.front().rank);
  for (const auto& p : params_)
    if (std::fabs(static_cast<double>(p.scale) * static_cast<double>(p.rank) - alpha_gguf) > 1e-5 * std::fabs(alpha_gguf))
      throw std::runtime_error("save_adapter: pairs have different alpha (scale x rank), which one GGUF adapter cannot express");
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "adapter");
  if (!name.empty()) w.set_string("general.name", name);
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", static_cast<float>(alpha_gguf));
  // For the PEFT converter's way back (q/k un-permutation, rsLoRA's alpha).
  w.set_u32("lro.adapter.head_count", static_cast<uint32_t>(hp.n_head));
  w.set_u32("lro.adapter.head_count_kv", static_cast<uint32_t>(hp.n_head_kv));
  if (lora_.rslora) {
    w.set_bool("lro.adapter.use_rslora", true);
    w.set_f32("lro.adapter.peft_alpha", lora_.alpha);
  }
  for (const auto& p : params_) {
    w.add_tensor(p.weight + ".lora_a", GgmlType::F32, {p.n_in, p.rank}, f32_bytes(p.a));
    w.add_tensor(p.weight + ".lora_b", GgmlType::F32, {p.rank, p.n_out}, f32_bytes(p.b));
  }
  w.write(path);
}

void Trainer::save_checkpoint(const std::string& path) const {
  GgufWriter w = checkpoint_writer(kCheckpointType, kCheckpointVersion, step_, data_pos_);
  w.set_value("lro.train.rng_counter", i64_bits(rng_counter_));
  w.set_value("lro.train.seed", i64_bits(opts_.seed));
  w.set_u32("lro.train.lora.rank", static_cast<uint32_t>(lora_.rank));
  w.set_f32("lro.train.lora.alpha", lora_.alpha);
  w.set_bool("lro.train.lora.rslora", lora_.rslora);
  w.set_f32("lro.train.lora.dropout", lora_.dropout);
  w.set_string_array("lro.train.lora.targets", lora_.targets);
  std::vector<std::string> names;
  std::vector<float> scales;
  for (const auto& p : params_) {
    names.push_back(p.weight);
    scales.push_back(p.scale);
  }
  w.set_string_array("lro.train.weights", names);
  w.set_f32_array("lro.train.scales", scales);
  // Informational: resume takes the optimizer settings from the new trainer, so they can change.
  w.set_f32("lro.train.optim.lr", static_cast<float>(optim_.lr));
  w.set_f32("lro.train.optim.weight_decay", static_cast<float>(optim_.weight_decay));
  w.set_string("lro.train.optim.schedule", lr_schedule_name(optim_.schedule));
  for (const auto& p : params_) {
    const std::vector<int64_t> ne_a = {p.n_in, p.rank}, ne_b = {p.rank, p.n_out};
    w.add_tensor(p.weight + ".lora_a", GgmlType::F32, ne_a, f32_bytes(p.a));
    w.add_tensor(p.weight + ".lora_b", GgmlType::F32, ne_b, f32_bytes(p.b));
    w.add_tensor(p.weight + ".lora_a.adam_m", GgmlType::F32, ne_a, f32_bytes(p.ma));
    w.add_tensor(p.weight + ".lora_a.adam_v", GgmlType::F32, ne_a, f32_bytes(p.va));
    w.add_tensor(p.weight + ".lora_b.adam_m", GgmlType::F32, ne_b, f32_bytes(p.mb));
    w.add_tensor(p.weight + ".lora_b.adam_v", GgmlType::F32, ne_b, f32_bytes(p.vb));
  }
  w.write(path);
}

void Trainer::load_checkpoint(const std::string& path) {
  CheckpointHeader header = open_checkpoint(path, kCheckpointType, kCheckpointVersion, "training");
  const auto& f = header.file;
  const auto& names = f->get("lro.train.weights").as_array("lro.train.weights");
  const auto& scales = f->get("lro.train.scales").as_array("lro.train.scales");
  if (names.size() != params_.size() || scales.size() != params_.size())
    throw GgufError(path + ": the checkpoint has " + std::to_string(names.size()) + " LoRA pairs, this trainer " +
                    std::to_string(params_.size()));
  // Validate everything before changing anything.
  auto tensor = [&](const std::string& name, int64_t ne0, int64_t ne1) {
    const GgufTensorInfo* t = f->find_tensor(name);
    if (!t) throw GgufError(path + ": tensor '" + name + "' is missing");
    if (t->type != GgmlType::F32 || t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1)
      throw GgufError(path + ": tensor '" + name + "' is not f32 [" + std::to_string(ne0) + ", " + std::to_string(ne1) + "]");
    return reinterpret_cast<const float*>(t->data);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const LoraParam& p = params_[i];
    if (names[i].as_string("lro.train.weights") != p.weight)
      throw GgufError(path + ": LoRA pair " + std::to_string(i) + " is '" + names[i].as_string("lro.train.weights") +
                      "', this trainer has '" + p.weight + "'");
    for (const char* s : {".lora_a", ".lora_a.adam_m", ".lora_a.adam_v"}) tensor(p.weight + s, p.n_in, p.rank);
    for (const char* s : {".lora_b", ".lora_b.adam_m", ".lora_b.adam_v"}) tensor(p.weight + s, p.rank, p.n_out);
  }
  auto copy = [](std::vector<float>& dst, const float* src) { std::memcpy(dst.data(), src, dst.size() * sizeof(float)); };
  for (size_t i = 0; i < params_.size(); ++i) {
    LoraParam& p = params_[i];
    copy(p.a, tensor(p.weight + ".lora_a", p.n_in, p.rank));
    copy(p.ma, tensor(p.weight + ".lora_a.adam_m", p.n_in, p.rank));
    copy(p.va, tensor(p.weight + ".lora_a.adam_v", p.n_in, p.rank));
    copy(p.b, tensor(p.weight + ".lora_b", p.rank, p.n_out));
    copy(p.mb, tensor(p.weight + ".lora_b.adam_m", p.rank, p.n_out));
    copy(p.vb, tensor(p.weight + ".lora_b.adam_v", p.rank, p.n_out));
    p.scale = static_cast<float>(scales[i].as_float("lro.train.scales"));
    std::fill(p.ga.begin(), p.ga.end(), 0.0f);
    std::fill(p.gb.begin(), p.gb.end(), 0.0f);
  }
  step_ = header.step;
  data_pos_ = header.data_position;
  rng_counter_ = static_cast<uint64_t>(f->get("lro.train.rng_counter").as_int("lro.train.rng_counter"));
  opts_.seed = static_cast<uint64_t>(f->get("lro.train.seed").as_int("lro.train.seed"));
  lora_.alpha = static_cast<float>(f->get_float("lro.train.lora.alpha", lora_.alpha));
  lora_.rslora = f->find("lro.train.lora.rslora") ? f->get("lro.train.lora.rslora").as_bool("lro.train.lora.rslora") : lora_.rslora;
}

}  // namespace lro
