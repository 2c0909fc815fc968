// NativeTrainer: LoRA training steps, adapters and checkpoints.
#include "bindings/common.h"
#include "bindings/trainer_wrap_base.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

// Optional fields of a JS options object (undefined or null = keep the default).
double train_num(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw std::invalid_argument(std::string("trainer: '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
bool train_bool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() || v.IsNull() ? fallback : v.ToBoolean().Value();
}
std::string train_str(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw std::invalid_argument(std::string("trainer: '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// {tokens: Int32Array, labels?: Int32Array, lossMask?: Uint8Array, injectPositions?: Int32Array, vectors?: Float32Array}
lro::TrainExample train_example(const Napi::Value& v, size_t i) {
  const std::string where = "trainer: examples[" + std::to_string(i) + "]";
  if (!v.IsObject()) throw std::invalid_argument(where + " must be an object");
  auto o = v.As<Napi::Object>();
  auto typed = [&](const char* key, napi_typedarray_type type, bool required) -> Napi::TypedArray {
    Napi::Value f = o.Get(key);
    if (f.IsUndefined() || f.IsNull()) {
      if (required) throw std::invalid_argument(where + "." + key + " is required");
      return Napi::TypedArray();
    }
    if (!f.IsTypedArray() || f.As<Napi::TypedArray>().TypedArrayType() != type)
      throw std::invalid_argument(where + "." + key + " has the wrong type (see lib/native.ts)");
    return f.As<Napi::TypedArray>();
  };
  lro::TrainExample e;
  auto tok = typed("tokens", napi_int32_array, true).As<Napi::Int32Array>();
  e.tokens.assign(tok.Data(), tok.Data() + tok.ElementLength());
  auto lab = typed("labels", napi_int32_array, false);
  auto mask = typed("lossMask", napi_uint8_array, false);
  if (!lab.IsEmpty() == !mask.IsEmpty()) throw std::invalid_argument(where + ": give exactly one of labels or lossMask");
  if (!lab.IsEmpty()) {
    auto l = lab.As<Napi::Int32Array>();
    e.labels.assign(l.Data(), l.Data() + l.ElementLength());
  } else {
    auto m = mask.As<Napi::Uint8Array>();
    if (m.ElementLength() != e.tokens.size()) throw std::invalid_argument(where + ": lossMask must have one entry per token");
    e.labels.resize(e.tokens.size());
    for (size_t t = 0; t < e.tokens.size(); ++t) e.labels[t] = m[t] ? e.tokens[t] : -100;
  }
  auto ip = typed("injectPositions", napi_int32_array, false);
  if (!ip.IsEmpty()) {
    auto p = ip.As<Napi::Int32Array>();
    e.inject_positions.assign(p.Data(), p.Data() + p.ElementLength());
  }
  auto vec = typed("vectors", napi_float32_array, false);
  if (!vec.IsEmpty()) {
    auto f = vec.As<Napi::Float32Array>();
    e.vectors.assign(f.Data(), f.Data() + f.ElementLength());
  }
  return e;
}

class TrainerWrap : public TrainerWrapBase<TrainerWrap, lro::Trainer> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    define(env, exports, "NativeTrainer",
           {InstanceMethod("step", &TrainerWrap::Step), InstanceMethod("evalLoss", &TrainerWrap::EvalLoss),
            InstanceMethod("saveAdapter", &TrainerWrap::SaveAdapter), InstanceMethod("info", &TrainerWrap::Info)});
  }
  explicit TrainerWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value EvalLoss(const Napi::CallbackInfo& info);
  Napi::Value SaveAdapter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = get(env);
    t.save_adapter(string_arg(info, 0, "saveAdapter: path"), info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "");
    return env.Undefined();
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = peek(env);
    auto o = info_object(env);
    o.Set("rank", static_cast<double>(t.lora_config().rank));
    o.Set("alpha", t.lora_config().alpha);
    o.Set("rslora", t.lora_config().rslora);
    auto targets = Napi::Array::New(env);
    for (size_t i = 0; i < t.lora_config().targets.size(); ++i) targets.Set(static_cast<uint32_t>(i), t.lora_config().targets[i]);
    o.Set("targets", targets);
    double n = 0;
    for (const auto& p : t.params()) n += static_cast<double>(p.a.size() + p.b.size());
    o.Set("pairs", static_cast<double>(t.params().size()));
    o.Set("trainableParams", n);
    return o;
  }
};

// new NativeTrainer(model, lora, optim, options)
TrainerWrap::TrainerWrap(const Napi::CallbackInfo& info) : TrainerWrapBase(info, "trainer") {
  Napi::Env env = info.Env();
  ModelWrap* mw = &model_arg(info, "new NativeTrainer(model, lora?, optim?, options?)", "NativeTrainer");
  auto arg = [&](size_t i) { return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(env); };
  Napi::Object lo = arg(1), oo = arg(2), to = arg(3);
  lro::LoraConfig lc;
  lc.rank = static_cast<int64_t>(train_num(lo, "rank", static_cast<double>(lc.rank)));
  lc.alpha = static_cast<float>(train_num(lo, "alpha", lc.alpha));
  lc.rslora = train_bool(lo, "rslora", lc.rslora);
  lc.dropout = static_cast<float>(train_num(lo, "dropout", lc.dropout));
  lc.init_seed = static_cast<uint64_t>(train_num(lo, "initSeed", 0));
  lc.init_adapter = train_str(lo, "initAdapter", "");
  Napi::Value tg = lo.Get("targets");
  if (tg.IsArray()) {
    auto a = tg.As<Napi::Array>();
    lc.targets.clear();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      if (!a.Get(i).IsString()) type_error(env, "new NativeTrainer: lora.targets[" + std::to_string(i) + "]", "a string");
      lc.targets.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  lro::OptimConfig oc;
  oc.lr = train_num(oo, "lr", oc.lr);
  oc.beta1 = train_num(oo, "beta1", oc.beta1);
  oc.beta2 = train_num(oo, "beta2", oc.beta2);
  oc.eps = train_num(oo, "eps", oc.eps);
  oc.weight_decay = train_num(oo, "weightDecay", oc.weight_decay);
  oc.max_grad_norm = train_num(oo, "maxGradNorm", oc.max_grad_norm);
  oc.schedule = lro::lr_schedule_from_name(train_str(oo, "schedule", "constant"));
  oc.warmup_fraction = train_num(oo, "warmupFraction", oc.warmup_fraction);
  oc.total_steps = static_cast<int64_t>(train_num(oo, "totalSteps", 0));
  lro::TrainOptions tro;
  tro.inject_layer = static_cast<int>(train_num(to, "injectLayer", tro.inject_layer));
  tro.inject_coef = static_cast<float>(train_num(to, "injectCoef", tro.inject_coef));
  const std::string mode = train_str(to, "injectMode", "add");
  if (mode != "add" && mode != "replace") throw std::invalid_argument("trainer: injectMode must be 'add' or 'replace'");
  tro.inject_replace = mode == "replace";
  tro.recompute = train_bool(to, "recompute", tro.recompute);
  tro.pack_tokens = static_cast<int64_t>(train_num(to, "packTokens", static_cast<double>(tro.pack_tokens)));
  tro.ce_chunk_rows = static_cast<int64_t>(train_num(to, "ceChunkRows", 0));
  tro.threads = static_cast<int>(train_num(to, "threads", 0));
  tro.seed = static_cast<uint64_t>(train_num(to, "seed", 0));
  // A PEFT folder is converted to a temporary GGUF adapter for the trainer to load.
  std::unique_ptr<lro::convert::AdapterAsGguf> init;
  if (!lc.init_adapter.empty()) {
    init = std::make_unique<lro::convert::AdapterAsGguf>(lc.init_adapter, mw->model->file().path());
    lc.init_adapter = init->path();
  }
  trainer = std::make_unique<lro::Trainer>(mw->model, lc, oc, tro);
}

class TrainWorker : public TrainerWorker<TrainerWrap> {
 public:
  using TrainerWorker::TrainerWorker;
  bool eval_only = false;
  std::vector<std::vector<lro::TrainExample>> micro_batches;

 private:
  lro::StepResult step_;
  double eval_ = 0;

  void run() override {
    if (eval_only) eval_ = owner_->trainer->eval_loss(micro_batches.front());
    else step_ = owner_->trainer->step(micro_batches);
  }
  Napi::Value result(Napi::Env env) override {
    if (eval_only) return Napi::Number::New(env, eval_);
    auto o = Napi::Object::New(env);
    set_step_fields(o, step_);
    auto ml = Napi::Array::New(env, step_.micro_losses.size());
    for (size_t i = 0; i < step_.micro_losses.size(); ++i) ml.Set(static_cast<uint32_t>(i), step_.micro_losses[i]);
    o.Set("microLosses", ml);
    o.Set("lossTokens", static_cast<double>(step_.loss_tokens));
    return o;
  }
};

std::vector<lro::TrainExample> train_examples(const Napi::Value& v) {
  if (!v.IsArray()) throw std::invalid_argument("trainer: examples must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<lro::TrainExample> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(train_example(a.Get(i), i));
  return out;
}

// step(examples, microBatches?: number[][]): one optimizer step; default one micro-batch of all examples.
Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) { return queue_call<TrainWorker>(info, false, train_examples); }

// evalLoss(examples): pooled token mean, no gradients, no dropout.
Napi::Value TrainerWrap::EvalLoss(const Napi::CallbackInfo& info) { return queue_call<TrainWorker>(info, true, train_examples); }

void register_trainer(Napi::Env env, Napi::Object exports) { TrainerWrap::Init(env, exports); }

}  // namespace lro_napi
