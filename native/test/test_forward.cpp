// Forward pass against the llama.cpp goldens, without Node (runs on the device image too).
// Usage: test_forward [shared_dir]   (default ../shared or $LRO_SHARED)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "golden.h"
#include "model/llama_model.h"
#include "model/lora_adapter.h"
#include "runtime/session.h"

namespace {
int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// A golden's tokens as one sequence from position 0, every row an output, final norm kept.
struct GoldenBatch {
  std::vector<int32_t> toks, pos, seq;
  lro::Batch b;
  explicit GoldenBatch(const golden::SafetensorsFile& g) {
    auto t = g.at("tokens").ints();
    toks.assign(t.begin(), t.end());
    seq.assign(toks.size(), 0);
    for (size_t i = 0; i < toks.size(); ++i) pos.push_back(static_cast<int32_t>(i));
    b.n = static_cast<int64_t>(toks.size());
    b.tokens = toks.data();
    b.pos = pos.data();
    b.seq = seq.data();
    for (int64_t i = 0; i < b.n; ++i) b.output_rows.push_back(i);
    b.want_final_norm = true;
  }
};

lro::SessionOptions two_threads() {
  lro::SessionOptions so;
  so.threads = 2;
  return so;
}
}  // namespace

int main(int argc, char** argv) {
  std::string shared = argc > 1 ? argv[1] : golden::shared_dir();
  auto model = lro::LlamaModel::load(shared + "/golden/gguf/tiny-l3.f32.gguf");
  const auto& hp = model->hparams();
  for (const char* p : {"p12", "p40", "p75"}) {
    golden::SafetensorsFile g(shared + "/golden/llamacpp/tiny-l3.f32." + p + ".safetensors");
    GoldenBatch gb(g);
    lro::Batch& b = gb.b;
    lro::Session s(model, two_threads());
    std::vector<std::vector<float>> resid(static_cast<size_t>(hp.n_layer));
    b.hook = [&](lro::HookPoint pt, int layer, float* x, int64_t n, int64_t d) {
      if (pt == lro::HookPoint::RESID_POST) resid[layer].assign(x, x + n * d);
    };
    auto r = s.eval(b);
    auto gl = g.at("logits").f32(), gf = g.at("final_norm").f32();
    float dl = golden::max_abs_diff(r.logits.data(), gl.data(), gl.size());
    float df = golden::max_abs_diff(r.final_norm.data(), gf.data(), gf.size());
    char buf[256];
    std::snprintf(buf, sizeof buf, "f32 %s logits max|diff| %.3g (atol 1e-3)", p, dl);
    check(dl <= 1e-3f, buf);
    std::snprintf(buf, sizeof buf, "f32 %s final_norm max|diff| %.3g (atol 1e-4)", p, df);
    check(df <= 1e-4f, buf);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
      auto gr = g.at("resid_post." + std::to_string(l)).f32();
      float dr = golden::max_abs_diff(resid[l].data(), gr.data(), gr.size());
      std::snprintf(buf, sizeof buf, "f32 %s resid_post.%lld max|diff| %.3g (atol 1e-3)", p, static_cast<long long>(l), dr);
      check(dr <= 1e-3f, buf);
    }
  }
  {  // The file's bytes held as a private huge-page copy (LRO_WEIGHT_MEMORY=copy) rather than mapped:
    // the same golden logits, bit for bit the mapped model's; a bad value is refused, naming it.
    golden::SafetensorsFile g(shared + "/golden/llamacpp/tiny-l3.f32.p12.safetensors");
    const std::string path = shared + "/golden/gguf/tiny-l3.f32.gguf";
    setenv("LRO_WEIGHT_MEMORY", "copy", 1);
    auto copied = lro::LlamaModel::load(path);
    setenv("LRO_WEIGHT_MEMORY", "mapped", 1);
    auto mapped = lro::LlamaModel::load(path);
    setenv("LRO_WEIGHT_MEMORY", "huge", 1);
    std::string refused;
    try {
      lro::LlamaModel::load(path);
    } catch (const lro::GgufError& e) {
      refused = e.what();
    }
    unsetenv("LRO_WEIGHT_MEMORY");
    check(copied->file().memory() == lro::GgufMemory::Copy && mapped->file().memory() == lro::GgufMemory::Mapped,
          "LRO_WEIGHT_MEMORY=copy / mapped: the file is held as asked");
    check(refused.find("LRO_WEIGHT_MEMORY") != std::string::npos && refused.find("\"huge\"") != std::string::npos,
          "LRO_WEIGHT_MEMORY=huge is refused, naming the variable and the value: " + refused);
    GoldenBatch gb(g);
    lro::Session sc(copied, two_threads()), sm(mapped, two_threads());
    auto rc = sc.eval(gb.b), rm = sm.eval(gb.b);
    auto gl = g.at("logits").f32();
    float dl = golden::max_abs_diff(rc.logits.data(), gl.data(), gl.size());
    char buf[160];
    std::snprintf(buf, sizeof buf, "copied weights: f32 p12 logits max|diff| %.3g (atol 1e-3), equal to the mapped model's", dl);
    check(dl <= 1e-3f && rc.logits == rm.logits, buf);
  }
  {  // Some output rows, unordered and repeated, without hooks: the last block computes only them
    // past its keys and values; their logits are still the golden's rows.
    golden::SafetensorsFile g(shared + "/golden/llamacpp/tiny-l3.f32.p40.safetensors");
    GoldenBatch gb(g);
    const std::vector<int64_t> rows = {gb.b.n - 1, 3, 17, 3};
    gb.b.output_rows = rows;
    lro::Session s(model, two_threads());
    auto r = s.eval(gb.b);
    auto gl = g.at("logits").f32();
    const size_t nv = static_cast<size_t>(hp.n_vocab);
    float dl = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      dl = std::fmax(dl, golden::max_abs_diff(r.logits.data() + i * nv, gl.data() + static_cast<size_t>(rows[i]) * nv, nv));
    char buf[160];
    std::snprintf(buf, sizeof buf, "f32 p40 output rows {last, 3, 17, 3} logits max|diff| %.3g (atol 1e-3)", dl);
    check(r.logits.size() == rows.size() * nv && dl <= 1e-3f, buf);
    // Again on the first result's storage (a larger stale buffer): the result is written into it
    // and is the same, bit for bit, with no stale row left over.
    std::vector<float> first = r.logits;
    lro::EvalResult storage;
    storage.logits.assign(first.size() + nv, -1.0f);
    const float* buffer = storage.logits.data();
    s.seq_remove(0, -1, -1);
    auto again = s.eval(gb.b, nullptr, std::move(storage));
    check(again.logits.data() == buffer && again.logits == first, "eval into an earlier result's storage: same buffer, same logits");
    // The removed sequence's emptied cache was reused for the new one: it holds this batch's cells only.
    check(s.seq_cells(0) == gb.b.n && s.seq_pos_max(0) == gb.b.pos[gb.b.n - 1], "a sequence refilled after removal holds only its new cells");
  }
  {  // A batch longer than the kept activations (kKeepTapeRows): its buffers are released after the
    // output row is read, and the next long batch gives the same logits.
    const int64_t n = 1100;
    lro::SessionOptions o = two_threads();
    o.n_ctx = 2048;
    lro::Session s(model, o);
    std::vector<int32_t> toks(n), pos(n), seq(n, 0);
    for (int64_t i = 0; i < n; ++i) toks[i] = static_cast<int32_t>((i * 37) % hp.n_vocab), pos[i] = static_cast<int32_t>(i);
    lro::Batch b;
    b.n = n;
    b.tokens = toks.data();
    b.pos = pos.data();
    b.seq = seq.data();
    b.output_rows = {n - 1};
    auto first = s.eval(b);
    s.seq_remove(0, -1, -1);
    auto again = s.eval(b);
    bool finite = !first.logits.empty();
    for (float v : first.logits) finite = finite && std::isfinite(v);
    check(finite && again.logits == first.logits, "a 1100-row batch twice: finite logits, the same both times");
  }
  {  // LoRA adapter applied unmerged at scale 1 (llama.cpp: W x + 2 * B (A x) for alpha 16, r 8)
    golden::SafetensorsFile g(shared + "/golden/llamacpp/tiny-l3.f32.lora-r8.p40.safetensors");
    auto ad = lro::LoraAdapter::load(shared + "/golden/gguf/tiny-l3.lora-r8.f32.gguf", *model);
    GoldenBatch gb(g);
    lro::Session s(model, two_threads());
    s.set_adapters({{ad, 1.0f}});
    auto r = s.eval(gb.b);
    auto gl = g.at("logits").f32();
    float dl = golden::max_abs_diff(r.logits.data(), gl.data(), gl.size());
    char buf[128];
    std::snprintf(buf, sizeof buf, "f32 + lora-r8 p40 logits max|diff| %.3g (atol 1e-3)", dl);
    check(dl <= 1e-3f, buf);
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
