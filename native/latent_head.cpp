#include "latent_head.h"

#include <cmath>

#include "quants.h"
#include "thread_pool.h"

namespace lro {

void layernorm_forward(float* out, const float* x, const float* w, const float* b, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* r = x + t * d;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += r[i];
    mean /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= static_cast<double>(d);
    float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<float>(r[i] - mean) * inv * w[i] + b[i];
  }
}

void gelu_forward(float* out, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0))));
}

namespace {
std::vector<float> read_vec(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) throw GgufError(f.path() + ": latent head tensor '" + name + "' is missing");
  if (t->nelements() != n || t->ne[0] != n)
    throw GgufError(f.path() + ": latent head tensor '" + name + "' has " + std::to_string(t->nelements()) +
                    " elements, expected " + std::to_string(n));
  if (!traits(t->type).supported) throw GgufError(f.path() + ": tensor '" + name + "' has an unsupported type");
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
  for (const auto* t : {h->w1_, h->w2_})
    if (!traits(t->type).supported) throw GgufError(f.path() + ": tensor '" + t->name + "' has an unsupported type");
  h->b1_ = read_vec(f, "latent.fc1.bias", h->hidden_);
  h->b2_ = read_vec(f, "latent.fc2.bias", n_embd);
  h->ln_w_ = read_vec(f, "latent.ln.weight", n_embd);
  h->ln_b_ = read_vec(f, "latent.ln.bias", n_embd);
  return h;
}

void LatentHead::project(const float* z, float* e, int64_t n, ThreadPool& pool) const {
  const int64_t d = d_;
  if (s_.mode == "coconut") {
    std::copy(z, z + n * d, e);
    return;
  }
  std::vector<float> a(static_cast<size_t>(n * hidden_)), y(static_cast<size_t>(n * d));
  matmul(w1_->type, w1_->data, hidden_, d, z, n, a.data(), hidden_, pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hidden_; ++i) a[t * hidden_ + i] += b1_[i];
  gelu_forward(a.data(), a.data(), n * hidden_);
  matmul(w2_->type, w2_->data, d, hidden_, a.data(), n, y.data(), d, pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) y[t * d + i] += b2_[i];
  layernorm_forward(e, y.data(), ln_w_.data(), ln_b_.data(), n, d, s_.ln_eps);
}

}  // namespace lro
