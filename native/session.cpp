#include "session.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ops.h"
#include "quants.h"

namespace lro {

const char* hook_point_name(HookPoint p) {
  switch (p) {
    case HookPoint::RESID_PRE: return "resid_pre";
    case HookPoint::ATTN_OUT: return "attn_out";
    case HookPoint::RESID_MID: return "resid_mid";
    case HookPoint::MLP_OUT: return "mlp_out";
    case HookPoint::RESID_POST: return "resid_post";
    case HookPoint::FINAL_NORM: return "final_norm";
  }
  return "?";
}

Session::Session(std::shared_ptr<const LlamaModel> model, const SessionOptions& opts)
    : model_(std::move(model)), opts_(opts), pool_(opts.threads) {
  if (model_->vocab_only())
    throw std::invalid_argument(model_->file().path() + " is a vocab-only GGUF (no weights); it can tokenize but not run");
  if (opts_.n_ctx <= 0) throw std::invalid_argument("n_ctx must be positive");
}

Session::SeqCache& Session::seq_cache(int32_t seq) {
  auto it = seqs_.find(seq);
  if (it != seqs_.end()) return it->second;
  SeqCache& c = seqs_[seq];
  c.k.resize(static_cast<size_t>(model_->hparams().n_layer));
  c.v.resize(static_cast<size_t>(model_->hparams().n_layer));
  return c;
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

EvalResult Session::eval(const Batch& b, const std::atomic<bool>* cancel) {
  const auto& hp = model_->hparams();
  const int64_t n = b.n, d = hp.n_embd, hd = hp.head_dim;
  const int64_t q_w = hp.n_head * hd, kv_w = hp.n_head_kv * hd;
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
        seqs_.erase(it);
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
    std::vector<float> x(static_cast<size_t>(n * d)), xn(x.size()), q(static_cast<size_t>(n * q_w)),
        k(static_cast<size_t>(n * kv_w)), v(k.size()), att(q.size()), proj(x.size()),
        gate(static_cast<size_t>(n * hp.n_ff)), up(gate.size());
    if (b.tokens) {
      embedding_forward(x.data(), b.tokens, n, model_->tok_embd().type, model_->tok_embd().data, d);
    } else {
      std::memcpy(x.data(), b.embeddings, x.size() * sizeof(float));
    }
    auto hook = [&](HookPoint p, int layer, float* data, int64_t rows) {
      if (b.hook) b.hook(p, layer, data, rows, d);
    };
    auto mm = [&](const Weight& w, const float* in, float* out) { linear(w, in, n, out); };

    for (auto& kv : new_cells) {
      SeqCache& c = seq_cache(kv.first);
      c.pos.reserve(c.pos.size() + static_cast<size_t>(kv.second));
    }
    for (int64_t t = 0; t < n; ++t) seq_cache(b.seq[t]).pos.push_back(b.pos[t]);

    const float* freqs = model_->rope_freqs().empty() ? nullptr : model_->rope_freqs().data();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<const void*> kp(static_cast<size_t>(n)), vp(static_cast<size_t>(n));
    std::vector<const int32_t*> cp(static_cast<size_t>(n));
    std::vector<int64_t> nc(static_cast<size_t>(n));

    for (int64_t l = 0; l < hp.n_layer; ++l) {
      if (cancel && cancel->load()) throw CancelledError();
      const LlamaLayer& L = model_->layers()[static_cast<size_t>(l)];
      const int li = static_cast<int>(l);
      hook(HookPoint::RESID_PRE, li, x.data(), n);
      rmsnorm_forward(xn.data(), x.data(), L.attn_norm.data(), n, d, hp.rms_eps, pool_);
      mm(L.wq, xn.data(), q.data());
      mm(L.wk, xn.data(), k.data());
      mm(L.wv, xn.data(), v.data());
      rope_forward(q.data(), b.pos, n, hp.n_head, hd, hp.n_rot, hp.rope_base, freqs);
      rope_forward(k.data(), b.pos, n, hp.n_head_kv, hd, hp.n_rot, hp.rope_base, freqs);
      for (int64_t t = 0; t < n; ++t)
        append_kv(seq_cache(b.seq[t]), li, k.data() + t * kv_w, v.data() + t * kv_w);
      // Pointers are taken after all appends of this layer (appending may reallocate).
      for (int64_t t = 0; t < n; ++t) {
        SeqCache& c = seqs_.find(b.seq[t])->second;
        kp[t] = c.k[l].data();
        vp[t] = c.v[l].data();
        cp[t] = c.pos.data();
        nc[t] = static_cast<int64_t>(c.pos.size());
      }
      AttentionRows rows{kp.data(), vp.data(), cp.data(), nc.data(), b.pos};
      attention_forward(att.data(), q.data(), rows, opts_.kv_f16, n, hp.n_head, hp.n_head_kv, hd, scale, pool_);
      mm(L.wo, att.data(), proj.data());
      hook(HookPoint::ATTN_OUT, li, proj.data(), n);
      residual_forward(x.data(), proj.data(), n, d);
      hook(HookPoint::RESID_MID, li, x.data(), n);
      rmsnorm_forward(xn.data(), x.data(), L.ffn_norm.data(), n, d, hp.rms_eps, pool_);
      mm(L.w_gate, xn.data(), gate.data());
      mm(L.w_up, xn.data(), up.data());
      swiglu_forward(gate.data(), gate.data(), up.data(), n, hp.n_ff);
      mm(L.w_down, gate.data(), proj.data());
      hook(HookPoint::MLP_OUT, li, proj.data(), n);
      residual_forward(x.data(), proj.data(), n, d);
      hook(HookPoint::RESID_POST, li, x.data(), n);
    }
    if (cancel && cancel->load()) throw CancelledError();

    EvalResult res;
    const int64_t n_out = static_cast<int64_t>(b.output_rows.size());
    if (n_out > 0 && (b.want_logits || b.want_final_norm || b.hook)) {
      std::vector<float> sel(static_cast<size_t>(n_out * d)), fn(sel.size());
      for (int64_t i = 0; i < n_out; ++i)
        std::memcpy(sel.data() + i * d, x.data() + b.output_rows[i] * d, d * sizeof(float));
      rmsnorm_forward(fn.data(), sel.data(), model_->output_norm().data(), n_out, d, hp.rms_eps, pool_);
      hook(HookPoint::FINAL_NORM, -1, fn.data(), n_out);
      if (b.want_logits) {
        res.logits.resize(static_cast<size_t>(n_out * hp.n_vocab));
        linear(model_->output(), fn.data(), n_out, res.logits.data());
      }
      if (b.want_final_norm) res.final_norm = std::move(fn);
    }
    return res;
  } catch (...) {
    rollback();
    throw;
  }
}

void Session::set_adapters(std::vector<std::pair<std::shared_ptr<const LoraAdapter>, float>> adapters) {
  adapters_ = std::move(adapters);
}

void Session::linear(const Weight& w, const float* x, int64_t n, float* out) {
  matmul(w.type, w.data, w.n_out, w.n_in, x, n, out, w.n_out, pool_);
  for (const auto& ad : adapters_) {
    const LoraPair* p = ad.first->find(w.name);
    if (!p) continue;
    // llama.cpp's convention: alpha 0 means no alpha/r factor.
    float s = ad.first->alpha() != 0 ? ad.second * ad.first->alpha() / static_cast<float>(p->rank) : ad.second;
    lora_tmp_.resize(static_cast<size_t>(n * p->rank));
    matmul(p->a.type, p->a.data, p->rank, w.n_in, x, n, lora_tmp_.data(), p->rank, pool_);
    for (float& v : lora_tmp_) v *= s;
    matmul(p->b.type, p->b.data, w.n_out, p->rank, lora_tmp_.data(), n, out, w.n_out, pool_, true);
  }
}

void Session::seq_copy(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  auto it = seqs_.find(src);
  if (src == dst) throw std::invalid_argument("seq_copy: source and destination are both " + std::to_string(src));
  seqs_.erase(dst);
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
    seqs_.erase(it);
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

std::vector<int32_t> Session::seq_ids() const {
  std::vector<int32_t> ids;
  for (auto& kv : seqs_) ids.push_back(kv.first);
  return ids;
}

}  // namespace lro
