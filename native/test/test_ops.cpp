// Every op of ops.h, one section each, as llama.cpp's test-backend-ops has one case per op: the
// forward against a reference written here in double precision, the backward against central
// finite differences of that reference (so the backward is checked against the maths, not against
// our own forward). The inputs come from op_cases.h, which the CUDA test shares.
// Usage: test_ops   (no data needed)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <stdexcept>
#include <thread>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "op_cases.h"
#include "ops/ops.h"
#include "quant/quants.h"

namespace {

using Vec = std::vector<double>;
using RefFn = std::function<Vec(const Vec&)>;

int failures = 0;

void check(double err, double tol, const std::string& what) {
  const bool ok = err <= tol;
  std::printf("%s %-44s rel err %.3g (tol %.3g)\n", ok ? "ok  " : "FAIL", what.c_str(), err, tol);
  if (!ok) ++failures;
}

Vec dbl(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// max |a - b| / max(1e-3, max |b|): one number per tensor, robust to tiny entries.
double rel_err(const std::vector<float>& a, const Vec& b) {
  double num = 0, den = 1e-3;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return a.size() == b.size() ? num / den : INFINITY;
}
double rel_err(const Vec& a, const Vec& b) { return rel_err(std::vector<float>(a.begin(), a.end()), b); }

// d/dx of sum_j g_j f(x)_j by central differences (f in double, so h can be small).
Vec numgrad(const RefFn& f, Vec x, const Vec& g, double h = 1e-6) {
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const Vec up = f(x);
    x[i] = x0 - h;
    const Vec dn = f(x);
    x[i] = x0;
    double s = 0;
    for (size_t j = 0; j < g.size(); ++j) s += g[j] * (up[j] - dn[j]);
    out[i] = s / (2 * h);
  }
  return out;
}

// x with a slice [at, at + part.size()) replaced: to differentiate one argument of several.
Vec with(Vec x, size_t at, const Vec& part) {
  std::copy(part.begin(), part.end(), x.begin() + static_cast<std::ptrdiff_t>(at));
  return x;
}
Vec slice(const Vec& x, size_t at, size_t n) { return Vec(x.begin() + static_cast<std::ptrdiff_t>(at), x.begin() + static_cast<std::ptrdiff_t>(at + n)); }
Vec concat(std::initializer_list<Vec> parts) {
  Vec out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
Vec rmsnorm_ref(const Vec& x, const Vec& w, int64_t n, int64_t d, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += x[t * d + i] * x[t * d + i];
    const double r = 1 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; ++i) y[t * d + i] = x[t * d + i] * r * w[i];
  }
  return y;
}

void test_rmsnorm(lro::ThreadPool& pool) {
  const auto c = op_cases::norm_case();
  const float eps = 1e-5f;
  std::vector<float> y(c.x.size());
  lro::rmsnorm_forward(y.data(), c.x.data(), c.w.data(), c.n, c.d, eps, pool);
  check(rel_err(y, rmsnorm_ref(dbl(c.x), dbl(c.w), c.n, c.d, eps)), 1e-6, "rmsnorm_forward");
  const auto g = op_cases::randn(c.x.size(), 1, 11);
  std::vector<float> dx(c.x.size(), 0), dw(c.w.size(), 0);
  lro::rmsnorm_backward(dx.data(), dw.data(), g.data(), c.x.data(), c.w.data(), c.n, c.d, eps, pool);
  const Vec all = concat({dbl(c.x), dbl(c.w)});
  const size_t nx = c.x.size();
  const Vec num = numgrad([&](const Vec& v) { return rmsnorm_ref(slice(v, 0, nx), slice(v, nx, c.w.size()), c.n, c.d, eps); }, all, dbl(g));
  check(rel_err(dx, slice(num, 0, nx)), 1e-5, "rmsnorm_backward dx");
  check(rel_err(dw, slice(num, nx, c.w.size())), 1e-5, "rmsnorm_backward dweight");
}

void test_embedding() {
  const int64_t V = 11, d = 16, n = 6;
  const auto table = op_cases::randn(static_cast<size_t>(V * d), 1, 21);
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7, 1};
  std::vector<float> out(static_cast<size_t>(n * d));
  lro::embedding_forward(out.data(), ids.data(), n, lro::GgmlType::F32, table.data(), d);
  Vec ref(out.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) ref[t * d + i] = table[ids[t] * d + i];
  check(rel_err(out, ref), 0, "embedding_forward (f32 table)");
  // f16 table: each value is the table's own f16 value.
  std::vector<uint16_t> t16(table.size());
  for (size_t i = 0; i < table.size(); ++i) t16[i] = lro::fp32_to_fp16(table[i]);
  lro::embedding_forward(out.data(), ids.data(), n, lro::GgmlType::F16, t16.data(), d);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) ref[t * d + i] = lro::fp16_to_fp32(t16[ids[t] * d + i]);
  check(rel_err(out, ref), 0, "embedding_forward (f16 table)");
  // The lookup is linear in the table: its gradient is the scatter of dout (row 3 twice).
  const auto g = op_cases::randn(out.size(), 1, 22);
  std::vector<float> dtable(table.size(), 0);
  lro::embedding_backward(dtable.data(), g.data(), ids.data(), n, d);
  const Vec num = numgrad(
      [&](const Vec& tb) {
        Vec o(static_cast<size_t>(n * d));
        for (int64_t t = 0; t < n; ++t)
          for (int64_t i = 0; i < d; ++i) o[t * d + i] = tb[ids[t] * d + i];
        return o;
      },
      dbl(table), dbl(g));
  check(rel_err(dtable, num), 1e-6, "embedding_backward");
}

Vec rope_ref(const Vec& x, const std::vector<int32_t>& pos, int64_t heads, int64_t hd, int64_t n_rot, double base,
             const std::vector<float>& ff) {
  Vec y = x;
  for (size_t t = 0; t < pos.size(); ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const double theta = pos[t] * std::pow(base, -2.0 * i / n_rot) / (ff.empty() ? 1.0 : ff[i]);
        const size_t a = (t * heads + h) * hd + 2 * i;
        y[a] = x[a] * std::cos(theta) - x[a + 1] * std::sin(theta);
        y[a + 1] = x[a] * std::sin(theta) + x[a + 1] * std::cos(theta);
      }
  return y;
}

void test_rope() {
  const auto c = op_cases::rope_case();
  for (bool factors : {false, true}) {
    const std::vector<float> ff = factors ? std::vector<float>{1.0f, 1.5f, 2.0f, 4.0f, 8.0f, 8.0f, 16.0f, 32.0f} : std::vector<float>{};
    const std::string tag = factors ? " (freq factors)" : "";
    std::vector<float> y = c.x;
    lro::rope_forward(y.data(), c.pos.data(), c.n, c.heads, c.hd, c.n_rot, c.base, factors ? ff.data() : nullptr);
    // Angles reach 100 rad; float angles there carry ~1e-5 of absolute error.
    check(rel_err(y, rope_ref(dbl(c.x), c.pos, c.heads, c.hd, c.n_rot, c.base, ff)), 2e-5, "rope_forward" + tag);
    const auto g = op_cases::randn(c.x.size(), 1, 31);
    std::vector<float> dx = g;
    lro::rope_backward(dx.data(), c.pos.data(), c.n, c.heads, c.hd, c.n_rot, c.base, factors ? ff.data() : nullptr);
    const Vec num = numgrad([&](const Vec& v) { return rope_ref(v, c.pos, c.heads, c.hd, c.n_rot, c.base, ff); }, dbl(c.x), dbl(g));
    check(rel_err(dx, num), 2e-5, "rope_backward" + tag);
  }
}

Vec swiglu_ref(const Vec& gate, const Vec& up) {
  Vec y(gate.size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  return y;
}

void test_swiglu() {
  const auto c = op_cases::swiglu_case();
  std::vector<float> y(c.gate.size());
  lro::swiglu_forward(y.data(), c.gate.data(), c.up.data(), c.n, c.d);
  check(rel_err(y, swiglu_ref(dbl(c.gate), dbl(c.up))), 1e-6, "swiglu_forward");
  const auto g = op_cases::randn(y.size(), 1, 41);
  std::vector<float> dg(y.size(), 0), du(y.size(), 0);
  lro::swiglu_backward(dg.data(), du.data(), g.data(), c.gate.data(), c.up.data(), c.n, c.d);
  const size_t m = y.size();
  const Vec num = numgrad([&](const Vec& v) { return swiglu_ref(slice(v, 0, m), slice(v, m, m)); }, concat({dbl(c.gate), dbl(c.up)}), dbl(g));
  check(rel_err(dg, slice(num, 0, m)), 1e-5, "swiglu_backward dgate");
  check(rel_err(du, slice(num, m, m)), 1e-5, "swiglu_backward dup");
}

void test_residual() {
  const auto c = op_cases::swiglu_case();  // any two [n, d] tensors
  std::vector<float> x = c.gate;
  lro::residual_forward(x.data(), c.up.data(), c.n, c.d);
  Vec ref(x.size());
  for (size_t i = 0; i < x.size(); ++i) ref[i] = static_cast<double>(c.gate[i]) + c.up[i];
  check(rel_err(x, ref), 1e-7, "residual_forward");
  const auto g = op_cases::randn(x.size(), 1, 51);
  std::vector<float> dy(x.size(), 0);
  lro::residual_backward(dy.data(), g.data(), c.n, c.d);
  check(rel_err(dy, dbl(g)), 0, "residual_backward");
}

// Causal GQA over one sequence at positions 0..n-1: q [n, H*hd], k/v [n, Hkv*hd].
Vec attention_ref(const Vec& q, const Vec& k, const Vec& v, int64_t n, int64_t H, int64_t Hkv, int64_t hd, double scale) {
  Vec out(static_cast<size_t>(n * H * hd), 0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / (H / Hkv);
      Vec s(static_cast<size_t>(t + 1));
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c <= t; ++c) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += q[(t * H + h) * hd + i] * k[(c * Hkv + kh) * hd + i];
        s[c] = dot * scale;
        mx = std::max(mx, s[c]);
      }
      for (auto& e : s) sum += e = std::exp(e - mx);
      for (int64_t c = 0; c <= t; ++c)
        for (int64_t i = 0; i < hd; ++i) out[(t * H + h) * hd + i] += s[c] / sum * v[(c * Hkv + kh) * hd + i];
    }
  return out;
}

// The backward of causal attention over packed sequences in double, written out per row: query
// rows [q0, n) (q, dout, dq: [n - q0, H * hd]), keys rows [seq_start[t], t] with pos <= pos[t].
// Returns {dq, dk, dv}.
std::vector<Vec> attention_backward_ref(const Vec& q, const Vec& k, const Vec& v, const Vec& dout, const std::vector<int64_t>& seq_start,
                                        const std::vector<int32_t>& pos, int64_t n, int64_t q0, int64_t H, int64_t Hkv, int64_t hd,
                                        double scale) {
  Vec dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
  const int64_t group = H / Hkv;
  for (int64_t t = q0; t < n; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / group, s0 = seq_start[t];
      const double* qv = &q[((t - q0) * H + h) * hd];
      const double* g = &dout[((t - q0) * H + h) * hd];
      std::vector<double> p(static_cast<size_t>(t - s0 + 1), 0), dp(p.size(), 0);
      double mx = -INFINITY, sum = 0, D = 0;
      for (int64_t c = s0; c <= t; ++c) {
        if (pos[c] > pos[t]) continue;
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += qv[i] * k[(c * Hkv + kh) * hd + i];
        p[c - s0] = dot * scale;
        mx = std::max(mx, p[c - s0]);
      }
      for (int64_t c = s0; c <= t; ++c) sum += p[c - s0] = pos[c] > pos[t] ? 0 : std::exp(p[c - s0] - mx);
      for (int64_t c = s0; c <= t; ++c) {
        p[c - s0] /= sum;
        for (int64_t i = 0; i < hd; ++i) dp[c - s0] += g[i] * v[(c * Hkv + kh) * hd + i];
        D += p[c - s0] * dp[c - s0];
      }
      for (int64_t c = s0; c <= t; ++c) {
        const double ds = p[c - s0] * (dp[c - s0] - D);
        for (int64_t i = 0; i < hd; ++i) {
          dq[((t - q0) * H + h) * hd + i] += scale * ds * k[(c * Hkv + kh) * hd + i];
          dk[(c * Hkv + kh) * hd + i] += scale * ds * qv[i];
          dv[(c * Hkv + kh) * hd + i] += p[c - s0] * g[i];
        }
      }
    }
  return {dq, dk, dv};
}

void test_attention(lro::ThreadPool& pool) {
  const auto c = op_cases::attention_case();
  const int64_t n = c.n, H = c.heads, Hkv = c.heads_kv, hd = c.hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<const void*> kc(n, c.k.data()), vc(n, c.v.data());
  std::vector<int32_t> pos(n);
  for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(t);
  std::vector<const int32_t*> cpos(n, pos.data());
  std::vector<int64_t> ncell(n, n), seq_start(n, 0);
  lro::AttentionRows rows{kc.data(), vc.data(), cpos.data(), ncell.data(), pos.data()};
  std::vector<float> out(c.q.size());
  lro::attention_forward(out.data(), c.q.data(), rows, false, n, H, Hkv, hd, scale, pool);
  check(rel_err(out, attention_ref(dbl(c.q), dbl(c.k), dbl(c.v), n, H, Hkv, hd, scale)), 1e-6, "attention_forward (f32 cells)");
  // f16 cells: the reference reads the same f16 values.
  std::vector<uint16_t> k16(c.k.size()), v16(c.v.size());
  Vec kr(c.k.size()), vr(c.v.size());
  for (size_t i = 0; i < k16.size(); ++i) kr[i] = lro::fp16_to_fp32(k16[i] = lro::fp32_to_fp16(c.k[i]));
  for (size_t i = 0; i < v16.size(); ++i) vr[i] = lro::fp16_to_fp32(v16[i] = lro::fp32_to_fp16(c.v[i]));
  std::vector<const void*> kc16(n, k16.data()), vc16(n, v16.data());
  lro::AttentionRows rows16{kc16.data(), vc16.data(), cpos.data(), ncell.data(), pos.data()};
  lro::attention_forward(out.data(), c.q.data(), rows16, true, n, H, Hkv, hd, scale, pool);
  check(rel_err(out, attention_ref(dbl(c.q), kr, vr, n, H, Hkv, hd, scale)), 1e-6, "attention_forward (f16 cells)");
  {
    // 40 rows x 4 query heads per kv head: blocks of 32 and 8 rows, both through the GEMM path
    // (the case above, 2 heads per kv head over 7 rows, takes the direct one).
    const op_cases::AttentionCase b{40, 8, 2, 16};
    std::vector<const void*> bk(b.n, b.k.data()), bv(b.n, b.v.data());
    std::vector<int32_t> bpos(b.n);
    for (int64_t t = 0; t < b.n; ++t) bpos[t] = static_cast<int32_t>(t);
    std::vector<const int32_t*> bcpos(b.n, bpos.data());
    std::vector<int64_t> bcells(b.n, b.n);
    lro::AttentionRows brows{bk.data(), bv.data(), bcpos.data(), bcells.data(), bpos.data()};
    const float bscale = 1.0f / std::sqrt(static_cast<float>(b.hd));
    std::vector<float> bout(b.q.size());
    lro::attention_forward(bout.data(), b.q.data(), brows, false, b.n, b.heads, b.heads_kv, b.hd, bscale, pool);
    check(rel_err(bout, attention_ref(dbl(b.q), dbl(b.k), dbl(b.v), b.n, b.heads, b.heads_kv, b.hd, bscale)), 1e-6,
          "attention_forward (f32 cells, 40 rows: GEMM path)");
  }

  const auto g = op_cases::randn(out.size(), 1, 61);
  std::vector<float> dq(c.q.size(), 0), dk(c.k.size(), 0), dv(c.v.size(), 0);
  lro::attention_backward(dq.data(), dk.data(), dv.data(), g.data(), c.q.data(), c.k.data(), c.v.data(), seq_start.data(), pos.data(), n, H, Hkv,
                          hd, scale, pool);
  const size_t nq = c.q.size(), nk = c.k.size();
  const Vec num = numgrad([&](const Vec& a) { return attention_ref(slice(a, 0, nq), slice(a, nq, nk), slice(a, nq + nk, nk), n, H, Hkv, hd, scale); },
                          concat({dbl(c.q), dbl(c.k), dbl(c.v)}), dbl(g));
  check(rel_err(dq, slice(num, 0, nq)), 1e-5, "attention_backward dq");
  check(rel_err(dk, slice(num, nq, nk)), 1e-5, "attention_backward dk");
  check(rel_err(dv, slice(num, nq + nk, nk)), 1e-5, "attention_backward dv");

  // Packed sequences longer than the kernel's query block, only rows [q0, n) as queries (a chunk
  // after earlier ones), against the analytic backward in double, itself checked first against
  // the central differences above on the small case.
  auto ref = attention_backward_ref(dbl(c.q), dbl(c.k), dbl(c.v), dbl(g), seq_start, pos, n, 0, H, Hkv, hd, scale);
  check(rel_err(ref[0], slice(num, 0, nq)), 1e-5, "attention_backward_ref dq vs central differences");
  check(rel_err(ref[1], slice(num, nq, nk)), 1e-5, "attention_backward_ref dk vs central differences");
  {
    const int64_t pn = 180, pq0 = 23, pH = 4, pHkv = 2, phd = 16;
    const float pscale = 1.0f / std::sqrt(static_cast<float>(phd));
    std::vector<int64_t> starts(pn);
    std::vector<int32_t> ppos(pn);
    for (int64_t t = 0; t < pn; ++t) {
      starts[t] = t < 20 ? 0 : t < 150 ? 20 : 150;  // 20, 130 and 30 rows
      ppos[t] = static_cast<int32_t>(t - starts[t]);
    }
    const auto pq = op_cases::randn(static_cast<size_t>((pn - pq0) * pH * phd), 1, 62);
    const auto pk = op_cases::randn(static_cast<size_t>(pn * pHkv * phd), 1, 63);
    const auto pv = op_cases::randn(pk.size(), 1, 64);
    const auto pg = op_cases::randn(pq.size(), 1, 65);
    std::vector<float> pdq(pq.size(), 0.5f), pdk(pk.size(), 0.25f), pdv(pk.size(), -0.5f);  // +=: not zero
    lro::attention_backward(pdq.data(), pdk.data(), pdv.data(), pg.data(), pq.data(), pk.data(), pv.data(), starts.data(),
                            ppos.data(), pn, pH, pHkv, phd, pscale, pool, pq0);
    auto pr = attention_backward_ref(dbl(pq), dbl(pk), dbl(pv), dbl(pg), starts, ppos, pn, pq0, pH, pHkv, phd, pscale);
    for (auto& x : pr[0]) x += 0.5;
    for (auto& x : pr[1]) x += 0.25;
    for (auto& x : pr[2]) x -= 0.5;
    check(rel_err(pdq, pr[0]), 1e-5, "attention_backward dq (3 packed sequences, 130 rows, queries from row 23)");
    check(rel_err(pdk, pr[1]), 1e-5, "attention_backward dk (3 packed sequences, 130 rows, queries from row 23)");
    check(rel_err(pdv, pr[2]), 1e-5, "attention_backward dv (3 packed sequences, 130 rows, queries from row 23)");
  }
}

// y[n, n_out] = x[n, n_in] W^T
Vec linear_ref(const Vec& x, const Vec& w, int64_t n, int64_t n_out, int64_t n_in) {
  Vec y(static_cast<size_t>(n * n_out), 0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t i = 0; i < n_in; ++i) y[t * n_out + o] += x[t * n_in + i] * w[o * n_in + i];
  return y;
}

void test_linear(lro::ThreadPool& pool) {
  const int64_t n = 5, n_out = 24, n_in = 40;
  const auto x = op_cases::randn(static_cast<size_t>(n * n_in), 1, 71), w = op_cases::randn(static_cast<size_t>(n_out * n_in), 0.2f, 72);
  std::vector<float> y(static_cast<size_t>(n * n_out));
  lro::matmul(lro::GgmlType::F32, w.data(), n_out, n_in, x.data(), n, y.data(), n_out, pool);
  check(rel_err(y, linear_ref(dbl(x), dbl(w), n, n_out, n_in)), 1e-6, "matmul (the linear's forward, f32)");
  const auto g = op_cases::randn(y.size(), 1, 73);
  const size_t nx = x.size();
  const Vec num = numgrad([&](const Vec& a) { return linear_ref(slice(a, 0, nx), slice(a, nx, w.size()), n, n_out, n_in); }, concat({dbl(x), dbl(w)}), dbl(g));
  for (int64_t block : {0, 5}) {  // 5: W's rows in blocks that do not divide n_out
    std::vector<float> dx(nx, 0);
    lro::matmul_backward(dx.data(), g.data(), lro::GgmlType::F32, w.data(), n_out, n_in, n, pool, block);
    check(rel_err(dx, slice(num, 0, nx)), 1e-5, "matmul_backward dx, block rows " + std::to_string(block));
  }
  std::vector<float> dw(w.size(), 0);
  lro::matmul_backward_weight(dw.data(), g.data(), x.data(), n, n_out, n_in, pool);
  check(rel_err(dw, slice(num, nx, w.size())), 1e-5, "matmul_backward_weight");
}

Vec ce_ref(const Vec& logits, const std::vector<int32_t>& targets, int64_t V) {
  Vec loss(targets.size(), 0);
  for (size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] < 0) continue;
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, logits[t * V + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[t * V + j] - mx);
    loss[t] = mx + std::log(s) - logits[t * V + targets[t]];
  }
  return loss;
}

void test_crossentropy(lro::ThreadPool& pool) {
  const int64_t n = 4, V = 37;
  const auto logits = op_cases::randn(static_cast<size_t>(n * V), 3, 81);
  const std::vector<int32_t> targets = {5, -100, 36, 0};
  std::vector<float> loss(n);
  lro::crossentropy_forward(loss.data(), logits.data(), targets.data(), n, V, pool);
  check(rel_err(loss, ce_ref(dbl(logits), targets, V)), 1e-6, "crossentropy_forward (a row without target is 0)");
  const float scale = 0.25f;
  std::vector<float> dl(logits.size());
  lro::crossentropy_backward(dl.data(), logits.data(), targets.data(), n, V, scale, pool);
  const Vec num = numgrad([&](const Vec& l) { return ce_ref(l, targets, V); }, dbl(logits), Vec(n, scale));
  check(rel_err(dl, num), 1e-5, "crossentropy_backward");

  // Through the output head, in chunks of 3 rows (4 rows: one whole chunk and a partial one).
  const int64_t d = 12;
  const auto x = op_cases::randn(static_cast<size_t>(n * d), 1, 82), w = op_cases::randn(static_cast<size_t>(V * d), 0.5f, 83);
  auto head_ref = [&](const Vec& a) {
    const Vec l = linear_ref(slice(a, 0, x.size()), slice(a, x.size(), w.size()), n, V, d);
    const Vec per = ce_ref(l, targets, V);
    double s = 0;
    for (double e : per) s += e;
    return Vec{s};
  };
  const Vec all = concat({dbl(x), dbl(w)});
  const double want = head_ref(all)[0];
  const double got = lro::head_crossentropy_forward(x.data(), targets.data(), n, d, lro::GgmlType::F32, w.data(), V, 3, pool);
  check(std::fabs(got - want) / std::fabs(want), 1e-6, "head_crossentropy_forward (chunks of 3 rows)");
  std::vector<float> dx(x.size(), 0), dw(w.size(), 0);
  const double got_b = lro::head_crossentropy_backward(dx.data(), x.data(), targets.data(), n, d, lro::GgmlType::F32, w.data(), V, scale, 3, pool, dw.data());
  check(std::fabs(got_b - want) / std::fabs(want), 1e-6, "head_crossentropy_backward's loss");
  const Vec hn = numgrad(head_ref, all, Vec{scale});
  check(rel_err(dx, slice(hn, 0, x.size())), 1e-5, "head_crossentropy_backward dx");
  check(rel_err(dw, slice(hn, x.size(), w.size())), 1e-5, "head_crossentropy_backward dW");
}

void test_inject() {
  const int64_t n = 5, d = 16;
  const auto x0 = op_cases::randn(static_cast<size_t>(n * d), 2, 91), vec = op_cases::randn(static_cast<size_t>(2 * d), 1, 92);
  const std::vector<int64_t> rows = {1, 3};
  const float coef = 0.7f, eps = 1e-6f;
  for (bool replace : {false, true}) {
    const std::string tag = replace ? " (replace)" : " (add)";
    std::vector<float> x = x0, terms(vec.size());
    lro::inject_forward(x.data(), d, rows.data(), vec.data(), 2, coef, eps, replace, terms.data());
    Vec ref = dbl(x0);
    for (size_t k = 0; k < rows.size(); ++k) {
      double hn = 0, vn = 0;
      for (int64_t i = 0; i < d; ++i) {
        hn += static_cast<double>(x0[rows[k] * d + i]) * x0[rows[k] * d + i];
        vn += static_cast<double>(vec[k * d + i]) * vec[k * d + i];
      }
      for (int64_t i = 0; i < d; ++i) {
        const double term = coef * std::sqrt(hn) * vec[k * d + i] / std::max(std::sqrt(vn), static_cast<double>(eps));
        ref[rows[k] * d + i] = replace ? term : ref[rows[k] * d + i] + term;
      }
    }
    check(rel_err(x, ref), 1e-6, "inject_forward" + tag);
    // The term is a constant (stop-gradient): add passes dx through, replace zeroes the rows.
    const auto g = op_cases::randn(x.size(), 1, 93);
    std::vector<float> dx = g;
    lro::inject_backward(dx.data(), d, rows.data(), 2, replace);
    Vec want = dbl(g);
    if (replace)
      for (int64_t r : rows) std::fill(want.begin() + r * d, want.begin() + (r + 1) * d, 0.0);
    check(rel_err(dx, want), 0, "inject_backward" + tag);
  }
}

Vec layernorm_ref(const Vec& x, const Vec& w, const Vec& b, int64_t n, int64_t d, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < n; ++t) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += x[t * d + i] / d;
    for (int64_t i = 0; i < d; ++i) var += (x[t * d + i] - mean) * (x[t * d + i] - mean) / d;
    for (int64_t i = 0; i < d; ++i) y[t * d + i] = (x[t * d + i] - mean) / std::sqrt(var + eps) * w[i] + b[i];
  }
  return y;
}

void test_layernorm() {
  const auto c = op_cases::norm_case();
  const auto b = op_cases::randn(c.w.size(), 0.1f, 101);
  const float eps = 1e-5f;
  std::vector<float> y(c.x.size());
  lro::layernorm_forward(y.data(), c.x.data(), c.w.data(), b.data(), c.n, c.d, eps);
  check(rel_err(y, layernorm_ref(dbl(c.x), dbl(c.w), dbl(b), c.n, c.d, eps)), 1e-6, "layernorm_forward");
  const auto g = op_cases::randn(y.size(), 1, 102);
  std::vector<float> dx(c.x.size(), 0), dw(c.w.size(), 0), db(b.size(), 0);
  lro::layernorm_backward(dx.data(), dw.data(), db.data(), g.data(), c.x.data(), c.w.data(), c.n, c.d, eps);
  const size_t nx = c.x.size(), nw = c.w.size();
  const Vec num = numgrad([&](const Vec& a) { return layernorm_ref(slice(a, 0, nx), slice(a, nx, nw), slice(a, nx + nw, nw), c.n, c.d, eps); },
                          concat({dbl(c.x), dbl(c.w), dbl(b)}), dbl(g));
  check(rel_err(dx, slice(num, 0, nx)), 1e-5, "layernorm_backward dx");
  check(rel_err(dw, slice(num, nx, nw)), 1e-5, "layernorm_backward dweight");
  check(rel_err(db, slice(num, nx + nw, nw)), 1e-5, "layernorm_backward dbias");
}

void test_gelu() {
  const auto x = op_cases::randn(200, 2.5f, 111);
  auto ref = [](const Vec& v) {
    Vec y(v.size());
    for (size_t i = 0; i < v.size(); ++i) y[i] = 0.5 * v[i] * (1 + std::erf(v[i] / std::sqrt(2.0)));
    return y;
  };
  std::vector<float> y(x.size());
  lro::gelu_forward(y.data(), x.data(), static_cast<int64_t>(x.size()));
  check(rel_err(y, ref(dbl(x))), 1e-6, "gelu_forward");
  const auto g = op_cases::randn(x.size(), 1, 112);
  std::vector<float> dx(x.size(), 0);
  lro::gelu_backward(dx.data(), g.data(), x.data(), static_cast<int64_t>(x.size()));
  check(rel_err(dx, numgrad(ref, dbl(x), dbl(g))), 1e-5, "gelu_backward");
}

void test_sampling() {
  const std::vector<float> l = {0.5f, 2.0f, 2.0f, -1.0f, 1.0f};
  std::vector<char> none(l.size(), 0), ban1(l.size(), 0), all(l.size(), 1);
  ban1[1] = 1;
  lro::SampleParams greedy;
  check(lro::sample_token(l.data(), 5, none.data(), greedy) == 1 ? 0 : 1, 0, "sample_token greedy: lowest id on ties");
  check(lro::sample_token(l.data(), 5, ban1.data(), greedy) == 2 ? 0 : 1, 0, "sample_token greedy: a banned id is passed over");
  check(lro::sample_token(l.data(), 5, all.data(), greedy) == -1 ? 0 : 1, 0, "sample_token: every id banned gives -1");
  lro::SampleParams p;
  p.temperature = 1;
  p.seed = 7;
  lro::SampleParams top1 = p;
  top1.top_k = 1;
  int same = 0, top1_greedy = 0;
  std::vector<int> count(l.size(), 0);
  const int draws = 20000;
  for (int s = 0; s < draws; ++s) {
    p.step = top1.step = static_cast<uint64_t>(s);
    const int32_t a = lro::sample_token(l.data(), 5, none.data(), p);
    same += a == lro::sample_token(l.data(), 5, none.data(), p);
    top1_greedy += lro::sample_token(l.data(), 5, none.data(), top1) == 1;
    ++count[static_cast<size_t>(a)];
  }
  check(same == draws && top1_greedy == draws ? 0 : 1, 0, "sample_token: a draw depends on (seed, step) alone; top_k 1 is greedy");
  // Frequencies against softmax(l): within 4 standard errors each.
  double z = 0, worst = 0;
  for (float v : l) z += std::exp(static_cast<double>(v));
  for (size_t i = 0; i < l.size(); ++i) {
    const double pi = std::exp(static_cast<double>(l[i])) / z, se = std::sqrt(pi * (1 - pi) / draws);
    worst = std::max(worst, std::fabs(count[i] / static_cast<double>(draws) - pi) / se);
  }
  check(worst, 4, "sample_token: frequencies vs softmax (standard errors)");
  // top_p 0.6 keeps the two tied best (each 0.35 of the mass), never the rest.
  p.top_p = 0.6;
  int outside = 0;
  for (int s = 0; s < 2000; ++s) {
    p.step = static_cast<uint64_t>(s);
    const int32_t a = lro::sample_token(l.data(), 5, none.data(), p);
    outside += a != 1 && a != 2;
  }
  check(outside, 0, "sample_token: top_p keeps the smallest set of mass >= p");
}

// The pool itself: run_on_lead hands fn to another thread whose parallel_fors cover the range once,
// rethrows fn's exception as thrown and stays usable; one thread runs fn on the caller.
void test_thread_pool() {
  for (int threads : {1, 3}) {
    lro::ThreadPool pool(threads);
    const std::thread::id caller = std::this_thread::get_id();
    std::thread::id ran_on;
    std::vector<int> hits(1000, 0);
    std::vector<int> chunk_of(1000, -1);
    pool.run_on_lead([&] {
      ran_on = std::this_thread::get_id();
      pool.parallel_for(1000, 7, [&](int ti, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[size_t(i)], chunk_of[size_t(i)] = ti;
      });
    });
    const std::string tag = "thread pool (" + std::to_string(threads) + "): ";
    check((ran_on == caller) == (threads == 1) ? 0 : 1, 0, tag + "run_on_lead runs on the lead thread iff threads > 1");
    check(double(std::count(hits.begin(), hits.end(), 1) == 1000 ? 0 : 1), 0, tag + "parallel_for inside covers [0, n) once");
    check(std::set<int>(chunk_of.begin(), chunk_of.end()).size() == size_t(threads) ? 0 : 1, 0, tag + "every thread took a chunk");
    bool rethrown = false;
    try {
      pool.run_on_lead([] { throw std::invalid_argument("bad batch"); });
    } catch (const std::invalid_argument& e) {
      rethrown = std::string(e.what()) == "bad batch";
    }
    check(rethrown ? 0 : 1, 0, tag + "run_on_lead rethrows fn's exception");
    int after = 0;
    for (int k = 0; k < 50; ++k) pool.run_on_lead([&] { ++after; });
    check(after == 50 ? 0 : 1, 0, tag + "usable after an exception, 50 calls in a row");
    const auto got = pool.call_on_lead([&] { return std::make_pair(std::this_thread::get_id(), std::vector<int>{1, 2, 3}); });
    check(got.first == ran_on && got.second == std::vector<int>{1, 2, 3} ? 0 : 1, 0,
          tag + "call_on_lead returns what fn returned, computed where run_on_lead runs");
  }
}

}  // namespace

int main() {
  test_thread_pool();
  for (int threads : {1, 3}) {
    std::printf("== %d thread(s)\n", threads);
    lro::ThreadPool pool(threads);
    test_rmsnorm(pool);
    test_attention(pool);
    test_linear(pool);
    test_crossentropy(pool);
  }
  test_embedding();
  test_rope();
  test_swiglu();
  test_residual();
  test_inject();
  test_layernorm();
  test_gelu();
  test_sampling();
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
