#include "runtime/session.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ops/ops.h"
#include "quant/quants.h"

namespace lro {

Session::Session(std::shared_ptr<const LlamaModel> model, const SessionOptions& opts)
    : model_(std::move(model)), opts_(opts), pool_(opts.threads) {
  if (model_->vocab_only())
    throw std::invalid_argument(model_->file().path() + " is a vocab-only GGUF (no weights); it can tokenize but not run");
  if (opts_.n_ctx <= 0) throw std::invalid_argument("n_ctx must be positive");
  for (const auto& l : model_->layers())
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) row_macs_ += w->n_in * w->n_out;
  row_macs_ += model_->output().n_in * model_->output().n_out;
}

Session::SeqCache& Session::seq_cache(int32_t seq) {
  auto it = seqs_.find(seq);
  if (it != seqs_.end()) return it->second;
  SeqCache& c = seqs_[seq];
  c = std::move(spare_);
  spare_ = SeqCache();
  c.k.resize(static_cast<size_t>(model_->hparams().n_layer));
  c.v.resize(static_cast<size_t>(model_->hparams().n_layer));
  return c;
}

void Session::erase_seq(std::map<int32_t, SeqCache>::iterator it) {
  SeqCache& c = it->second;
  c.pos.clear();
  for (auto& k : c.k) k.clear();
  for (auto& v : c.v) v.clear();
  spare_ = std::move(c);
  seqs_.erase(it);
}

void Session::append_kv(SeqCache& c, int layer, const float* k, const float* v) {
  const auto& hp = model_->hparams();
  const size_t w = static_cast<size_t>(hp.n_head_kv * hp.head_dim);
  auto put = [&](std::vector<uint8_t>& dst, const float* src) {
    size_t off = dst.size();
    if (opts_.kv_f16) {
      dst.resize(off + w * 2);
      auto* p = reinterpret_cast<uint16_t*>(dst.data() + off);
      for (size_t i = 0; i < w; ++i) p[i] = fp32_to_fp16(src[i]);
    } else {
      dst.resize(off + w * 4);
      std::memcpy(dst.data() + off, src, w * 4);
    }
  };
  put(c.k[static_cast<size_t>(layer)], k);
  put(c.v[static_cast<size_t>(layer)], v);
}

EvalResult Session::eval(const Batch& b, const std::atomic<bool>* cancel, EvalResult storage) {
  // Handing the eval to the pool's lead thread costs up to two thread wake-ups (~50 us here): worth it
  // from about a millisecond of work, not for a small model's token.
  if (b.n * row_macs_ < kLeadMinMacs) return eval_here(b, cancel, storage);
  return pool_.call_on_lead([&] { return eval_here(b, cancel, storage); });
}

EvalResult Session::eval_here(const Batch& b, const std::atomic<bool>* cancel, EvalResult& storage) {
  const auto& hp = model_->hparams();
  const int64_t n = b.n, d = hp.n_embd, hd = hp.head_dim;
  const int64_t kv_w = hp.n_head_kv * hd;
  if (n <= 0) throw std::invalid_argument("batch is empty");
  if (!b.pos || !b.seq) throw std::invalid_argument("batch needs positions and sequence ids");
  if (!b.tokens == !b.embeddings) throw std::invalid_argument("batch needs either tokens or embeddings");

  // Validate everything before touching the cache, so a bad batch changes nothing.
  std::map<int32_t, int32_t> last_pos;
  std::map<int32_t, int64_t> new_cells;
  for (int64_t t = 0; t < n; ++t) {
    if (b.tokens && (b.tokens[t] < 0 || b.tokens[t] >= hp.n_vocab))
      throw std::invalid_argument("token id " + std::to_string(b.tokens[t]) + " at batch row " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(hp.n_vocab) + ")");
    if (b.pos[t] < 0) throw std::invalid_argument("negative position at batch row " + std::to_string(t));
    if (b.seq[t] < 0) throw std::invalid_argument("negative sequence id at batch row " + std::to_string(t));
    auto it = last_pos.find(b.seq[t]);
    int32_t prev = it != last_pos.end() ? it->second : seq_pos_max(b.seq[t]);
    if (b.pos[t] <= prev)
      throw std::invalid_argument("position " + std::to_string(b.pos[t]) + " at batch row " + std::to_string(t) +
                                  " of sequence " + std::to_string(b.seq[t]) + " is not above the previous position " +
                                  std::to_string(prev) + " (remove cached cells with seqRemove to re-decode)");
    last_pos[b.seq[t]] = b.pos[t];
    if (seq_cells(b.seq[t]) + ++new_cells[b.seq[t]] > opts_.n_ctx)
      throw std::invalid_argument("sequence " + std::to_string(b.seq[t]) + " would exceed the context size n_ctx = " +
                                  std::to_string(opts_.n_ctx));
  }
  for (int64_t r : b.output_rows)
    if (r < 0 || r >= n) throw std::invalid_argument("output row " + std::to_string(r) + " is outside the batch");

  // Snapshot cell counts so a cancelled or failed eval leaves the cache as it was.
  std::map<int32_t, size_t> cells_before;
  for (auto& kv : new_cells) cells_before[kv.first] = static_cast<size_t>(seq_cells(kv.first));
  auto rollback = [&] {
    for (auto& kv : cells_before) {
      auto it = seqs_.find(kv.first);
      if (it == seqs_.end()) continue;
      if (kv.second == 0) {
        erase_seq(it);
        continue;
      }
      SeqCache& c = it->second;
      size_t elem = opts_.kv_f16 ? 2 : 4;
      c.pos.resize(kv.second);
      for (auto& k : c.k) k.resize(std::min(k.size(), kv.second * kv_w * elem));
      for (auto& v : c.v) v.resize(std::min(v.size(), kv.second * kv_w * elem));
    }
  };

  try {
    std::vector<float>& x = x_;
    x.resize(static_cast<size_t>(n * d));
    if (b.tokens) {
      embedding_forward(x.data(), b.tokens, n, model_->tok_embd().type, model_->tok_embd().data, d);
    } else {
      std::memcpy(x.data(), b.embeddings, x.size() * sizeof(float));
    }
    auto hook = [&](HookPoint p, int layer, float* data, int64_t rows) {
      if (b.hook) b.hook(p, layer, data, rows, d);
    };

    for (auto& kv : new_cells) {
      SeqCache& c = seq_cache(kv.first);
      c.pos.reserve(c.pos.size() + static_cast<size_t>(kv.second));
    }
    for (int64_t t = 0; t < n; ++t) seq_cache(b.seq[t]).pos.push_back(b.pos[t]);

    const BlockContext ctx{hp, model_->rope_freqs().empty() ? nullptr : model_->rope_freqs().data(), pool_};
    BlockRun run;
    run.n = n;
    run.pos = b.pos;
    run.hook = b.hook ? &b.hook : nullptr;
    CacheKv kv(*this, b);
    BlockTape& tape = tape_;
    const int64_t n_out = static_cast<int64_t>(b.output_rows.size());
    // Without hooks, the last block computes past its keys and values only the rows asked for.
    const bool last_kept = !b.hook && n_out > 0 && n_out < n;
    for (int64_t l = 0; l < hp.n_layer; ++l) {
      if (cancel && cancel->load()) throw CancelledError();
      const BlockWeights w = layer_weights(static_cast<int>(l));
      tape.resize(n, hp, w);
      if (last_kept && l == hp.n_layer - 1) {
        run.keep = b.output_rows.data();
        run.n_keep = n_out;
      }
      block_forward(ctx, static_cast<int>(l), w, run, x.data(), x.data(), tape, kv);
    }
    if (n > kKeepTapeRows) tape_ = BlockTape();
    if (cancel && cancel->load()) throw CancelledError();

    EvalResult res = std::move(storage);
    res.logits.clear();
    res.final_norm.clear();
    if (n_out > 0 && (b.want_logits || b.want_final_norm || b.hook)) {
      std::vector<float> sel(static_cast<size_t>(n_out * d)), fn(sel.size());
      for (int64_t i = 0; i < n_out; ++i)  // kept: x holds the output rows packed
        std::memcpy(sel.data() + i * d, x.data() + (last_kept ? i : b.output_rows[i]) * d, d * sizeof(float));
      rmsnorm_forward(fn.data(), sel.data(), model_->output_norm().data(), n_out, d, hp.rms_eps, pool_);
      hook(HookPoint::FINAL_NORM, -1, fn.data(), n_out);
      if (b.want_logits) {
        res.logits.resize(static_cast<size_t>(n_out * hp.n_vocab));
        linear(model_->output(), fn.data(), n_out, res.logits.data());
      }
      if (b.want_final_norm) res.final_norm = std::move(fn);
    }
    if (n > kKeepTapeRows) x_ = std::vector<float>();  // after the output rows were read from it
    return res;
  } catch (...) {
    rollback();
    throw;
  }
}

void Session::set_adapters(std::vector<std::pair<std::shared_ptr<const LoraAdapter>, float>> adapters) {
  adapters_ = std::move(adapters);
}

Linear Session::with_adapters(const Weight& w) const {
  Linear L;
  L.w = &w;
  for (const auto& ad : adapters_) {
    const LoraPair* p = ad.first->find(w.name);
    if (!p) continue;
    LoraTerm t;
    t.a_type = p->a.type;
    t.a = p->a.data;
    t.b_type = p->b.type;
    t.b = p->b.data;
    t.rank = p->rank;
    t.scale = lora_file_scale(ad.second, ad.first->alpha(), p->rank);
    L.terms.push_back(t);
  }
  return L;
}

BlockWeights Session::layer_weights(int layer) const {
  BlockWeights w = block_weights(model_->layers()[static_cast<size_t>(layer)]);
  if (!adapters_.empty())
    for (int t = 0; t < kBlockLinears; ++t) w.lin[t] = with_adapters(*w.lin[t].w);
  return w;
}

void Session::linear(const Weight& w, const float* x, int64_t n, float* out) {
  linear_forward(with_adapters(w), x, n, 0, out, nullptr, false, pool_);
}

// The block's keys and values go into (and come from) each row's sequence cache.
AttentionRows Session::CacheKv::attend(int layer, const float* k, const float* v, int64_t n, bool* kv_f16) {
  const auto& hp = s_.model_->hparams();
  const int64_t kv_w = hp.n_head_kv * hp.head_dim;
  for (int64_t t = 0; t < n; ++t) s_.append_kv(s_.seq_cache(b_.seq[t]), layer, k + t * kv_w, v + t * kv_w);
  // Pointers are taken after all appends of this layer (appending may reallocate).
  kp_.resize(static_cast<size_t>(n));
  vp_.resize(kp_.size());
  cp_.resize(kp_.size());
  nc_.resize(kp_.size());
  for (int64_t t = 0; t < n; ++t) {
    SeqCache& c = s_.seqs_.find(b_.seq[t])->second;
    kp_[t] = c.k[static_cast<size_t>(layer)].data();
    vp_[t] = c.v[static_cast<size_t>(layer)].data();
    cp_[t] = c.pos.data();
    nc_[t] = static_cast<int64_t>(c.pos.size());
  }
  *kv_f16 = s_.opts_.kv_f16;
  return AttentionRows{kp_.data(), vp_.data(), cp_.data(), nc_.data(), b_.pos};
}

void Session::seq_copy(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  auto it = seqs_.find(src);
  if (src == dst) throw std::invalid_argument("seq_copy: source and destination are both " + std::to_string(src));
  if (auto old = seqs_.find(dst); old != seqs_.end()) erase_seq(old);
  if (it == seqs_.end()) return;
  const SeqCache& s = it->second;
  SeqCache& c = seq_cache(dst);
  const auto& hp = model_->hparams();
  const size_t row = static_cast<size_t>(hp.n_head_kv * hp.head_dim) * (opts_.kv_f16 ? 2 : 4);
  for (size_t i = 0; i < s.pos.size(); ++i) {
    if (s.pos[i] < p0 || (p1 >= 0 && s.pos[i] >= p1)) continue;
    c.pos.push_back(s.pos[i]);
    for (size_t l = 0; l < s.k.size(); ++l) {
      c.k[l].insert(c.k[l].end(), s.k[l].begin() + i * row, s.k[l].begin() + (i + 1) * row);
      c.v[l].insert(c.v[l].end(), s.v[l].begin() + i * row, s.v[l].begin() + (i + 1) * row);
    }
  }
}

void Session::seq_remove(int32_t seq, int32_t p0, int32_t p1) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  if (p0 <= 0 && p1 < 0) {
    erase_seq(it);
    return;
  }
  SeqCache& c = it->second;
  const auto& hp = model_->hparams();
  const size_t row = static_cast<size_t>(hp.n_head_kv * hp.head_dim) * (opts_.kv_f16 ? 2 : 4);
  size_t w = 0;
  for (size_t i = 0; i < c.pos.size(); ++i) {
    bool drop = c.pos[i] >= p0 && (p1 < 0 || c.pos[i] < p1);
    if (drop) continue;
    if (w != i) {
      c.pos[w] = c.pos[i];
      for (size_t l = 0; l < c.k.size(); ++l) {
        std::memmove(c.k[l].data() + w * row, c.k[l].data() + i * row, row);
        std::memmove(c.v[l].data() + w * row, c.v[l].data() + i * row, row);
      }
    }
    ++w;
  }
  c.pos.resize(w);
  for (auto& k : c.k) k.resize(w * row);
  for (auto& v : c.v) v.resize(w * row);
}

int32_t Session::seq_pos_max(int32_t seq) const {
  // Cells stay sorted by position: eval appends increasing positions, copy/remove keep order.
  auto it = seqs_.find(seq);
  return it == seqs_.end() || it->second.pos.empty() ? -1 : it->second.pos.back();
}

int64_t Session::seq_cells(int32_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.pos.size());
}

}  // namespace lro
