#include "model/block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "quant/quants.h"
#include "core/rng.h"
#include "core/thread_pool.h"

namespace lro {

const std::vector<HookPointInfo>& hook_points() {
  static const std::vector<HookPointInfo> kPoints = {
      {HookPoint::RESID_PRE, "resid_pre", true},   {HookPoint::ATTN_OUT, "attn_out", true},
      {HookPoint::RESID_MID, "resid_mid", true},   {HookPoint::MLP_OUT, "mlp_out", true},
      {HookPoint::RESID_POST, "resid_post", true}, {HookPoint::FINAL_NORM, "final_norm", false},
  };
  return kPoints;
}

namespace {
struct LinearNames {
  const char* name;
  const char* peft;
  const char* gguf;
  const char* hf;
};
const LinearNames kLinears[kBlockLinears] = {
    {"q", "q_proj", "attn_q", "self_attn.q_proj"},       {"k", "k_proj", "attn_k", "self_attn.k_proj"},
    {"v", "v_proj", "attn_v", "self_attn.v_proj"},       {"o", "o_proj", "attn_output", "self_attn.o_proj"},
    {"gate", "gate_proj", "ffn_gate", "mlp.gate_proj"}, {"up", "up_proj", "ffn_up", "mlp.up_proj"},
    {"down", "down_proj", "ffn_down", "mlp.down_proj"},
};
}  // namespace

const char* block_linear_name(int t) { return t >= 0 && t < kBlockLinears ? kLinears[t].name : "?"; }
const char* block_linear_hf_name(int t) { return t >= 0 && t < kBlockLinears ? kLinears[t].hf : "?"; }
int block_linear_from_name(const std::string& s) {
  for (int t = 0; t < kBlockLinears; ++t)
    if (s == kLinears[t].name || s == kLinears[t].peft || s == kLinears[t].gguf) return t;
  return -1;
}

const Weight& block_linear_weight(const LlamaLayer& L, int lin) {
  switch (lin) {
    case LIN_Q: return L.wq;
    case LIN_K: return L.wk;
    case LIN_V: return L.wv;
    case LIN_O: return L.wo;
    case LIN_GATE: return L.w_gate;
    case LIN_UP: return L.w_up;
    case LIN_DOWN: return L.w_down;
  }
  throw std::invalid_argument("block_linear_weight: no linear " + std::to_string(lin));
}

BlockWeights block_weights(const LlamaLayer& L) {
  BlockWeights w;
  w.attn_norm = L.attn_norm.data();
  w.ffn_norm = L.ffn_norm.data();
  for (int t = 0; t < kBlockLinears; ++t) w.lin[t].w = &block_linear_weight(L, t);
  return w;
}

float lora_file_scale(float user_scale, float alpha, int64_t rank) {
  return alpha != 0 ? user_scale * alpha / static_cast<float>(rank) : user_scale;
}

// ---------------------------------------------------------------------------------------------
// linear with LoRA terms

namespace {

// out[n, n_in] = drop(x): element e of the pass (row-major from row row0) is kept, scaled by
// 1 / (1 - p), iff a 24-bit draw of mix64(key + e) is >= p * 2^24. Applied to a gradient it is its own
// transpose (the mask is linear and elementwise).
void dropout_rows(const LoraTerm& t, const float* x, int64_t n, int64_t n_in, int64_t row0, float* out, ThreadPool& pool) {
  const double pd = t.dropout;
  const uint64_t threshold = static_cast<uint64_t>(pd * 16777216.0);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - pd));
  pool.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) {
    for (int64_t r = t0; r < t1; ++r)
      for (int64_t i = 0; i < n_in; ++i) {
        const uint64_t e = static_cast<uint64_t>((row0 + r) * n_in + i);
        out[r * n_in + i] = (mix64(t.dropout_key + e) >> 40) >= threshold ? x[r * n_in + i] * keep_scale : 0.0f;
      }
  });
}

bool drops(const LoraTerm& t, bool train) { return train && t.dropout > 0; }

}  // namespace

void linear_forward(const Linear& L, const float* x, int64_t n, int64_t row0, float* y, float* u, bool train,
                    ThreadPool& pool) {
  const Weight& w = *L.w;
  matmul(w.type, w.data, w.n_out, w.n_in, x, n, y, w.n_out, pool);  // [n, n_out]
  thread_local std::vector<float> tmp, dropped;
  for (const LoraTerm& t : L.terms) {
    const float* xin = x;
    if (drops(t, train)) {
      dropped.resize(static_cast<size_t>(n * w.n_in));
      dropout_rows(t, x, n, w.n_in, row0, dropped.data(), pool);
      xin = dropped.data();
    }
    float* ut = u && t.ga ? u : (tmp.resize(static_cast<size_t>(n * t.rank)), tmp.data());
    matmul(t.a_type, t.a, t.rank, w.n_in, xin, n, ut, t.rank, pool);  // [n, r]
    for (int64_t i = 0; i < n * t.rank; ++i) ut[i] *= t.scale;
    matmul(t.b_type, t.b, w.n_out, t.rank, ut, n, y, w.n_out, pool, true);  // [n, n_out] +=
  }
}

// dB += dy^T u, du = scale * dy B, dA += du^T drop(x), dx += dy W + drop(du A).
void linear_backward(const Linear& L, const float* x, int64_t n, int64_t row0, const float* u, const float* dy, float* dx,
                     bool train, ThreadPool& pool) {
  const Weight& w = *L.w;
  if (dx) matmul_backward(dx, dy, w.type, w.data, w.n_out, w.n_in, n, pool);  // [n, n_in] += dy W
  if (L.gw) {
    if (w.type != GgmlType::F32) throw std::logic_error("linear_backward: a trainable weight must be f32 (" + w.name + ")");
    matmul_backward_weight(L.gw, dy, x, n, w.n_out, w.n_in, pool);  // [n_out, n_in]
  }
  for (const LoraTerm& t : L.terms) {
    if (!t.ga && !dx) continue;
    const int64_t r = t.rank;
    std::vector<float> ut;
    const float* uu = u;
    if (!t.ga || !u) {  // frozen term: recompute its bottleneck
      ut.resize(static_cast<size_t>(n * r));
      std::vector<float> xin(x, x + n * w.n_in);
      if (drops(t, train)) dropout_rows(t, x, n, w.n_in, row0, xin.data(), pool);
      matmul(t.a_type, t.a, r, w.n_in, xin.data(), n, ut.data(), r, pool);
      for (float& e : ut) e *= t.scale;
      uu = ut.data();
    }
    if (t.gb) matmul_backward_weight(t.gb, dy, uu, n, w.n_out, r, pool);  // [n_out, r]
    std::vector<float> du(static_cast<size_t>(n * r), 0.0f);
    matmul_backward(du.data(), dy, t.b_type, t.b, w.n_out, r, n, pool);  // [n, r] = dy B
    for (float& e : du) e *= t.scale;
    const bool drop = drops(t, train);
    thread_local std::vector<float> scratch;
    if (t.ga) {
      const float* xin = x;
      if (drop) {
        scratch.resize(static_cast<size_t>(n * w.n_in));
        dropout_rows(t, x, n, w.n_in, row0, scratch.data(), pool);
        xin = scratch.data();
      }
      matmul_backward_weight(t.ga, du.data(), xin, n, r, w.n_in, pool);  // [r, n_in]
    }
    if (!dx) continue;
    if (!drop) {
      matmul_backward(dx, du.data(), t.a_type, t.a, r, w.n_in, n, pool);  // [n, n_in] += du A
      continue;
    }
    std::vector<float> g(static_cast<size_t>(n * w.n_in), 0.0f);
    matmul_backward(g.data(), du.data(), t.a_type, t.a, r, w.n_in, n, pool);
    scratch.resize(g.size());
    dropout_rows(t, g.data(), n, w.n_in, row0, scratch.data(), pool);
    for (size_t i = 0; i < g.size(); ++i) dx[i] += scratch[i];
  }
}

// ---------------------------------------------------------------------------------------------
// the block

void BlockTape::resize(int64_t rows, const LlamaHparams& hp, const BlockWeights& w) {
  const auto sz = [&](int64_t width) { return static_cast<size_t>(rows * width); };
  const int64_t d = hp.n_embd, q_w = hp.n_head * hp.head_dim, kv_w = hp.n_head_kv * hp.head_dim;
  for (auto* b : {&xn1, &x_mid, &xn2}) b->resize(sz(d));
  for (auto* b : {&q, &att}) b->resize(sz(q_w));
  for (auto* b : {&k, &v}) b->resize(sz(kv_w));
  for (auto* b : {&gate, &up, &h}) b->resize(sz(hp.n_ff));
  for (int t = 0; t < kBlockLinears; ++t) {
    int64_t rank = 0;
    for (const LoraTerm& term : w.lin[t].terms)
      if (term.ga) rank = term.rank;
    u_rank[t] = rank;
    u[t].resize(sz(rank));
  }
}

AttentionRows TapeKv::attend(int, const float*, const float*, int64_t n, bool* kv_f16) {
  // The rows' keys are already on the tape (block_forward wrote them there).
  kp_.resize(static_cast<size_t>(n));
  vp_.resize(kp_.size());
  cp_.resize(kp_.size());
  nc_.resize(kp_.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = run_.row0 + i, s0 = run_.seq_start ? run_.seq_start[t] : 0;
    kp_[i] = tape_.k.data() + s0 * kv_w_;
    vp_[i] = tape_.v.data() + s0 * kv_w_;
    cp_[i] = run_.pos + s0;
    nc_[i] = t - s0 + 1;
  }
  *kv_f16 = false;
  return AttentionRows{kp_.data(), vp_.data(), cp_.data(), nc_.data(), run_.pos + run_.row0};
}

void block_forward(const BlockContext& c, int layer, const BlockWeights& w, const BlockRun& r, float* x_in, float* x_out,
                   BlockTape& a, BlockKv& kv) {
  const LlamaHparams& hp = c.hp;
  const int64_t n = r.n, r0 = r.row0, d = hp.n_embd, hd = hp.head_dim, q_w = hp.n_head * hd, kv_w = hp.n_head_kv * hd;
  const int32_t* pos = r.pos + r0;
  const bool kept = r.keep != nullptr;
  if (kept && (r.hook || r.train || r.n_keep <= 0 || r.n_keep >= n))
    throw std::logic_error("block_forward: kept rows need 0 < n_keep < n, no hooks and no training");
  const int64_t m = kept ? r.n_keep : n;  // rows that go on past attention's keys and values
  auto hook = [&](HookPoint p, float* x) {
    if (r.hook && *r.hook) (*r.hook)(p, layer, x, n, d);
  };
  auto lin = [&](int t, const float* x, int64_t rows, float* y) {
    float* u = a.u_rank[t] > 0 ? a.u[t].data() + r0 * a.u_rank[t] : nullptr;
    linear_forward(w.lin[t], x, rows, r0, y, u, r.train, c.pool);
  };
  float* xn1 = a.xn1.data() + r0 * d;
  float* q = a.q.data() + r0 * q_w;
  float* k = a.k.data() + r0 * kv_w;
  float* v = a.v.data() + r0 * kv_w;
  float* att = a.att.data() + r0 * q_w;
  float* x_mid = a.x_mid.data() + r0 * d;
  float* xn2 = a.xn2.data() + r0 * d;
  float* gate = a.gate.data() + r0 * hp.n_ff;
  float* up = a.up.data() + r0 * hp.n_ff;
  float* h = a.h.data() + r0 * hp.n_ff;

  hook(HookPoint::RESID_PRE, x_in);
  rmsnorm_forward(xn1, x_in, w.attn_norm, n, d, hp.rms_eps, c.pool);  // [n, d]
  // Kept rows: their normed inputs (in xn2, free until the MLP) and positions, packed.
  const float* xq = xn1;
  const int32_t* qpos = pos;
  std::vector<int32_t> kept_pos;
  if (kept) {
    for (int64_t i = 0; i < m; ++i) std::memcpy(xn2 + i * d, xn1 + r.keep[i] * d, static_cast<size_t>(d) * sizeof(float));
    kept_pos.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) kept_pos[static_cast<size_t>(i)] = pos[r.keep[i]];
    xq = xn2;
    qpos = kept_pos.data();
  }
  lin(LIN_Q, xq, m, q);                                                // [m, q_w]
  lin(LIN_K, xn1, n, k);                                               // [n, kv_w]
  lin(LIN_V, xn1, n, v);                                               // [n, kv_w]
  rope_forward(q, qpos, m, hp.n_head, hd, hp.n_rot, hp.rope_base, c.rope_freqs);
  rope_forward(k, pos, n, hp.n_head_kv, hd, hp.n_rot, hp.rope_base, c.rope_freqs);
  bool kv_f16 = false;
  AttentionRows rows = kv.attend(layer, k, v, n, &kv_f16);
  std::vector<const void*> kept_k, kept_v;
  std::vector<const int32_t*> kept_cells;
  std::vector<int64_t> kept_n;
  if (kept) {  // the kept rows' entries of the view
    for (int64_t i = 0; i < m; ++i) {
      kept_k.push_back(rows.k_cells[r.keep[i]]);
      kept_v.push_back(rows.v_cells[r.keep[i]]);
      kept_cells.push_back(rows.cell_pos[r.keep[i]]);
      kept_n.push_back(rows.n_cells[r.keep[i]]);
    }
    rows = AttentionRows{kept_k.data(), kept_v.data(), kept_cells.data(), kept_n.data(), qpos};
  }
  attention_forward(att, q, rows, kv_f16, m, hp.n_head, hp.n_head_kv, hd, 1.0f / std::sqrt(static_cast<float>(hd)),
                    c.pool);                                           // [m, q_w]
  lin(LIN_O, att, m, x_mid);                                           // [m, d]
  hook(HookPoint::ATTN_OUT, x_mid);
  if (kept)
    for (int64_t i = 0; i < m; ++i) residual_forward(x_mid + i * d, x_in + r.keep[i] * d, 1, d);
  else
    residual_forward(x_mid, x_in, n, d);                               // x_mid = o + x_in
  hook(HookPoint::RESID_MID, x_mid);
  rmsnorm_forward(xn2, x_mid, w.ffn_norm, m, d, hp.rms_eps, c.pool);
  lin(LIN_GATE, xn2, m, gate);                                         // [m, ff]
  lin(LIN_UP, xn2, m, up);                                             // [m, ff]
  swiglu_forward(h, gate, up, m, hp.n_ff);                             // [m, ff]
  lin(LIN_DOWN, h, m, x_out);                                          // [m, d]
  hook(HookPoint::MLP_OUT, x_out);
  residual_forward(x_out, x_mid, m, d);                                // x_out = mlp + x_mid
  hook(HookPoint::RESID_POST, x_out);
}

void BlockKv::attend_backward(const BlockContext& c, const BlockRun& r, BlockTape& a, const float* datt, float* dq) {
  const LlamaHparams& hp = c.hp;
  const int64_t n = r.n, r0 = r.row0, hd = hp.head_dim, q_w = hp.n_head * hd, kv_w = hp.n_head_kv * hd;
  const int64_t rows = r0 + n;
  if (static_cast<int64_t>(a.dk.size()) < rows * kv_w) {
    a.dk.resize(static_cast<size_t>(rows * kv_w), 0.0f);
    a.dv.resize(a.dk.size(), 0.0f);
  }
  std::vector<int64_t> starts;
  const int64_t* seq_start = r.seq_start;
  if (!seq_start) {
    starts.assign(static_cast<size_t>(rows), 0);
    seq_start = starts.data();
  }
  attention_backward(dq, a.dk.data(), a.dv.data(), datt, a.q.data() + r0 * q_w, a.k.data(), a.v.data(), seq_start, r.pos, rows,
                     hp.n_head, hp.n_head_kv, hd, 1.0f / std::sqrt(static_cast<float>(hd)), c.pool, r0);
}

void block_backward(const BlockContext& c, int layer, const BlockWeights& w, const BlockRun& r, const float* x_in,
                    BlockTape& a, float* dx, bool need_dx_in, BlockKv& kv) {
  const LlamaHparams& hp = c.hp;
  const int64_t n = r.n, r0 = r.row0, d = hp.n_embd, hd = hp.head_dim, q_w = hp.n_head * hd, kv_w = hp.n_head_kv * hd;
  const int32_t* pos = r.pos + r0;
  BlockScratch local;
  BlockScratch& sc = r.scratch ? *r.scratch : local;
  // e zeros in v (grown on demand; freed again after use when the scratch is this call's own).
  auto zeros = [](std::vector<float>& v, int64_t e) {
    if (v.size() < static_cast<size_t>(e)) v.resize(static_cast<size_t>(e));
    std::fill_n(v.data(), e, 0.0f);
    return v.data();
  };
  auto release = [&](std::vector<float>& v) {
    if (!r.scratch) v = std::vector<float>();
  };
  auto lin = [&](int t, const float* x, const float* dy, float* dxin) {
    const float* u = a.u_rank[t] > 0 ? a.u[t].data() + r0 * a.u_rank[t] : nullptr;
    linear_backward(w.lin[t], x, n, r0, u, dy, dxin, r.train, c.pool);
  };
  const float* xn1 = a.xn1.data() + r0 * d;
  const float* att = a.att.data() + r0 * q_w;
  const float* x_mid = a.x_mid.data() + r0 * d;
  const float* xn2 = a.xn2.data() + r0 * d;
  const float* gate = a.gate.data() + r0 * hp.n_ff;
  const float* up = a.up.data() + r0 * hp.n_ff;
  const float* h = a.h.data() + r0 * hp.n_ff;

  // MLP: x_out = x_mid + down(swiglu(gate(xn2), up(xn2))); dx is also dL/dx_mid's residual part.
  float* dh = zeros(sc.dh, n * hp.n_ff);
  lin(LIN_DOWN, h, dx, dh);  // [n, ff]
  float* dgate = zeros(sc.dgate, n * hp.n_ff);
  float* dup = zeros(sc.dup, n * hp.n_ff);
  swiglu_backward(dgate, dup, dh, gate, up, n, hp.n_ff);
  release(sc.dh);
  float* dxn = zeros(sc.dxn, n * d);
  lin(LIN_GATE, xn2, dgate, dxn);
  lin(LIN_UP, xn2, dup, dxn);
  release(sc.dgate);
  release(sc.dup);
  rmsnorm_backward(dx, w.g_ffn_norm, dxn, x_mid, w.ffn_norm, n, d, hp.rms_eps, c.pool);  // dx = dL/dx_mid

  // Attention: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))).
  float* datt = zeros(sc.datt, n * q_w);
  lin(LIN_O, att, dx, datt);  // [n, q_w]
  float* dq = zeros(sc.dq, n * q_w);
  kv.attend_backward(c, r, a, datt, dq);
  release(sc.datt);
  float* dk = a.dk.data() + r0 * kv_w;  // complete: later chunks added theirs before
  float* dv = a.dv.data() + r0 * kv_w;
  rope_backward(dq, pos, n, hp.n_head, hd, hp.n_rot, hp.rope_base, c.rope_freqs);
  rope_backward(dk, pos, n, hp.n_head_kv, hd, hp.n_rot, hp.rope_base, c.rope_freqs);
  // dL/dxn1 is needed for the block's input, and for the norm weight when it is trained.
  float* dxn1 = nullptr;
  if (need_dx_in || w.g_attn_norm) dxn1 = zeros(sc.dxn, n * d);
  lin(LIN_Q, xn1, dq, dxn1);
  lin(LIN_K, xn1, dk, dxn1);
  lin(LIN_V, xn1, dv, dxn1);
  if (need_dx_in) {
    rmsnorm_backward(dx, w.g_attn_norm, dxn1, x_in, w.attn_norm, n, d, hp.rms_eps, c.pool);
  } else if (w.g_attn_norm) {
    rmsnorm_backward(zeros(sc.unused, n * d), w.g_attn_norm, dxn1, x_in, w.attn_norm, n, d, hp.rms_eps, c.pool);
  }
}

}  // namespace lro
