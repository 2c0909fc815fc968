// Latent-chain training against the codi-train* goldens (../shared/golden/hf/README.md): CODI and
// Coconut objectives, LoRA and full-parameter modes, on codi-tiny converted here (merged for full
// mode; base + GGUF adapter for LoRA mode). Checks ids-level inputs taken from the golden, every
// loss component, every h_k / e_k, the distillation states, every step-0 gradient, the pre-clip
// norms and clip coefficients, and the parameters after each AdamW step, with the README's
// suggested tolerances.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "convert/convert_hf.h"
#include "convert/json.h"
#include "golden.h"
#include "model/latent_head.h"
#include "train/latent_train.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <typename... A>
std::string fmt(const char* f, A... a) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, f, a...);
  return buf;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double e = double(a[i]) - b[i];
    num += e * e;
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

std::vector<int32_t> ids(const golden::Tensor& t) {
  std::vector<int32_t> v;
  for (int64_t x : t.ints()) v.push_back(static_cast<int32_t>(x));
  return v;
}

// All tensors of a variant (it may continue in <prefix>.part2.safetensors, ...).
struct Golden {
  std::vector<std::unique_ptr<golden::SafetensorsFile>> files;
  lro::convert::json::Value j;
  Golden(const std::string& hf, const std::string& prefix) {
    j = lro::convert::json::parse_file(hf + "/" + prefix + ".json");
    for (const auto& f : j.find("files")->items) files.push_back(std::make_unique<golden::SafetensorsFile>(hf + "/" + f.str));
  }
  const golden::Tensor* find(const std::string& n) const {
    for (const auto& f : files) {
      auto it = f->tensors.find(n);
      if (it != f->tensors.end()) return &it->second;
    }
    return nullptr;
  }
  const golden::Tensor& at(const std::string& n) const {
    if (const auto* t = find(n)) return *t;
    throw std::runtime_error("golden tensor " + n + " is missing");
  }
};

struct Variant {
  std::string prefix;
  lro::LatentObjective objective;
  lro::LatentTrainMode mode;
  double loss_rel, later_loss_abs, latent_rel, state_rel, norm_rel, grad_rel, param_rel;
};

void run_variant(const Variant& v, const std::string& hf, const std::string& tmp) {
  std::printf("-- %s\n", v.prefix.c_str());
  Golden g(hf, v.prefix);
  const bool codi = v.objective == lro::LatentObjective::CODI, full = v.mode == lro::LatentTrainMode::FULL;
  const std::string model_path = tmp + (full ? "/merged.gguf" : "/base.gguf");
  auto model = lro::LlamaModel::load(model_path);
  std::shared_ptr<lro::LatentHead> head;
  if (codi) head = lro::LatentHead::load(tmp + (full ? "/merged.latent.gguf" : "/base.latent.gguf"), model->hparams().n_embd);

  std::vector<lro::LatentExample> ex;
  const auto& jex = g.j.find("examples")->items;
  for (size_t b = 0; b < jex.size(); ++b) {
    const std::string p = "ex" + std::to_string(b) + ".";
    lro::LatentExample e;
    if (codi) {
      e.prompt = ids(g.at(p + "encoder_ids"));
      e.suffix = ids(g.at(p + "decoder_ids"));
      e.suffix_labels = ids(g.at(p + "decoder_labels"));
      e.teacher = ids(g.at(p + "teacher_ids"));
      e.teacher_labels = ids(g.at(p + "teacher_labels"));
      e.student_distill = jex[b].find("distill_decoder_index")->integer;
      e.teacher_distill = jex[b].find("teacher_positions")->find("distill")->integer;
    } else {
      e.prompt = ids(g.at(p + "prompt_ids"));
      e.suffix = ids(g.at(p + "suffix_ids"));
      e.suffix_labels = ids(g.at(p + "suffix_labels"));
    }
    ex.push_back(std::move(e));
  }

  lro::LatentTrainConfig cfg;
  cfg.objective = v.objective;
  cfg.mode = v.mode;
  cfg.latent_steps = codi ? g.j.find("objective_settings")->find("num_latent")->integer
                          : g.j.find("objective_settings")->find("stage")->integer;
  if (codi) {
    cfg.distill_factor = g.j.find("objective_settings")->find("distill_factor")->number;
    cfg.ref_factor = g.j.find("objective_settings")->find("ref_factor")->number;
  }
  if (!full) cfg.lora.init_adapter = tmp + "/base.lora.gguf";
  cfg.threads = 2;
  cfg.ce_chunk_rows = 7;  // several head chunks
  lro::OptimConfig oc;
  oc.lr = 1e-3;
  oc.weight_decay = 0.01;
  oc.max_grad_norm = 1.0;
  lro::LatentTrainer tr(model, head, cfg, oc);

  // Trainable tensors: the golden's names, shapes and initial values (LoRA mode stores none for full).
  const auto& tp = g.j.find("trainable_parameters")->items;
  bool names_ok = tp.size() == tr.params().size();
  for (size_t i = 0; names_ok && i < tp.size(); ++i) {
    const auto* t = tr.find(tp[i].find("name")->str);
    names_ok = t != nullptr;
    if (t) {
      std::vector<int64_t> shape;
      for (const auto& s : tp[i].find("shape")->items) shape.push_back(s.integer);
      names_ok = shape == t->shape;
    }
  }
  check(names_ok, fmt("%zu trainable tensors with the golden's names and PyTorch shapes", tp.size()));

  // ---- step 0: losses, latents, distillation states, gradients
  std::vector<lro::LatentTrace> traces;
  tr.zero_grad();
  auto losses = tr.accumulate(ex, 1.0, &traces);
  const auto comps = g.at("loss_components").f32();  // [step, example, 4 or 1]
  const size_t nc = codi ? 4 : 1;
  double worst = 0, batch = 0;
  for (size_t b = 0; b < ex.size(); ++b) {
    const double mine[4] = {codi ? losses[b].ce : losses[b].total, losses[b].distill, losses[b].ref_ce, losses[b].total};
    for (size_t c = 0; c < nc; ++c) worst = std::max(worst, std::fabs(mine[c] - comps[b * nc + c]) / std::fabs(comps[b * nc + c]));
    batch += losses[b].total / static_cast<double>(ex.size());
  }
  const double golden_loss = g.at("losses").f32()[0];
  check(worst <= v.loss_rel, fmt("step-0 loss components worst rel %.2e (tol %.0e); batch loss %.6f vs %.6f", worst, v.loss_rel, batch,
                                 golden_loss));
  double lat = 0, st = 0;
  for (size_t b = 0; b < ex.size(); ++b) {
    const std::string p = "ex" + std::to_string(b) + ".";
    lat = std::max({lat, rel_l2(traces[b].h, g.at(p + "latent.h").f32()), rel_l2(traces[b].e, g.at(p + "latent.e").f32())});
    if (codi)
      st = std::max({st, rel_l2(traces[b].student_states, g.at(p + "distill.student").f32()),
                     rel_l2(traces[b].teacher_states, g.at(p + "distill.teacher").f32())});
  }
  check(lat <= v.latent_rel, fmt("h_k / e_k of every latent step: worst rel L2 %.2e (tol %.0e)", lat, v.latent_rel));
  if (codi) check(st <= v.state_rel, fmt("distillation states student / teacher: worst rel L2 %.2e (tol %.0e)", st, v.state_rel));

  double gw = 0;
  std::string gworst;
  for (auto& t : tr.params()) {
    const double r = rel_l2(tr.hf_values(t, true), g.at("grad.step0." + t.name).f32());
    if (r > gw) {
      gw = r;
      gworst = t.name;
    }
  }
  check(gw <= v.grad_rel, fmt("step-0 gradients of all %zu tensors: worst rel L2 %.2e (%s; tol %.0e)", tr.params().size(), gw,
                              gworst.c_str(), v.grad_rel));
  const auto norms = g.at("grad_norm_preclip").f32();
  const double n0 = tr.grad_norm();
  check(std::fabs(n0 - norms[0]) <= v.norm_rel * norms[0], fmt("pre-clip norm %.4f vs golden %.4f", n0, norms[0]));

  // ---- two AdamW steps (each recomputes its gradients), then the loss after them
  const auto coefs = g.at("clip_coef").f32();
  const auto glosses = g.at("losses").f32();
  for (int s = 0; s < 2; ++s) {
    auto r = tr.step({ex});
    check(std::fabs(r.grad_norm - norms[s]) <= v.norm_rel * norms[s] && std::fabs(r.clip_coef - coefs[s]) <= v.norm_rel * coefs[s] &&
              std::fabs(r.loss - glosses[s]) <= (s == 0 ? v.loss_rel * glosses[s] : v.later_loss_abs),
          fmt("step %d: loss %.6f (golden %.6f), pre-clip norm %.4f (%.4f), clip %.6g (%.6g)", s + 1, r.loss, glosses[s], r.grad_norm,
              norms[s], r.clip_coef, coefs[s]));
    const std::string pp = "params.step" + std::to_string(s + 1) + ".";
    if (!g.find(pp + tr.params()[0].name)) continue;
    double pw = 0, pa = 0;
    for (auto& t : tr.params()) {
      const auto ref = g.at(pp + t.name).f32();
      const auto mine = tr.hf_values(t, false);
      pw = std::max(pw, rel_l2(mine, ref));
      pa = std::max(pa, max_abs(mine, ref));
    }
    const double abs_tol = 2 * oc.lr * (s + 1);
    check(pw <= v.param_rel && pa <= abs_tol, fmt("parameters after step %d: worst rel L2 %.2e (tol %.0e), max abs %.2e (tol %.0e)", s + 1,
                                                  pw, v.param_rel, pa, abs_tol));
  }
  auto after = tr.accumulate(ex, 0.0);
  double la = 0;
  for (const auto& l : after) la += l.total / static_cast<double>(after.size());
  check(std::fabs(la - glosses[2]) <= v.later_loss_abs, fmt("loss after step 2: %.6f (golden %.6f, tol %.0e)", la, glosses[2], v.later_loss_abs));
}

// Latent targets (not in the goldens): the CE of the row the head reads for step k against
// latent_labels[k]. Its value is checked against logits computed here from the traced h_k and the
// output matrix; its gradient (with minus without targets) against central differences.
void check_latent_targets(const std::string& hf, const std::string& tmp) {
  std::printf("-- latent targets (coconut, full)\n");
  Golden g(hf, "codi-train-coconut-full");
  auto model = lro::LlamaModel::load(tmp + "/merged.gguf");
  const int64_t V = model->hparams().n_vocab, d = model->hparams().n_embd;
  lro::LatentTrainConfig cfg;
  cfg.objective = lro::LatentObjective::COCONUT;
  cfg.mode = lro::LatentTrainMode::FULL;
  cfg.latent_steps = g.j.find("objective_settings")->find("stage")->integer;
  cfg.threads = 2;
  lro::OptimConfig oc;
  lro::LatentTrainer tr(model, nullptr, cfg, oc);
  std::vector<lro::LatentExample> plain, targeted;
  const size_t n_ex = g.j.find("examples")->items.size();
  for (size_t b = 0; b < n_ex; ++b) {
    const std::string p = "ex" + std::to_string(b) + ".";
    lro::LatentExample e;
    e.prompt = ids(g.at(p + "prompt_ids"));
    e.suffix = ids(g.at(p + "suffix_ids"));
    e.suffix_labels = ids(g.at(p + "suffix_labels"));
    plain.push_back(e);
    for (int64_t k = 0; k < cfg.latent_steps; ++k)
      e.latent_labels.push_back(b == 0 && k == 0 ? -100 : static_cast<int32_t>((e.prompt[static_cast<size_t>(k)] * 7 + 3 * k + b) % V));
    targeted.push_back(std::move(e));
  }
  const lro::TrainTensor* out = tr.find("lm_head.weight");
  if (!out) out = tr.find("model.embed_tokens.weight");
  check(out != nullptr, "the output matrix is a trained tensor");
  if (!out) return;
  const std::vector<float> W = tr.hf_values(*out, false);  // [V, d]
  std::vector<lro::LatentTrace> traces;
  auto losses = tr.accumulate(targeted, 0.0, &traces);
  double worst = 0;
  bool total_ok = true;
  for (size_t b = 0; b < n_ex; ++b) {
    double sum = 0;
    int n = 0;
    for (int64_t k = 0; k < cfg.latent_steps; ++k) {
      const int32_t t = targeted[b].latent_labels[static_cast<size_t>(k)];
      if (t < 0) continue;
      const float* h = traces[b].h.data() + k * d;
      std::vector<double> z(static_cast<size_t>(V));
      double mx = -1e300;
      for (int64_t v = 0; v < V; ++v) {
        double a = 0;
        for (int64_t i = 0; i < d; ++i) a += double(W[static_cast<size_t>(v * d + i)]) * h[i];
        z[static_cast<size_t>(v)] = a;
        mx = std::max(mx, a);
      }
      double se = 0;
      for (double a : z) se += std::exp(a - mx);
      sum += mx + std::log(se) - z[static_cast<size_t>(t)];
      ++n;
    }
    const double ref = sum / n;
    worst = std::max(worst, std::fabs(losses[b].latent_ce - ref) / ref);
    total_ok = total_ok && std::fabs(losses[b].total - losses[b].ce - losses[b].latent_ce) <= 1e-9 * losses[b].total &&
               losses[b].latent_tokens == n;
  }
  check(worst <= 1e-5, fmt("latent-target CE vs logits of the traced h_k: worst rel %.2e (tol 1e-5)", worst));
  check(total_ok, "loss = suffix CE + latent-target CE; a negative label is skipped");

  // d(mean latent CE)/dw = grad(with targets) - grad(without)
  tr.zero_grad();
  tr.accumulate(targeted, 1.0);
  std::vector<std::vector<float>> with;
  for (auto& t : tr.params()) with.push_back(t.g);
  tr.zero_grad();
  tr.accumulate(plain, 1.0);
  auto mean_latent = [&]() {
    double m = 0;
    for (const auto& l : tr.accumulate(targeted, 0.0)) m += l.latent_ce / static_cast<double>(n_ex);
    return m;
  };
  double fd_worst = 0;
  int probes = 0;
  for (size_t pi = 0; pi < tr.params().size(); pi += 3) {
    auto& t = tr.params()[pi];
    size_t best = 0;
    for (size_t i = 0; i < t.g.size(); ++i)
      if (std::fabs(with[pi][i] - t.g[i]) > std::fabs(with[pi][best] - t.g[best])) best = i;
    const double analytic = double(with[pi][best]) - t.g[best];
    if (std::fabs(analytic) < 1e-3) continue;
    const float w0 = t.w[best], eps = 1e-2f * std::max(1.0f, std::fabs(w0));
    t.w[best] = w0 + eps;
    const double up = mean_latent();
    t.w[best] = w0 - eps;
    const double dn = mean_latent();
    t.w[best] = w0;
    const double fd = (up - dn) / (2.0 * eps);
    fd_worst = std::max(fd_worst, std::fabs(fd - analytic) / std::fabs(analytic));
    ++probes;
  }
  check(probes >= 3 && fd_worst <= 2e-2,
        fmt("latent-target gradient vs central differences at %d weights: worst rel %.2e (tol 2e-2)", probes, fd_worst));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string shared = argc > 1 ? argv[1] : golden::shared_dir();
  const std::string hf = shared + "/golden/hf";
  char tmpl[] = "/tmp/lro-latent-train-XXXXXX";
  const std::string tmp = mkdtemp(tmpl);
  try {
    // codi-tiny, as the user converts it: merged (full mode) and unmerged with its adapter (LoRA mode).
    lro::convert::HfConvertOptions merged;
    lro::convert::convert_hf(hf + "/codi-tiny", tmp + "/merged.gguf", merged);
    lro::convert::HfConvertOptions unmerged;
    unmerged.no_merge = true;
    auto sum = lro::convert::convert_hf(hf + "/codi-tiny", tmp + "/base.gguf", unmerged);
    check(sum.lora_out == tmp + "/base.lora.gguf" && sum.lora_merged == 0, "convert --no-merge writes the base unmerged and <out>.lora.gguf");

    using O = lro::LatentObjective;
    using M = lro::LatentTrainMode;
    // Tolerances: the README's suggested ones (about 10x the float32-vs-float64 differences).
    run_variant({"codi-train", O::CODI, M::LORA, 1e-5, 5e-3, 1e-4, 5e-5, 5e-4, 5e-4, 5e-3}, hf, tmp);
    run_variant({"codi-train-full", O::CODI, M::FULL, 1e-5, 2e-1, 2e-4, 5e-5, 5e-3, 5e-4, 1e-3}, hf, tmp);
    run_variant({"codi-train-coconut", O::COCONUT, M::LORA, 1e-5, 5e-3, 1e-4, 5e-5, 5e-4, 5e-4, 5e-3}, hf, tmp);
    run_variant({"codi-train-coconut-full", O::COCONUT, M::FULL, 1e-5, 2e-1, 2e-4, 5e-5, 5e-3, 5e-4, 1e-3}, hf, tmp);
    check_latent_targets(hf, tmp);
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "PASSED", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
