#include "model/latent_head.h"

#include <cmath>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"

namespace lro {

namespace {
// a[n, hidden] = W1 z + b1 (pre-GELU), y[n, d] = W2 gelu(a) + b2 (pre-LayerNorm)
void head_hidden(const LatentHeadWeights& w, const float* z, int64_t n, std::vector<float>& a, std::vector<float>& g,
                 std::vector<float>& y, ThreadPool& pool) {
  const int64_t d = w.d, hid = w.hidden;
  a.resize(static_cast<size_t>(n * hid));
  g.resize(a.size());
  y.resize(static_cast<size_t>(n * d));
  matmul(w.w1_type, w.w1, hid, d, z, n, a.data(), hid, pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hid; ++i) a[t * hid + i] += w.b1[i];
  gelu_forward(g.data(), a.data(), n * hid);
  matmul(w.w2_type, w.w2, d, hid, g.data(), n, y.data(), d, pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) y[t * d + i] += w.b2[i];
}
}  // namespace

void latent_head_forward(const LatentHeadWeights& w, const float* z, float* e, int64_t n, ThreadPool& pool) {
  if (w.identity) {
    for (int64_t i = 0; i < n * w.d; ++i) e[i] = w.scale * z[i];
    return;
  }
  std::vector<float> a, g, y;
  head_hidden(w, z, n, a, g, y, pool);
  layernorm_forward(e, y.data(), w.ln_w, w.ln_b, n, w.d, w.ln_eps);
}

void latent_head_backward(const LatentHeadWeights& w, const LatentHeadGrads& gr, const float* z, const float* de,
                          float* dz, int64_t n, ThreadPool& pool) {
  const int64_t d = w.d, hid = w.hidden;
  if (w.identity) {
    for (int64_t i = 0; i < n * d; ++i) dz[i] += w.scale * de[i];
    return;
  }
  std::vector<float> a, g, y;
  head_hidden(w, z, n, a, g, y, pool);
  std::vector<float> dy(y.size(), 0.0f), dg(g.size(), 0.0f), da(a.size(), 0.0f);
  layernorm_backward(dy.data(), gr.ln_w, gr.ln_b, de, y.data(), w.ln_w, n, d, w.ln_eps);
  if (gr.b2)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < d; ++i) gr.b2[i] += dy[t * d + i];
  if (gr.w2) matmul_backward_weight(gr.w2, dy.data(), g.data(), n, d, hid, pool);  // [d, hid]
  matmul_backward(dg.data(), dy.data(), w.w2_type, w.w2, d, hid, n, pool);          // [n, hid]
  gelu_backward(da.data(), dg.data(), a.data(), n * hid);
  if (gr.b1)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < hid; ++i) gr.b1[i] += da[t * hid + i];
  if (gr.w1) matmul_backward_weight(gr.w1, da.data(), z, n, hid, d, pool);  // [hid, d]
  matmul_backward(dz, da.data(), w.w1_type, w.w1, hid, d, n, pool);         // [n, d]
}

namespace {
std::vector<float> read_vec(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) throw GgufError(f.path() + ": latent head tensor '" + name + "' is missing");
  if (t->nelements() != n || t->ne[0] != n)
    throw GgufError(f.path() + ": latent head tensor '" + name + "' has " + std::to_string(t->nelements()) +
                    " elements, expected " + std::to_string(n));
  if (!traits(t->type).supported) throw GgufError(f.path() + ": tensor '" + name + "' has an unsupported type");
  require_finite(f.path(), *t);
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(t->type, t->data, v.data(), n);
  return v;
}
}  // namespace

std::shared_ptr<LatentHead> LatentHead::load(const std::string& path, int64_t n_embd) {
  std::shared_ptr<GgufFile> f = GgufFile::open(path);
  auto h = from_file(f, n_embd);
  if (!h) throw GgufError(path + ": not a latent head (metadata '" + std::string(kLatentMode) + "' is missing)");
  return h;
}

std::shared_ptr<LatentHead> LatentHead::from_file(std::shared_ptr<GgufFile> file, int64_t n_embd) {
  const GgufFile& f = *file;
  if (!f.find(kLatentMode)) return nullptr;
  auto h = std::make_shared<LatentHead>();
  h->file_ = file;
  h->d_ = n_embd;
  auto& s = h->s_;
  s.mode = f.get_string(kLatentMode, "");
  if (s.mode != "codi" && s.mode != "coconut")
    throw GgufError(f.path() + ": '" + kLatentMode + "' is '" + s.mode + "', expected 'codi' or 'coconut'");
  s.steps = f.get_int(kLatentSteps, 6);
  if (s.steps < 0 || s.steps > 4096) throw GgufError(f.path() + ": '" + kLatentSteps + "' is out of range");
  s.bot_id = static_cast<int32_t>(f.get_int(kLatentBot, -1));
  s.eot_id = static_cast<int32_t>(f.get_int(kLatentEot, -1));
  s.pad_id = static_cast<int32_t>(f.get_int(kLatentPad, -1));
  s.prompt_format = f.get_string(kLatentPromptFormat, "plain");
  s.ln_eps = static_cast<float>(f.get_float(kLatentLnEps, 1e-5));
  s.scale = static_cast<float>(f.get_float(kLatentScale, 1.0));
  if (!std::isfinite(s.scale) || s.scale <= 0 || s.scale > 1e4)
    throw GgufError(f.path() + ": '" + kLatentScale + "' must be a positive finite number, got " + std::to_string(s.scale));
  if (s.scale != 1.0f && s.mode != "coconut")
    throw GgufError(f.path() + ": '" + kLatentScale + "' applies to Coconut heads only (this one is '" + s.mode + "')");
  if (const GgufValue* ex = f.find(kLatentExclude))
    for (const auto& v : ex->as_array(kLatentExclude)) s.exclude_ids.push_back(static_cast<int32_t>(v.as_int(kLatentExclude)));
  if (s.mode == "coconut") return h;

  h->w1_ = f.find_tensor("latent.fc1.weight");
  h->w2_ = f.find_tensor("latent.fc2.weight");
  if (!h->w1_ || !h->w2_) throw GgufError(f.path() + ": CODI latent head needs tensors latent.fc1.weight and latent.fc2.weight");
  if (h->w1_->n_dims != 2 || h->w1_->ne[0] != n_embd)
    throw GgufError(f.path() + ": latent.fc1.weight must have ne [" + std::to_string(n_embd) + ", hidden] to fit the model width");
  h->hidden_ = h->w1_->ne[1];
  if (h->w2_->n_dims != 2 || h->w2_->ne[0] != h->hidden_ || h->w2_->ne[1] != n_embd)
    throw GgufError(f.path() + ": latent.fc2.weight must have ne [" + std::to_string(h->hidden_) + ", " +
                    std::to_string(n_embd) + "]");
  for (const auto* t : {h->w1_, h->w2_}) {
    if (!traits(t->type).supported) throw GgufError(f.path() + ": tensor '" + t->name + "' has an unsupported type");
    require_finite(f.path(), *t);
  }
  h->b1_ = read_vec(f, "latent.fc1.bias", h->hidden_);
  h->b2_ = read_vec(f, "latent.fc2.bias", n_embd);
  h->ln_w_ = read_vec(f, "latent.ln.weight", n_embd);
  h->ln_b_ = read_vec(f, "latent.ln.bias", n_embd);
  return h;
}

LatentHeadWeights LatentHead::weights() const {
  LatentHeadWeights w;
  w.d = d_;
  w.scale = s_.scale;
  if (s_.mode == "coconut") return w;
  w.identity = false;
  w.hidden = hidden_;
  w.w1_type = w1_->type;
  w.w1 = w1_->data;
  w.w2_type = w2_->type;
  w.w2 = w2_->data;
  w.b1 = b1_.data();
  w.b2 = b2_.data();
  w.ln_w = ln_w_.data();
  w.ln_b = ln_b_.data();
  w.ln_eps = s_.ln_eps;
  return w;
}

void LatentHead::project(const float* z, float* e, int64_t n, ThreadPool& pool) const {
  latent_head_forward(weights(), z, e, n, pool);
}

}  // namespace lro
