// convertHf and convertAdapter (Hugging Face / PEFT <-> GGUF), on the libuv pool with progress.
#include "bindings/common.h"
#include "convert/export_hf.h"

namespace lro_napi {

// Runs a conversion on libuv's pool. Progress (when options.onProgress is a function) crosses to
// the JS thread through a thread-safe function, throttled so a large model does not flood it.
class ConvertWorker : public Napi::AsyncWorker {
 public:
  ConvertWorker(Napi::Env env, Napi::Value on_progress)
      : Napi::AsyncWorker(env), outcome_(std::make_shared<Outcome>(Napi::Promise::Deferred::New(env))) {
    if (on_progress.IsFunction()) {
      // The promise settles only once the progress queue has drained (the finalizer), so no
      // progress event can arrive after the caller saw the conversion finish.
      auto outcome = outcome_;
      outcome->progress_pending = true;
      tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "lro-convert-progress", 64, 1,
                                            [outcome](Napi::Env) {
                                              outcome->progress_pending = false;
                                              outcome->settle();
                                            });
      has_tsfn_ = true;
    }
  }
  Napi::Promise Promise() { return outcome_->deferred.Promise(); }

  lro::convert::ProgressFn progress_fn() {
    if (!has_tsfn_) return nullptr;
    return [this](const std::string& stage, int64_t done, int64_t total, const std::string& item) {
      auto now = std::chrono::steady_clock::now();
      const bool edge = stage != last_stage_ || done == 0 || done >= total;
      if (!edge && now - last_sent_ < std::chrono::milliseconds(100)) return;
      last_stage_ = stage;
      last_sent_ = now;
      auto* p = new Progress{stage, done, total, item};
      auto status = tsfn_.NonBlockingCall(p, [](Napi::Env env, Napi::Function cb, Progress* data) {
        std::unique_ptr<Progress> own(data);
        auto o = Napi::Object::New(env);
        o.Set("stage", data->stage);
        o.Set("done", static_cast<double>(data->done));
        o.Set("total", static_cast<double>(data->total));
        o.Set("item", data->item);
        try {
          cb.Call({o});
        } catch (const Napi::Error&) {
          // A throwing progress callback must not abort the conversion or crash the process.
        }
      });
      if (status != napi_ok) delete p;
    };
  }

  std::function<void()> work;                     // on the pool thread
  std::function<Napi::Object(Napi::Env)> result;  // on the main thread, after work succeeded

  void Execute() override {
    try {
      work();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
    if (has_tsfn_) tsfn_.Release();
  }
  void OnOK() override {
    outcome_->value = Napi::Reference<Napi::Value>::New(result(Env()), 1);
    outcome_->ok = true;
    outcome_->settle();
  }
  void OnError(const Napi::Error& e) override {
    outcome_->value = Napi::Reference<Napi::Value>::New(e.Value(), 1);
    outcome_->settle();
  }

 private:
  // Shared by the worker (deleted after OnOK/OnError) and the progress finalizer; both run on the
  // JS thread, whichever comes last settles the promise.
  struct Outcome {
    explicit Outcome(Napi::Promise::Deferred d) : deferred(d) {}
    Napi::Promise::Deferred deferred;
    Napi::Reference<Napi::Value> value;
    bool ok = false;
    bool progress_pending = false;
    void settle() {
      if (progress_pending || value.IsEmpty()) return;
      if (ok) deferred.Resolve(value.Value());
      else deferred.Reject(value.Value());
      value.Reset();
    }
  };
  struct Progress {
    std::string stage;
    int64_t done, total;
    std::string item;
  };
  std::shared_ptr<Outcome> outcome_;
  Napi::ThreadSafeFunction tsfn_;
  bool has_tsfn_ = false;
  std::string last_stage_;
  std::chrono::steady_clock::time_point last_sent_{};
};

Napi::Value ConvertHf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "convertHf(dir: string, out: string, options?: object)");
  Napi::Object o = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  lro::convert::HfConvertOptions opt;
  opt.type = opt_string(o, "type", "f32");
  opt.latent = opt_string(o, "latent");
  opt.lora_alpha = opt_number(o, "loraAlpha", std::nan(""));
  opt.latent_out = opt_string(o, "latentOut");
  opt.latent_steps = static_cast<int64_t>(opt_number(o, "latentSteps", -1));
  opt.weights = opt_string(o, "weights");
  opt.tokenizer_dir = opt_string(o, "tokenizerDir");
  opt.name = opt_string(o, "name");
  opt.pad_names = opt_string(o, "padNames", "auto");
  opt.pre = opt_string(o, "pre");
  opt.vocab_only = opt_bool(o, "vocabOnly", false);
  opt.no_merge = opt_bool(o, "noMerge", false);
  opt.lora_out = opt_string(o, "loraOut");
  opt.threads = static_cast<int>(opt_number(o, "threads", 0));
  auto* w = new ConvertWorker(env, o.Has("onProgress") ? o.Get("onProgress") : env.Undefined());
  opt.progress = w->progress_fn();
  auto sum = std::make_shared<lro::convert::HfConvertSummary>();
  std::string dir = string_arg(info, 0, "convertHf: dir"), out = string_arg(info, 1, "convertHf: out");
  w->work = [sum, dir, out, opt]() { *sum = lro::convert::convert_hf(dir, out, opt); };
  w->result = [sum](Napi::Env e) {
    const auto& s = *sum;
    auto r = Napi::Object::New(e);
    r.Set("out", s.out);
    r.Set("vocabOnly", s.vocab_only);
    r.Set("latentOut", s.latent_out.empty() ? e.Null() : Napi::String::New(e, s.latent_out));
    r.Set("type", s.type);
    r.Set("sourceFormat", s.source_format.empty() ? e.Null() : Napi::String::New(e, s.source_format));
    r.Set("sourceFiles", string_array(e, s.source_files));
    r.Set("configFile", s.config_file.empty() ? e.Null() : Napi::String::New(e, s.config_file));
    r.Set("tensors", static_cast<double>(s.n_tensors));
    r.Set("params", static_cast<double>(s.n_params));
    r.Set("bytes", static_cast<double>(s.bytes));
    r.Set("nVocab", static_cast<double>(s.n_vocab));
    r.Set("tokenizerSize", static_cast<double>(s.tokenizer_size));
    r.Set("nLayer", static_cast<double>(s.n_layer));
    r.Set("nEmbd", static_cast<double>(s.n_embd));
    r.Set("tied", s.tied);
    r.Set("codi", s.codi);
    r.Set("pre", s.pre);
    auto lora = Napi::Object::New(e);
    lora.Set("merged", static_cast<double>(s.lora_merged));
    lora.Set("rank", static_cast<double>(s.lora_rank));
    lora.Set("alpha", s.lora_alpha);
    lora.Set("alphaSource", s.lora_alpha_source.empty() ? e.Null() : Napi::String::New(e, s.lora_alpha_source));
    lora.Set("rslora", s.rslora);
    lora.Set("out", s.lora_out.empty() ? e.Null() : Napi::String::New(e, s.lora_out));
    r.Set("lora", lora);
    if (!s.latent_mode.empty()) {
      auto lat = Napi::Object::New(e);
      lat.Set("mode", s.latent_mode);
      lat.Set("botId", s.bot_id);
      lat.Set("eotId", s.eot_id);
      lat.Set("padId", s.pad_id);
      lat.Set("steps", static_cast<double>(s.latent_steps));
      r.Set("latent", lat);
    } else {
      r.Set("latent", e.Null());
    }
    r.Set("warnings", string_array(e, s.warnings));
    return r;
  };
  auto p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ConvertAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "convertAdapter(input: string, out: string, options?: object)");
  Napi::Object o = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  lro::convert::AdapterConvertOptions opt;
  opt.base_config = opt_string(o, "baseConfig");
  opt.type = opt_string(o, "type", "f32");
  opt.name = opt_string(o, "name");
  auto* w = new ConvertWorker(env, o.Has("onProgress") ? o.Get("onProgress") : env.Undefined());
  opt.progress = w->progress_fn();
  auto sum = std::make_shared<lro::convert::AdapterConvertSummary>();
  std::string in = string_arg(info, 0, "convertAdapter: input"), out = string_arg(info, 1, "convertAdapter: out");
  w->work = [sum, in, out, opt]() { *sum = lro::convert::convert_adapter(in, out, opt); };
  w->result = [sum](Napi::Env e) {
    const auto& s = *sum;
    auto r = Napi::Object::New(e);
    r.Set("direction", s.direction);
    r.Set("out", s.out);
    r.Set("rank", static_cast<double>(s.rank));
    r.Set("alpha", s.alpha);
    r.Set("ggufAlpha", s.gguf_alpha);
    r.Set("rslora", s.rslora);
    r.Set("pairs", static_cast<double>(s.n_pairs));
    r.Set("permuted", static_cast<double>(s.n_permuted));
    r.Set("targets", string_array(e, s.targets));
    r.Set("baseConfig", s.base_config.empty() ? e.Null() : Napi::String::New(e, s.base_config));
    r.Set("warnings", string_array(e, s.warnings));
    return r;
  };
  auto p = w->Promise();
  w->Queue();
  return p;
}

// exportHf(model, outDir, {latentHead?}) -> {dir, files, tensors, latentMode}
Napi::Value ExportHf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "exportHf(model: string, outDir: string, options?: {latentHead?: string})");
  Napi::Object o = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  lro::convert::HfExportOptions opt;
  opt.latent_head = opt_string(o, "latentHead");
  auto s = lro::convert::export_hf(string_arg(info, 0, "exportHf: model"), string_arg(info, 1, "exportHf: out"), opt);
  auto r = Napi::Object::New(env);
  r.Set("dir", s.dir);
  r.Set("files", string_array(env, s.files));
  r.Set("tensors", static_cast<double>(s.n_tensors));
  r.Set("latentMode", s.latent_mode.empty() ? env.Null() : Napi::String::New(env, s.latent_mode));
  return r;
}

void register_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("convertHf", Napi::Function::New(env, ConvertHf));
  exports.Set("exportHf", Napi::Function::New(env, ExportHf));
  exports.Set("convertAdapter", Napi::Function::New(env, ConvertAdapter));
}

}  // namespace lro_napi
