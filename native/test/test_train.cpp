// Training engine tests, without Node: finite-difference checks of every backward op, the
// oracle-lora goldens (HF transformers + PEFT), resume bit-identity, QLoRA bases, adapter output.
// Usage: test_train [shared_dir]   (default ../shared or $LRO_SHARED)
//        test_train --resume-child <model> <checkpoint> <adapter_out> <checkpoint_out>  (used by the resume test)
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "golden.h"
#include "model/llama_model.h"
#include "model/lora_adapter.h"
#include "ops/ops.h"
#include "quant/quants.h"
#include "model/random_model.h"
#include "runtime/session.h"
#include "core/thread_pool.h"
#include "convert/lora_convert.h"
#include "train/train.h"

namespace {

int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++failures;
}
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

using Vec = std::vector<double>;
using Fn = std::function<Vec(const Vec&)>;

std::mt19937_64 rng(12345);
std::vector<float> randf(size_t n, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(nd(rng));
  return v;
}
Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// Central differences in double of L(x) = sum(G * f(x)) against the float analytic gradient.
// Error: max |analytic - fd| / max |fd| over the tensor (a relative error that does not blow up at
// entries that happen to be near zero).
double fd_rel_err(const Vec& x0, const Fn& f, const Vec& G, const std::vector<float>& analytic, double h = 1e-6) {
  double max_fd = 0, max_err = 0;
  Vec x = x0;
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = x0[i] + h;
    Vec yp = f(x);
    x[i] = x0[i] - h;
    Vec ym = f(x);
    x[i] = x0[i];
    double lp = 0, lm = 0;
    for (size_t j = 0; j < G.size(); ++j) {
      lp += G[j] * yp[j];
      lm += G[j] * ym[j];
    }
    const double fd = (lp - lm) / (2 * h);
    max_fd = std::max(max_fd, std::fabs(fd));
    max_err = std::max(max_err, std::fabs(fd - static_cast<double>(analytic[i])));
  }
  return max_fd > 0 ? max_err / max_fd : max_err;
}

double max_rel_vs(const std::vector<float>& a, const Vec& ref) {
  double m = 0, e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(ref[i]));
    e = std::max(e, std::fabs(static_cast<double>(a[i]) - ref[i]));
  }
  return m > 0 ? e / m : e;
}

void report_fd(const std::string& what, double err, double tol = 1e-4) {
  check(err <= tol, fmt("gradcheck %-34s max rel err %.2e (tol %.0e)", what.c_str(), err, tol));
}

// ------------------------------------------------------------------ double references of the ops

Vec rmsnorm_ref(const Vec& x, const Vec& w, int64_t n, int64_t d, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += x[t * d + i] * x[t * d + i];
    double r = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; ++i) y[t * d + i] = x[t * d + i] * r * w[i];
  }
  return y;
}

Vec rope_ref(Vec x, const std::vector<int32_t>& pos, int64_t n, int64_t nh, int64_t hd, int64_t n_rot, double base,
             const std::vector<float>& ff) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        double th = pos[t] * std::pow(base, -2.0 * i / n_rot) / (ff.empty() ? 1.0 : ff[i]);
        double c = std::cos(th), s = std::sin(th);
        double& a = x[(t * nh + h) * hd + 2 * i];
        double& b = x[(t * nh + h) * hd + 2 * i + 1];
        double a0 = a, b0 = b;
        a = a0 * c - b0 * s;
        b = a0 * s + b0 * c;
      }
  return x;
}

// Packed causal GQA attention, row t sees rows [start[t], t] with pos <= pos[t].
Vec attention_ref(const Vec& q, const Vec& k, const Vec& v, const std::vector<int64_t>& start,
                  const std::vector<int32_t>& pos, int64_t n, int64_t H, int64_t Hkv, int64_t hd, double scale) {
  Vec out(static_cast<size_t>(n * H * hd), 0.0);
  const int64_t g = H / Hkv;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / g;
      std::vector<double> s;
      std::vector<int64_t> cs;
      double m = -1e300;
      for (int64_t c = start[t]; c <= t; ++c) {
        if (pos[c] > pos[t]) continue;
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += q[(t * H + h) * hd + i] * k[(c * Hkv + kh) * hd + i];
        s.push_back(d * scale);
        cs.push_back(c);
        m = std::max(m, d * scale);
      }
      double z = 0;
      for (double& e : s) z += (e = std::exp(e - m));
      for (size_t j = 0; j < s.size(); ++j)
        for (int64_t i = 0; i < hd; ++i) out[(t * H + h) * hd + i] += s[j] / z * v[(cs[j] * Hkv + kh) * hd + i];
    }
  return out;
}

Vec matmul_ref(const Vec& W, const Vec& x, int64_t n_out, int64_t n_in, int64_t n) {  // y[n, n_out] = x W^T
  Vec y(static_cast<size_t>(n * n_out), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < n_out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < n_in; ++i) s += W[o * n_in + i] * x[t * n_in + i];
      y[t * n_out + o] = s;
    }
  return y;
}

Vec dequant(lro::GgmlType type, const std::vector<uint8_t>& q, int64_t rows, int64_t cols) {
  std::vector<float> f(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    lro::dequantize_row(type, q.data() + lro::row_size(type, cols) * r, f.data() + r * cols, cols);
  return to_d(f);
}
std::vector<uint8_t> quant(lro::GgmlType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  std::vector<uint8_t> q(lro::row_size(type, cols) * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) lro::quantize_row(type, w.data() + r * cols, q.data() + lro::row_size(type, cols) * r, cols);
  return q;
}

// ------------------------------------------------------------------ op gradient checks

void test_ops(lro::ThreadPool& pool) {
  std::printf("-- finite-difference checks of the backward ops (double central differences, h 1e-6)\n");
  {  // rmsnorm
    const int64_t n = 3, d = 16;
    const double eps = 1e-5;
    auto x = randf(n * d), w = randf(d, 0.5), G = randf(n * d);
    std::vector<float> y(n * d), dx(n * d, 0.0f), dw(d, 0.0f);
    lro::rmsnorm_forward(y.data(), x.data(), w.data(), n, d, static_cast<float>(eps), pool);
    report_fd("rmsnorm forward vs ref", max_rel_vs(y, rmsnorm_ref(to_d(x), to_d(w), n, d, eps)), 1e-6);
    lro::rmsnorm_backward(dx.data(), dw.data(), G.data(), x.data(), w.data(), n, d, static_cast<float>(eps), pool);
    Vec wd = to_d(w), xd = to_d(x);
    report_fd("rmsnorm dx", fd_rel_err(xd, [&](const Vec& xx) { return rmsnorm_ref(xx, wd, n, d, eps); }, to_d(G), dx));
    report_fd("rmsnorm dweight", fd_rel_err(wd, [&](const Vec& ww) { return rmsnorm_ref(xd, ww, n, d, eps); }, to_d(G), dw));
  }
  {  // rope: partial rotation, freq factors, gaps in positions
    const int64_t n = 5, nh = 2, hd = 8, n_rot = 6;
    const float base = 10000.0f;
    std::vector<int32_t> pos = {0, 3, 4, 7, 9};
    std::vector<float> ff = {1.0f, 2.5f, 8.0f};
    auto x = randf(n * nh * hd), G = randf(n * nh * hd);
    std::vector<float> y = x;
    lro::rope_forward(y.data(), pos.data(), n, nh, hd, n_rot, base, ff.data());
    report_fd("rope forward vs ref", max_rel_vs(y, rope_ref(to_d(x), pos, n, nh, hd, n_rot, base, ff)), 1e-6);
    std::vector<float> dx = G;
    lro::rope_backward(dx.data(), pos.data(), n, nh, hd, n_rot, base, ff.data());
    report_fd("rope dx", fd_rel_err(to_d(x), [&](const Vec& xx) { return rope_ref(xx, pos, n, nh, hd, n_rot, base, ff); }, to_d(G), dx));
  }
  {  // attention: two packed sequences (4 + 3 rows), GQA 4 query heads on 2 kv heads
    const int64_t n = 7, H = 4, Hkv = 2, hd = 8;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<int64_t> start = {0, 0, 0, 0, 4, 4, 4};
    std::vector<int32_t> pos = {0, 1, 2, 3, 0, 1, 2};
    auto q = randf(n * H * hd), k = randf(n * Hkv * hd), v = randf(n * Hkv * hd), G = randf(n * H * hd);
    std::vector<float> out(n * H * hd), dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
    std::vector<const void*> kp(n), vp(n);
    std::vector<const int32_t*> cp(n);
    std::vector<int64_t> nc(n);
    for (int64_t t = 0; t < n; ++t) {
      kp[t] = k.data() + start[t] * Hkv * hd;
      vp[t] = v.data() + start[t] * Hkv * hd;
      cp[t] = pos.data() + start[t];
      nc[t] = t - start[t] + 1;
    }
    lro::AttentionRows rows{kp.data(), vp.data(), cp.data(), nc.data(), pos.data()};
    lro::attention_forward(out.data(), q.data(), rows, false, n, H, Hkv, hd, scale, pool);
    Vec qd = to_d(q), kd = to_d(k), vd = to_d(v);
    report_fd("attention forward vs ref", max_rel_vs(out, attention_ref(qd, kd, vd, start, pos, n, H, Hkv, hd, scale)), 1e-6);
    lro::attention_backward(dq.data(), dk.data(), dv.data(), G.data(), q.data(), k.data(), v.data(), start.data(), pos.data(),
                            n, H, Hkv, hd, scale, pool);
    report_fd("attention dq", fd_rel_err(qd, [&](const Vec& x) { return attention_ref(x, kd, vd, start, pos, n, H, Hkv, hd, scale); }, to_d(G), dq));
    report_fd("attention dk", fd_rel_err(kd, [&](const Vec& x) { return attention_ref(qd, x, vd, start, pos, n, H, Hkv, hd, scale); }, to_d(G), dk));
    report_fd("attention dv", fd_rel_err(vd, [&](const Vec& x) { return attention_ref(qd, kd, x, start, pos, n, H, Hkv, hd, scale); }, to_d(G), dv));
  }
  {  // swiglu
    const int64_t n = 3, d = 10;
    auto g = randf(n * d, 2.0), u = randf(n * d), G = randf(n * d);
    std::vector<float> dg(n * d, 0.0f), du(n * d, 0.0f);
    lro::swiglu_backward(dg.data(), du.data(), G.data(), g.data(), u.data(), n, d);
    auto f = [&](const Vec& gg, const Vec& uu) {
      Vec y(gg.size());
      for (size_t i = 0; i < y.size(); ++i) y[i] = gg[i] / (1 + std::exp(-gg[i])) * uu[i];
      return y;
    };
    Vec gd = to_d(g), ud = to_d(u);
    report_fd("swiglu dgate", fd_rel_err(gd, [&](const Vec& x) { return f(x, ud); }, to_d(G), dg));
    report_fd("swiglu dup", fd_rel_err(ud, [&](const Vec& x) { return f(gd, x); }, to_d(G), du));
  }
  {  // embedding (trainable-table case) and residual
    const int64_t V = 6, d = 4, n = 5;
    std::vector<int32_t> ids = {1, 4, 1, 0, 5};
    auto table = randf(V * d), G = randf(n * d);
    std::vector<float> dt(V * d, 0.0f);
    lro::embedding_backward(dt.data(), G.data(), ids.data(), n, d);
    report_fd("embedding dtable", fd_rel_err(to_d(table), [&](const Vec& tb) {
      Vec y(static_cast<size_t>(n * d));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < d; ++i) y[t * d + i] = tb[ids[t] * d + i];
      return y;
    }, to_d(G), dt));
    auto x = randf(n * d);
    std::vector<float> dy(n * d, 0.0f);
    lro::residual_backward(dy.data(), G.data(), n, d);
    report_fd("residual dy", fd_rel_err(to_d(x), [&](const Vec& yy) { return yy; }, to_d(G), dy));
  }
  {  // matmul input side, every weight type, several row blocks
    struct Case { lro::GgmlType type; int64_t n_out, n_in; const char* name; };
    for (Case c : {Case{lro::GgmlType::F32, 40, 24, "f32"}, Case{lro::GgmlType::F16, 40, 32, "f16"},
                   Case{lro::GgmlType::BF16, 40, 32, "bf16"}, Case{lro::GgmlType::Q8_0, 40, 64, "q8_0"},
                   Case{lro::GgmlType::Q4_0, 40, 64, "q4_0"}, Case{lro::GgmlType::Q4_K, 36, 256, "q4_K"},
                   Case{lro::GgmlType::Q6_K, 36, 256, "q6_K"}}) {
      const int64_t n = 5;
      auto w = randf(c.n_out * c.n_in, 0.2), x = randf(n * c.n_in), G = randf(n * c.n_out);
      auto wq = quant(c.type, w, c.n_out, c.n_in);
      Vec wd = dequant(c.type, wq, c.n_out, c.n_in);
      std::vector<float> dx(n * c.n_in, 0.0f);
      lro::matmul_backward(dx.data(), G.data(), c.type, wq.data(), c.n_out, c.n_in, n, pool, 16);
      report_fd(std::string("matmul dx (") + c.name + ", 16-row blocks)",
                fd_rel_err(to_d(x), [&](const Vec& xx) { return matmul_ref(wd, xx, c.n_out, c.n_in, n); }, to_d(G), dx));
    }
    const int64_t n = 6, n_out = 9, n_in = 13;
    auto w = randf(n_out * n_in), x = randf(n * n_in), G = randf(n * n_out);
    std::vector<float> dw(n_out * n_in, 0.0f);
    lro::matmul_backward_weight(dw.data(), G.data(), x.data(), n, n_out, n_in, pool);
    Vec xd = to_d(x);
    report_fd("matmul dW (f32)", fd_rel_err(to_d(w), [&](const Vec& ww) { return matmul_ref(ww, xd, n_out, n_in, n); }, to_d(G), dw));
  }
  {  // output head + cross-entropy in chunks of 3 rows (7 rows, two without a target)
    for (lro::GgmlType type : {lro::GgmlType::F32, lro::GgmlType::Q8_0}) {
      const int64_t n = 7, d = 32, V = 50;
      const float scale = 0.37f;
      std::vector<int32_t> tg = {3, -1, 49, 0, 17, -1, 3};
      auto w = randf(V * d, 0.3), x = randf(n * d);
      auto wq = quant(type, w, V, d);
      Vec wd = dequant(type, wq, V, d);
      auto ce = [&](const Vec& xx) {
        Vec logits = matmul_ref(wd, xx, V, d, n);
        Vec y(1, 0.0);
        for (int64_t t = 0; t < n; ++t) {
          if (tg[t] < 0) continue;
          double m = -1e300, z = 0;
          for (int64_t j = 0; j < V; ++j) m = std::max(m, logits[t * V + j]);
          for (int64_t j = 0; j < V; ++j) z += std::exp(logits[t * V + j] - m);
          y[0] += scale * (m + std::log(z) - logits[t * V + tg[t]]);
        }
        return y;
      };
      std::vector<float> dx(n * d, 0.0f);
      double loss = lro::head_crossentropy_backward(dx.data(), x.data(), tg.data(), n, d, type, wq.data(), V, scale, 3, pool);
      double loss_f = lro::head_crossentropy_forward(x.data(), tg.data(), n, d, type, wq.data(), V, 3, pool);
      double ref = ce(to_d(x))[0] / scale;
      const char* tn = type == lro::GgmlType::F32 ? "f32" : "q8_0";
      if (type == lro::GgmlType::F32) {
        check(std::fabs(loss - ref) <= 1e-6 * std::fabs(ref) && loss == loss_f,
              fmt("head+CE loss (f32, chunks of 3) %.8f vs ref %.8f, forward-only %.8f", loss, ref, loss_f));
        report_fd("head+CE dx (f32, chunks of 3)", fd_rel_err(to_d(x), ce, Vec{1.0}, dx));
      } else {
        // The quantised forward rounds activations to int8, so its logits are not the dequantised
        // function's: the gradient is scale * (softmax(forward logits) - onehot) W_deq, checked exactly.
        std::vector<float> lg(n * V);
        lro::matmul(type, wq.data(), V, d, x.data(), n, lg.data(), V, pool);
        Vec want(static_cast<size_t>(n * d), 0.0);
        for (int64_t t = 0; t < n; ++t) {
          if (tg[t] < 0) continue;
          double m = -1e300, z = 0;
          for (int64_t j = 0; j < V; ++j) m = std::max(m, double(lg[t * V + j]));
          for (int64_t j = 0; j < V; ++j) z += std::exp(lg[t * V + j] - m);
          for (int64_t j = 0; j < V; ++j) {
            double gj = scale * (std::exp(lg[t * V + j] - m) / z - (j == tg[t] ? 1.0 : 0.0));
            for (int64_t i = 0; i < d; ++i) want[t * d + i] += gj * wd[j * d + i];
          }
        }
        check(std::fabs(loss - ref) <= 1e-2 * std::fabs(ref) && loss == loss_f,
              fmt("head+CE loss (q8_0, chunks of 3) %.8f vs dequantised ref %.8f, forward-only %.8f", loss, ref, loss_f));
        report_fd("head+CE dx (q8_0, chunks of 3, exact)", max_rel_vs(dx, want), 1e-5);
      }
    }
  }
  {  // injection: the term is a constant; add passes dx through, replace zeroes the rows
    const int64_t n = 4, d = 8;
    std::vector<int64_t> rows = {1, 3};
    auto x = randf(n * d), v = randf(2 * d), G = randf(n * d);
    for (bool replace : {false, true}) {
      std::vector<float> xi = x, terms(2 * d);
      lro::inject_forward(xi.data(), d, rows.data(), v.data(), 2, 1.5f, 1e-12f, replace, terms.data());
      std::vector<float> dx = G;
      lro::inject_backward(dx.data(), d, rows.data(), 2, replace);
      Vec td = to_d(terms);
      auto f = [&](const Vec& xx) {  // terms held at their value at x (stop-gradient)
        Vec y = xx;
        for (int k = 0; k < 2; ++k)
          for (int64_t i = 0; i < d; ++i) {
            double& e = y[rows[k] * d + i];
            e = replace ? td[k * d + i] : e + td[k * d + i];
          }
        return y;
      };
      double xn = 0, vn = 0, tn = 0;
      for (int64_t i = 0; i < d; ++i) {
        xn += double(x[rows[0] * d + i]) * x[rows[0] * d + i];
        vn += double(v[i]) * v[i];
        tn += double(terms[i]) * terms[i];
      }
      check(std::fabs(std::sqrt(tn) - 1.5 * std::sqrt(xn)) < 1e-5 * std::sqrt(xn),
            fmt("inject %s: ||term|| = coef ||h_p|| (%.6f vs %.6f)", replace ? "replace" : "add", std::sqrt(tn), 1.5 * std::sqrt(xn)));
      report_fd(std::string("inject dx (") + (replace ? "replace" : "add") + ")", fd_rel_err(to_d(x), f, to_d(G), dx));
    }
  }
}

// ------------------------------------------------------------------ oracle-lora goldens

const int kPeftLayers = 4;
const char* const kPeft[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
const char* const kGguf[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

std::string peft_name(int l, int t, char ab) {
  return "base_model.model.model.layers." + std::to_string(l) + "." + kPeft[t] + ".lora_" + ab + ".weight";
}
std::string gguf_name(int l, int t) { return "blk." + std::to_string(l) + "." + kGguf[t] + ".weight"; }

// HF keeps a head's rotary pairs as (row j, row j + hd/2); GGUF (llama.cpp's permute) as rows
// (2j, 2j+1). Within each head: HF [first half | second half] -> interleaved.
std::vector<float> permute_hf_to_gguf(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t n_heads) {
  std::vector<float> out(m.size());
  const int64_t hd = rows / n_heads;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t j = 0; j < hd / 2; ++j) {
        const int64_t src = h * hd + half * (hd / 2) + j, dst = h * hd + 2 * j + half;
        std::copy(m.begin() + src * cols, m.begin() + (src + 1) * cols, out.begin() + dst * cols);
      }
  return out;
}

struct Oracle {
  std::shared_ptr<lro::LlamaModel> model;
  golden::SafetensorsFile g;
  std::vector<lro::TrainExample> ex;
  explicit Oracle(const std::string& shared)
      : model(lro::LlamaModel::load(shared + "/golden/gguf/tiny-l3.f32.gguf")),
        g(shared + "/golden/hf/oracle-lora.safetensors") {
    for (int b = 0; b < 3; ++b) {
      lro::TrainExample e;
      for (int64_t v : g.at("input_ids." + std::to_string(b)).ints()) e.tokens.push_back(static_cast<int32_t>(v));
      for (int64_t v : g.at("labels." + std::to_string(b)).ints()) e.labels.push_back(static_cast<int32_t>(v));
      for (int64_t v : g.at("positions." + std::to_string(b)).ints()) e.inject_positions.push_back(static_cast<int32_t>(v));
      e.vectors = g.at("vectors." + std::to_string(b)).f32();
      ex.push_back(std::move(e));
    }
  }
  // A golden PEFT tensor in this engine's layout (q/k lora_B rows permuted to GGUF order).
  std::vector<float> tensor(const std::string& prefix, int l, int t, char ab) const {
    auto v = g.at(prefix + peft_name(l, t, ab)).f32();
    const auto& hp = model->hparams();
    if (ab == 'B' && (t == 0 || t == 1)) {
      const int64_t heads = t == 0 ? hp.n_head : hp.n_head_kv;
      v = permute_hf_to_gguf(v, heads * hp.head_dim, static_cast<int64_t>(v.size()) / (heads * hp.head_dim), heads);
    }
    return v;
  }
  void set_params(lro::Trainer& tr, const std::string& prefix) const {
    for (auto& p : tr.params()) {
      p.a = tensor(prefix, p.layer, p.target, 'A');
      p.b = tensor(prefix, p.layer, p.target, 'B');
    }
  }
};

// ||a - b|| / ||b|| and max |a - b|
struct Diff { double rel, abs; };
Diff diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0, mx = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double e = double(a[i]) - b[i];
    num += e * e;
    den += double(b[i]) * b[i];
    mx = std::max(mx, std::fabs(e));
  }
  return {den > 0 ? std::sqrt(num / den) : std::sqrt(num), mx};
}

// Worst per-tensor relative error, global relative error and max abs error of A/B (or their grads) vs golden.
struct CmpAll { double worst_rel = 0, global_rel = 0, max_abs = 0; std::string worst; };
CmpAll compare_all(const Oracle& o, const lro::Trainer& tr, const std::string& prefix, bool grads) {
  CmpAll c;
  double num = 0, den = 0;
  for (const auto& p : tr.params()) {
    for (char ab : {'A', 'B'}) {
      const auto& mine = grads ? (ab == 'A' ? p.ga : p.gb) : (ab == 'A' ? p.a : p.b);
      auto ref = o.tensor(prefix, p.layer, p.target, ab);
      Diff d = diff(mine, ref);
      for (size_t i = 0; i < ref.size(); ++i) {
        num += (double(mine[i]) - ref[i]) * (double(mine[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
      }
      if (d.rel > c.worst_rel) {
        c.worst_rel = d.rel;
        c.worst = p.weight + (ab == 'A' ? ".lora_a" : ".lora_b");
      }
      c.max_abs = std::max(c.max_abs, d.abs);
    }
  }
  c.global_rel = std::sqrt(num / den);
  return c;
}

// Entries whose golden gradient was below 1e-5 at some step so far. AdamW moves an entry by about
// lr * sign(g) whatever |g| (>> eps), so there a float32-level difference in g can flip the step
// (README, small_gradient_elements): up to 2 * lr = 2e-3 per step.
using Sensitive = std::map<std::string, std::vector<char>>;
void mark_sensitive(const Oracle& o, const lro::Trainer& tr, const std::string& grad_prefix, Sensitive& sens) {
  for (const auto& p : tr.params())
    for (char ab : {'A', 'B'}) {
      auto g = o.tensor(grad_prefix, p.layer, p.target, ab);
      auto& m = sens[p.weight + ab];
      m.resize(g.size(), 0);
      for (size_t i = 0; i < g.size(); ++i) m[i] |= std::fabs(g[i]) < 1e-5f;
    }
}

// Parameters after `steps` AdamW steps vs golden: regular entries must agree closely (README: the
// f64 re-implementation ends 1.5e-5 global rel from the golden); sensitive ones within 2e-3 per step.
void report_params(const Oracle& o, const lro::Trainer& tr, const std::string& prefix, const Sensitive& sens, int steps) {
  double num = 0, den = 0, reg_abs = 0, sens_abs = 0;
  int64_t n_sens = 0, n_moved = 0;
  for (const auto& p : tr.params())
    for (char ab : {'A', 'B'}) {
      const auto& mine = ab == 'A' ? p.a : p.b;
      auto ref = o.tensor(prefix, p.layer, p.target, ab);
      const auto& m = sens.at(p.weight + ab);
      for (size_t i = 0; i < ref.size(); ++i) {
        const double e = std::fabs(double(mine[i]) - ref[i]);
        if (m[i]) {
          ++n_sens;
          n_moved += e > 1e-4;
          sens_abs = std::max(sens_abs, e);
        } else {
          num += e * e;
          den += double(ref[i]) * ref[i];
          reg_abs = std::max(reg_abs, e);
        }
      }
    }
  const double rel = std::sqrt(num / den);
  // A full flip moves an entry by at most 2 lr (plus lr * wd * |p| ~ 1e-6 of decay).
  check(rel <= 1e-4 && reg_abs <= 1e-4 * steps && sens_abs <= 2.05e-3 * steps,
        fmt("%s: regular entries global rel %.2e (tol 1e-4), max abs %.2e (tol %.0e); %lld small-|g| entries max abs %.2e "
            "(tol %.0e), %lld of them off by > 1e-4",
            prefix.substr(0, prefix.size() - 1).c_str(), rel, reg_abs, 1e-4 * steps, static_cast<long long>(n_sens), sens_abs,
            2.05e-3 * steps, static_cast<long long>(n_moved)));
}

lro::OptimConfig oracle_optim(double max_norm) {
  lro::OptimConfig oc;
  oc.lr = 1e-3;
  oc.beta1 = 0.9;
  oc.beta2 = 0.999;
  oc.eps = 1e-8;
  oc.weight_decay = 0.01;
  oc.max_grad_norm = max_norm;
  return oc;
}

void test_oracle(const std::string& shared, int threads) {
  std::printf("-- oracle-lora goldens (tiny-l3.f32.gguf, PEFT r 8 alpha 16, injection at block 1)\n");
  Oracle o(shared);
  lro::LoraConfig lc;
  lc.rank = 8;
  lc.alpha = 16;
  lro::TrainOptions to;
  to.threads = threads;
  to.ce_chunk_rows = 5;  // several head chunks even on this small batch
  auto losses = o.g.at("losses").f32();

  // Initial LoRA: the PEFT adapter directory's safetensors (== init.<P>).
  golden::SafetensorsFile peft(shared + "/golden/hf/oracle-lora-adapter/adapter_model.safetensors");
  {
    lro::Trainer tr(o.model, lc, oracle_optim(0), to);
    check(std::fabs(tr.params()[0].scale - 2.0f) == 0, "LoRA scale alpha/r = 2");
    double init_diff = 0;
    for (auto& p : tr.params()) {
      p.a = peft.at(peft_name(p.layer, p.target, 'A')).f32();
      p.b = peft.at(peft_name(p.layer, p.target, 'B')).f32();
      if (p.target <= 1) {
        const int64_t heads = p.target == 0 ? o.model->hparams().n_head : o.model->hparams().n_head_kv;
        p.b = permute_hf_to_gguf(p.b, p.n_out, p.rank, heads);
      }
      init_diff = std::max(init_diff, diff(p.a, o.tensor("init.", p.layer, p.target, 'A')).abs);
      init_diff = std::max(init_diff, diff(p.b, o.tensor("init.", p.layer, p.target, 'B')).abs);
    }
    check(init_diff == 0, "adapter_model.safetensors == init.<P> (after the q/k permutation)");

    // Step 0: loss, injected terms, gradients.
    auto t0 = std::chrono::steady_clock::now();
    tr.zero_grad();
    double loss = tr.accumulate(o.ex, 1.0);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // f32 against f32 golden: the f64 re-implementation lands 1.8e-7 relative from it.
    check(std::fabs(loss - 27.552694) <= 2e-5 * 27.552694,
          fmt("loss %.6f vs golden 27.552694 (rel %.1e, tol 2e-5); forward+backward %.1f ms, %d threads", loss,
              std::fabs(loss - 27.552694) / 27.552694, ms, tr.threads()));
    double term_err = 0;
    for (int b = 0; b < 3; ++b)
      term_err = std::max(term_err, diff(tr.injected_terms()[b], o.g.at("injected_terms." + std::to_string(b)).f32()).rel);
    check(term_err <= 1e-5, fmt("injected_terms max rel err %.2e (tol 1e-5)", term_err));
    CmpAll c = compare_all(o, tr, "grad.step0.", true);
    // README: f64 re-implementation vs golden grads max per-tensor 8.6e-6; f32 adds the same order again.
    check(c.worst_rel <= 1e-4, fmt("grad.step0: worst per-tensor rel err %.2e (%s), global %.2e, max abs %.2e (tol 1e-4)",
                                   c.worst_rel, c.worst.c_str(), c.global_rel, c.max_abs));
    std::printf("     grad.step0 global norm %.5f (pooled over the batch)\n", tr.grad_norm());

    // The README's float64 finite differences (fd_frozen_injection) at a few entries.
    struct Fd { int l, t; char ab; int r, c; double fd; };
    const Fd fds[] = {{0, 0, 'A', 2, 129, -0.03147676181924908}, {0, 0, 'B', 132, 3, -0.19016794823301095},
                      {1, 2, 'A', 4, 185, -0.004415838539273409}, {1, 2, 'B', 21, 0, -0.02269870886806302},
                      {2, 4, 'A', 6, 201, -0.0741602418585785}, {2, 4, 'B', 733, 0, -0.005525305901699084},
                      {3, 6, 'A', 4, 722, -0.014924373203939465}};
    double fd_worst = 0;
    for (const Fd& f : fds) {
      const lro::LoraParam* p = tr.find(gguf_name(f.l, f.t));
      int row = f.r;
      if (f.ab == 'B' && f.t <= 1) {  // HF row -> GGUF row
        const int64_t hd = o.model->hparams().head_dim, h = row / hd, j = row % hd;
        row = static_cast<int>(h * hd + (j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1));
      }
      double g = f.ab == 'A' ? p->ga[row * p->n_in + f.c] : p->gb[row * p->rank + f.c];
      fd_worst = std::max(fd_worst, std::fabs(g - f.fd) / std::fabs(f.fd));
    }
    check(fd_worst <= 2e-4, fmt("vs README float64 finite differences (7 entries): max rel err %.2e (golden f32: 1.7e-4)", fd_worst));

    // Three AdamW steps on the same batch, on our own gradients (the trajectory), plus the gradients
    // at the golden parameters of each step (the same point as the golden, so no drift).
    Sensitive sens;
    lro::Trainer probe(o.model, lc, oracle_optim(0), to);
    for (int s = 0; s < 3; ++s) {
      const std::string ss = std::to_string(s);
      mark_sensitive(o, tr, "grad.step" + ss + ".", sens);
      if (s > 0) {
        o.set_params(probe, "params.step" + ss + ".");
        probe.zero_grad();
        double lg = probe.accumulate(o.ex, 1.0);
        CmpAll cg = compare_all(o, probe, "grad.step" + ss + ".", true);
        check(std::fabs(lg - losses[s]) <= 2e-5 * losses[s] && cg.worst_rel <= 1e-4,
              fmt("at golden params.step%d: loss %.6f vs %.6f; grad.step%d worst per-tensor rel %.2e (%s), global %.2e (tol 1e-4)",
                  s, lg, double(losses[s]), s, cg.worst_rel, cg.worst.c_str(), cg.global_rel));
        tr.zero_grad();
        double l = tr.accumulate(o.ex, 1.0);
        CmpAll ct = compare_all(o, tr, "grad.step" + ss + ".", true);
        check(std::fabs(l - losses[s]) <= 1e-5 * losses[s] + 1e-4,
              fmt("own trajectory before step %d: loss %.6f vs %.6f, grads global rel %.2e", s + 1, l, double(losses[s]), ct.global_rel));
      }
      tr.adamw_update(tr.lr_at(tr.step_count()));
      report_params(o, tr, "params.step" + std::to_string(s + 1) + ".", sens, s + 1);
    }
    double lf = tr.eval_loss(o.ex);
    check(std::fabs(lf - losses[3]) <= 1e-4 * losses[3], fmt("loss after 3 steps %.6f vs golden %.6f", lf, double(losses[3])));
    // AdamW moments after step 3.
    double mrel = 0, vrel = 0;
    for (auto& p : tr.params()) {
      mrel = std::max(mrel, diff(p.ma, o.tensor("adam_m.", p.layer, p.target, 'A')).rel);
      mrel = std::max(mrel, diff(p.mb, o.tensor("adam_m.", p.layer, p.target, 'B')).rel);
      vrel = std::max(vrel, diff(p.va, o.tensor("adam_v.", p.layer, p.target, 'A')).rel);
      vrel = std::max(vrel, diff(p.vb, o.tensor("adam_v.", p.layer, p.target, 'B')).rel);
    }
    // Moments follow our own gradients, whose trajectory drifts 2e-4 (global) by step 3 (one flipped entry).
    check(mrel <= 3e-3 && vrel <= 3e-3, fmt("adam_m / adam_v after 3 steps: worst per-tensor rel %.2e / %.2e (tol 3e-3)", mrel, vrel));

    // The final adapter equals oracle-lora-final-adapter (GGUF order).
    const std::string out = "/tmp/lro-test-train-final.gguf";
    tr.save_adapter(out, "oracle");
    auto ad = lro::LoraAdapter::load(out, *o.model);
    golden::SafetensorsFile fin(shared + "/golden/hf/oracle-lora-final-adapter/adapter_model.safetensors");
    double fa = 0;
    for (auto& p : tr.params()) {
      const lro::LoraPair* pr = ad->find(p.weight);
      std::vector<float> a(p.a.size()), b(p.b.size());
      std::memcpy(a.data(), pr->a.data, a.size() * 4);
      std::memcpy(b.data(), pr->b.data, b.size() * 4);
      fa = std::max(fa, diff(a, o.tensor("final.", p.layer, p.target, 'A')).abs);
      fa = std::max(fa, diff(b, o.tensor("final.", p.layer, p.target, 'B')).abs);
    }
    check(ad->alpha() == 16.0f && ad->pairs().size() == 28 && fa <= 6e-3,
          fmt("saved GGUF adapter: alpha %.1f, %zu pairs, max abs vs final adapter %.2e", ad->alpha(), ad->pairs().size(), fa));
    std::remove(out.c_str());
  }

  {  // init_adapter = the PEFT folder, through the converter: same values as init.<P> in GGUF order
    lro::LoraConfig from = lc;
    lro::convert::AdapterAsGguf peft(shared + "/golden/hf/oracle-lora-adapter", o.model->file().path());
    from.init_adapter = peft.path();
    lro::Trainer tr(o.model, from, oracle_optim(0), to);
    double mx = 0;
    for (auto& p : tr.params()) {
      mx = std::max(mx, diff(p.a, o.tensor("init.", p.layer, p.target, 'A')).abs);
      mx = std::max(mx, diff(p.b, o.tensor("init.", p.layer, p.target, 'B')).abs);
    }
    check(tr.params().size() == 28 && tr.params()[0].scale == 2.0f && mx == 0,
          fmt("init from the PEFT folder (converter): %zu pairs, scale %.1f, max |diff| vs init.<P> %.1e", tr.params().size(),
              tr.params()[0].scale, mx));
  }

  {  // accum_clip: micro-batches [[0, 1], [2]], clip_grad_norm_(1.0)
    lro::Trainer tr(o.model, lc, oracle_optim(1.0), to);
    lro::Trainer probe(o.model, lc, oracle_optim(1.0), to);
    o.set_params(tr, "init.");
    const double norms[3] = {54.7724, 39.8251, 30.8760};
    auto acc_losses = o.g.at("accum_clip.losses").f32();
    std::vector<std::vector<lro::TrainExample>> mbs = {{o.ex[0], o.ex[1]}, {o.ex[2]}};
    Sensitive sens;
    for (int s = 0; s < 3; ++s) {
      const std::string ss = std::to_string(s);
      mark_sensitive(o, tr, "accum_clip.grad_preclip.step" + ss + ".", sens);
      // At the golden parameters of this step: micro-batch losses, pre-clip norm, both gradients.
      o.set_params(probe, s == 0 ? "init." : "accum_clip.params.step" + ss + ".");
      probe.zero_grad();
      double l0 = probe.accumulate(mbs[0], 0.5), l1 = probe.accumulate(mbs[1], 0.5);
      double loss = (l0 + l1) / 2;
      CmpAll pre = compare_all(o, probe, "accum_clip.grad_preclip.step" + ss + ".", true);
      double norm = probe.grad_norm();
      double coef = probe.clip_gradients(1.0);
      CmpAll post = compare_all(o, probe, "accum_clip.grad_clipped.step" + ss + ".", true);
      // Pre-clip norms: golden vs f64 re-implementation differ by up to 3e-6 relative.
      check(std::fabs(loss - acc_losses[s]) <= 2e-5 * acc_losses[s] && std::fabs(norm - norms[s]) <= 2e-5 * norms[s] &&
                pre.worst_rel <= 1e-4 && post.worst_rel <= 1e-4,
            fmt("accum_clip step %d: mb losses %.6f %.6f, loss %.6f (golden %.6f), pre-clip norm %.4f (golden %.4f), coef %.6f;"
                " grads pre/post-clip worst per-tensor rel %.1e/%.1e (tol 1e-4)",
                s, l0, l1, loss, double(acc_losses[s]), norm, norms[s], coef, pre.worst_rel, post.worst_rel));
      // Our own trajectory.
      tr.zero_grad();
      tr.accumulate(mbs[0], 0.5);
      tr.accumulate(mbs[1], 0.5);
      tr.clip_gradients(1.0);
      tr.adamw_update(tr.lr_at(tr.step_count()));
      report_params(o, tr, "accum_clip.params.step" + std::to_string(s + 1) + ".", sens, s + 1);
    }
  }

  {  // The same step through Trainer::step(): pooled micro-batches, clipping and AdamW in one call.
    lro::Trainer tr(o.model, lc, oracle_optim(1.0), to);
    o.set_params(tr, "init.");
    lro::StepResult r = tr.step({{o.ex[0], o.ex[1]}, {o.ex[2]}});
    CmpAll cp = compare_all(o, tr, "accum_clip.params.step1.", false);
    check(std::fabs(r.grad_norm - 54.7724) <= 1e-4 * 54.7724 && cp.global_rel <= 1e-4 && r.step == 1 && r.tokens == 123 &&
              r.loss_tokens == 28 && tr.data_position() == 3,
          fmt("Trainer::step: loss %.6f, norm %.4f, clip %.6f, lr %.0e, tokens %lld (loss %lld), params global rel %.1e",
              r.loss, r.grad_norm, r.clip_coef, r.lr, static_cast<long long>(r.tokens), static_cast<long long>(r.loss_tokens),
              cp.global_rel));
  }

  {  // Options that must not change the gradients: recomputation (bitwise), one example per pass.
    auto grads = [&](bool recompute, int64_t pack) {
      lro::TrainOptions t2 = to;
      t2.recompute = recompute;
      t2.pack_tokens = pack;
      lro::Trainer tr(o.model, lc, oracle_optim(0), t2);
      o.set_params(tr, "init.");
      tr.zero_grad();
      double l = tr.accumulate(o.ex, 1.0);
      std::vector<float> all;
      for (auto& p : tr.params()) {
        all.insert(all.end(), p.ga.begin(), p.ga.end());
        all.insert(all.end(), p.gb.begin(), p.gb.end());
      }
      all.push_back(static_cast<float>(l));
      return all;
    };
    auto base = grads(false, 4096), rec = grads(true, 4096), one = grads(false, 0);
    check(base == rec, "recompute = true gives bitwise the same loss and gradients");
    Diff d = diff(one, base);
    check(d.rel <= 1e-6, fmt("one example per pass vs packed: rel diff %.1e", d.rel));
  }

  // QLoRA: quantised bases of the same model. The gradient is that of the dequantised weights; the
  // forward also quantises activations to int8, so the loss moves a little.
  for (const char* q : {"q8_0", "q4_k_m"}) {
    auto qm = lro::LlamaModel::load(shared + "/golden/gguf/tiny-l3." + q + ".gguf");
    lro::Trainer tr(qm, lc, oracle_optim(1.0), to);
    o.set_params(tr, "init.");
    tr.zero_grad();
    double l0 = tr.accumulate(o.ex, 1.0);
    CmpAll c = compare_all(o, tr, "grad.step0.", true);
    double last = l0;
    for (int s = 0; s < 4; ++s) last = tr.step({o.ex}).loss;
    double after = tr.eval_loss(o.ex);
    // Not a precision check (the ops' finite differences cover the dequantising backward): this random
    // base is so sensitive that dequantising q4_K to f32 alone moves the gradients ~90%, and the
    // forward's int8 activations ~15% more. The check is that the QLoRA path trains.
    check(std::isfinite(l0) && after < 0.5 * l0,
          fmt("QLoRA %s base: loss %.4f (f32 base 27.5527), grads global rel vs f32 golden %.2e, loss after 4 steps %.4f",
              q, l0, c.global_rel, after));
    (void)last;
  }
}

// ------------------------------------------------------------------ model-level checks on a random model

std::vector<lro::TrainExample> random_examples(int64_t first, int64_t count, int64_t d, int64_t vocab, uint64_t seed) {
  std::vector<lro::TrainExample> out;
  for (int64_t i = first; i < first + count; ++i) {
    std::mt19937_64 r(seed * 1000003 + static_cast<uint64_t>(i));
    lro::TrainExample e;
    const int64_t n = 12 + static_cast<int64_t>(r() % 10);
    for (int64_t t = 0; t < n; ++t) e.tokens.push_back(static_cast<int32_t>(r() % static_cast<uint64_t>(vocab)));
    e.labels.assign(static_cast<size_t>(n), -100);
    for (int64_t t = n / 2; t < n; ++t) e.labels[static_cast<size_t>(t)] = e.tokens[static_cast<size_t>(t)];
    e.inject_positions = {2, 4};
    std::normal_distribution<double> nd;
    for (int64_t j = 0; j < 2 * d; ++j) e.vectors.push_back(static_cast<float>(nd(r)));
    out.push_back(std::move(e));
  }
  return out;
}

lro::RandomLlamaSpec tiny_spec(lro::GgmlType type) {
  lro::RandomLlamaSpec s;
  s.n_embd = 64;
  s.n_layer = 3;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = 128;
  s.type = type;
  s.seed = 7;
  s.name = "test_train tiny";
  return s;
}

void test_model_fd(int threads) {
  std::printf("-- whole-model finite differences on a random f32 model (float loss, h 1e-2 on top-|g| entries)\n");
  const std::string path = "/tmp/lro-test-train-fd.gguf";
  lro::write_random_llama(path, tiny_spec(lro::GgmlType::F32));
  auto model = lro::LlamaModel::load(path);
  const int64_t d = model->hparams().n_embd;
  auto ex = random_examples(0, 2, d, model->hparams().n_vocab, 3);
  for (int variant = 0; variant < 3; ++variant) {
    lro::LoraConfig lc;
    lc.rank = 4;
    lc.alpha = 8;
    lc.init_seed = 11;
    lc.rslora = variant == 2;
    lc.dropout = variant == 1 ? 0.2f : 0.0f;
    lro::TrainOptions to;
    to.threads = threads;
    to.inject_layer = variant == 2 ? -1 : 1;
    to.inject_replace = variant == 2;
    to.inject_coef = 0.5f;
    to.seed = 99;
    lro::Trainer tr(model, lc, lro::OptimConfig{}, to);
    // B = 0 at a fresh init: give it values so both A and B have informative gradients.
    std::mt19937_64 r(5);
    std::normal_distribution<double> nd(0, 0.1);
    for (auto& p : tr.params())
      for (auto& b : p.b) b = static_cast<float>(nd(r));
    const uint64_t c0 = tr.rng_counter();
    tr.zero_grad();
    tr.accumulate(ex, 1.0);
    double worst = 0;
    for (int pi : {0, 6, 8, 20}) {  // layer 0 q, layer 0 down, layer 1 k, layer 2 down
      auto& p = tr.params()[static_cast<size_t>(pi)];
      for (char ab : {'A', 'B'}) {
        auto& w = ab == 'A' ? p.a : p.b;
        auto& g = ab == 'A' ? p.ga : p.gb;
        size_t best = 0;
        for (size_t i = 0; i < g.size(); ++i)
          if (std::fabs(g[i]) > std::fabs(g[best])) best = i;
        const float h = 1e-2f, w0 = w[best];
        w[best] = w0 + h;
        tr.set_rng_counter(c0);
        double lp = tr.eval_loss(ex, true);
        w[best] = w0 - h;
        tr.set_rng_counter(c0);
        double lm = tr.eval_loss(ex, true);
        w[best] = w0;
        const double fd = (lp - lm) / (2.0 * h);
        worst = std::max(worst, std::fabs(fd - g[best]) / std::fabs(fd));
      }
    }
    const char* names[3] = {"plain, inject add at block 1", "dropout 0.2, inject add at block 1",
                            "rsLoRA, inject replace at the embeddings"};
    check(worst <= 2e-2, fmt("model gradcheck (%s): max rel err %.2e over 8 entries (tol 2e-2, float loss)", names[variant], worst));
  }
  std::remove(path.c_str());
}

// ------------------------------------------------------------------ resume bit-identity

struct ResumeSetup {
  lro::LoraConfig lc;
  lro::OptimConfig oc;
  lro::TrainOptions to;
  ResumeSetup() {
    lc.rank = 4;
    lc.alpha = 8;
    lc.dropout = 0.1f;
    lc.init_seed = 3;
    lc.targets = {"q", "v", "o", "down"};
    oc.lr = 3e-3;
    oc.weight_decay = 0.01;
    oc.max_grad_norm = 0.5;
    oc.schedule = lro::LrSchedule::COSINE;
    oc.warmup_fraction = 0.25;
    oc.total_steps = 6;
    to.threads = 2;
    to.recompute = true;
    to.seed = 1234;
    to.pack_tokens = 40;
  }
};

// Two micro-batches of 2 examples per step, drawn from data_position().
void train_steps(lro::Trainer& tr, int steps) {
  const auto& hp = tr.model().hparams();
  for (int s = 0; s < steps; ++s) {
    auto ex = random_examples(tr.data_position(), 4, hp.n_embd, hp.n_vocab, 42);
    tr.step({{ex[0], ex[1]}, {ex[2], ex[3]}});
  }
}

std::vector<uint8_t> slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int resume_child(int argc, char** argv) {
  if (argc < 6) return 2;
  ResumeSetup rs;
  auto model = lro::LlamaModel::load(argv[2]);
  lro::Trainer tr(model, rs.lc, rs.oc, rs.to);
  tr.load_checkpoint(argv[3]);
  train_steps(tr, 3);
  tr.save_adapter(argv[4]);
  tr.save_checkpoint(argv[5]);
  return 0;
}

void test_resume(const char* self) {
  std::printf("-- resume: 6 steps straight vs 3 + checkpoint + 3 in a new process (q8_0 base, dropout, cosine+warmup, clip, accum, recompute)\n");
  const std::string dir = "/tmp/lro-test-train-resume." + std::to_string(getpid());
  mkdir(dir.c_str(), 0755);
  const std::string model_path = dir + "/model.gguf";
  lro::write_random_llama(model_path, tiny_spec(lro::GgmlType::Q8_0));
  ResumeSetup rs;
  auto model = lro::LlamaModel::load(model_path);
  {
    lro::Trainer tr(model, rs.lc, rs.oc, rs.to);
    train_steps(tr, 6);
    tr.save_adapter(dir + "/straight.gguf");
    tr.save_checkpoint(dir + "/straight.ckpt.gguf");
  }
  {
    lro::Trainer tr(model, rs.lc, rs.oc, rs.to);
    train_steps(tr, 3);
    tr.save_checkpoint(dir + "/half.ckpt.gguf");
    check(tr.step_count() == 3 && tr.data_position() == 12, "checkpoint after 3 steps: step 3, data position 12");
  }
  const std::string cmd = std::string(self) + " --resume-child " + model_path + " " + dir + "/half.ckpt.gguf " + dir +
                          "/resumed.gguf " + dir + "/resumed.ckpt.gguf";
  int rc = std::system(cmd.c_str());
  auto a = slurp(dir + "/straight.gguf"), b = slurp(dir + "/resumed.gguf");
  auto ca = slurp(dir + "/straight.ckpt.gguf"), cb = slurp(dir + "/resumed.ckpt.gguf");
  check(rc == 0 && !a.empty() && a == b, fmt("resumed adapter is byte-identical (%zu bytes, child rc %d)", a.size(), rc));
  check(!ca.empty() && ca == cb, fmt("resumed checkpoint (moments, step, rng) is byte-identical (%zu bytes)", ca.size()));
  {  // a wrong layout is refused before anything changes
    lro::LoraConfig other = rs.lc;
    other.targets = {"q"};
    lro::Trainer tr(model, other, rs.oc, rs.to);
    bool threw = false;
    try {
      tr.load_checkpoint(dir + "/half.ckpt.gguf");
    } catch (const std::exception& e) {
      threw = true;
    }
    check(threw, "a checkpoint with another LoRA layout is refused");
  }
  {  // the saved adapter runs in the inference session, and initialises a new trainer
    lro::LoraConfig from = rs.lc;
    from.init_adapter = dir + "/straight.gguf";
    lro::TrainOptions to = rs.to;
    to.recompute = false;
    lro::Trainer tr(model, from, lro::OptimConfig{}, to);
    lro::Trainer ref(model, rs.lc, rs.oc, rs.to);
    ref.load_checkpoint(dir + "/straight.ckpt.gguf");
    bool same = tr.params().size() == ref.params().size();
    for (size_t i = 0; same && i < tr.params().size(); ++i)
      same = tr.params()[i].a == ref.params()[i].a && tr.params()[i].b == ref.params()[i].b &&
             tr.params()[i].scale == ref.params()[i].scale;
    check(same, "init_adapter = saved adapter reproduces A, B and scale exactly");

    // Session (inference path, adapter applied unmerged) vs the trainer's loss, no injection.
    auto ex = random_examples(100, 1, model->hparams().n_embd, model->hparams().n_vocab, 42);
    ex[0].inject_positions.clear();
    ex[0].vectors.clear();
    double tl = tr.eval_loss(ex);
    lro::SessionOptions so;
    so.threads = 2;
    lro::Session s(model, so);
    s.set_adapters({{lro::LoraAdapter::load(dir + "/straight.gguf", *model), 1.0f}});
    const int64_t n = static_cast<int64_t>(ex[0].tokens.size()), V = model->hparams().n_vocab;
    std::vector<int32_t> pos(static_cast<size_t>(n)), seq(static_cast<size_t>(n), 0);
    for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(t);
    lro::Batch b;
    b.n = n;
    b.tokens = ex[0].tokens.data();
    b.pos = pos.data();
    b.seq = seq.data();
    for (int64_t t = 0; t < n; ++t) b.output_rows.push_back(t);
    auto res = s.eval(b);
    double sum = 0;
    int cnt = 0;
    for (int64_t t = 0; t + 1 < n; ++t) {
      int32_t tg = ex[0].labels[t + 1];
      if (tg < 0) continue;
      const float* l = res.logits.data() + t * V;
      double m = -1e300, z = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, double(l[j]));
      for (int64_t j = 0; j < V; ++j) z += std::exp(l[j] - m);
      sum += m + std::log(z) - l[tg];
      ++cnt;
    }
    check(std::fabs(sum / cnt - tl) <= 1e-5 * tl, fmt("inference Session with the saved adapter: loss %.7f vs trainer %.7f", sum / cnt, tl));
  }
  for (const char* f : {"model.gguf", "straight.gguf", "resumed.gguf", "straight.ckpt.gguf", "half.ckpt.gguf", "resumed.ckpt.gguf"})
    std::remove((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}

void test_schedule() {
  std::printf("-- LR schedules (HF get_*_schedule_with_warmup)\n");
  auto make = [](lro::LrSchedule s) {
    lro::OptimConfig oc;
    oc.lr = 1.0;
    oc.schedule = s;
    oc.warmup_fraction = 0.2;
    oc.total_steps = 10;
    return oc;
  };
  auto model = lro::LlamaModel::load("/tmp/lro-test-train-sched.gguf");
  auto lr = [&](lro::LrSchedule s, int64_t step) {
    lro::LoraConfig lc;
    lc.targets = {"q"};
    lro::Trainer tr(model, lc, make(s), lro::TrainOptions{});
    return tr.lr_at(step);
  };
  check(lr(lro::LrSchedule::CONSTANT, 0) == 0.0 && lr(lro::LrSchedule::CONSTANT, 1) == 0.5 && lr(lro::LrSchedule::CONSTANT, 7) == 1.0,
        "constant with warmup 2 of 10: 0, 0.5, then 1");
  check(std::fabs(lr(lro::LrSchedule::LINEAR, 6) - 0.5) < 1e-12 && lr(lro::LrSchedule::LINEAR, 10) == 0.0, "linear: 0.5 at step 6, 0 at 10");
  check(std::fabs(lr(lro::LrSchedule::COSINE, 6) - 0.5) < 1e-12 && std::fabs(lr(lro::LrSchedule::COSINE, 4) - 0.5 * (1 + std::cos(M_PI / 4))) < 1e-12,
        "cosine: 0.5 at mid-decay");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--resume-child") return resume_child(argc, argv);
  std::string shared = argc > 1 ? argv[1] : golden::shared_dir();
  const int threads = 2;
  try {
    lro::ThreadPool pool(threads);
    test_ops(pool);
    lro::write_random_llama("/tmp/lro-test-train-sched.gguf", tiny_spec(lro::GgmlType::F32));
    test_schedule();
    std::remove("/tmp/lro-test-train-sched.gguf");
    test_model_fd(threads);
    test_oracle(shared, threads);
    test_resume(argv[0]);
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "PASSED", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
