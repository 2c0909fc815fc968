// NativeLatentTrainer: CODI / Coconut / LM training through the latent chain (LoRA or full).
#include "bindings/common.h"
#include "bindings/trainer_wrap_base.h"
#include "bindings/model_wrap.h"
#include "train/latent_train.h"

namespace lro_napi {

namespace {

// Typed-array fields of a JS example: one set of guards naming the field.
std::vector<int32_t> i32_field(const Napi::Object& o, const char* key, const std::string& where, bool required) {
  Napi::Value f = o.Get(key);
  if (f.IsUndefined() || f.IsNull()) {
    if (required) throw std::invalid_argument(where + "." + key + " is required");
    return {};
  }
  auto a = typed_value<Napi::Int32Array>(o.Env(), f, where + "." + key);
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

int64_t int_field(const Napi::Object& o, const char* key, const std::string& where, int64_t fallback) {
  Napi::Value f = o.Get(key);
  if (f.IsUndefined() || f.IsNull()) return fallback;
  return int_value(o.Env(), f, where + "." + key, -kMaxSafeInt, kMaxSafeInt);
}

// {prompt, suffix, suffixLabels, teacher?, teacherLabels?, studentDistill?, teacherDistill?, latentLabels?}
std::vector<lro::LatentExample> latent_examples(const Napi::Value& v) {
  if (!v.IsArray()) throw std::invalid_argument("latent trainer: examples must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<lro::LatentExample> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const std::string where = "latent trainer: examples[" + std::to_string(i) + "]";
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw std::invalid_argument(where + " must be an object");
    auto o = e.As<Napi::Object>();
    lro::LatentExample x;
    x.prompt = i32_field(o, "prompt", where, false);
    x.suffix = i32_field(o, "suffix", where, false);
    x.suffix_labels = i32_field(o, "suffixLabels", where, false);
    x.teacher = i32_field(o, "teacher", where, false);
    x.teacher_labels = i32_field(o, "teacherLabels", where, false);
    x.student_distill = int_field(o, "studentDistill", where, -1);
    x.teacher_distill = int_field(o, "teacherDistill", where, -1);
    x.latent_labels = i32_field(o, "latentLabels", where, false);
    out.push_back(std::move(x));
  }
  return out;
}

Napi::Object loss_to_js(Napi::Env env, const lro::LatentLoss& l) {
  auto o = Napi::Object::New(env);
  o.Set("loss", l.total);
  o.Set("ce", l.ce);
  o.Set("distill", l.distill);
  o.Set("refCe", l.ref_ce);
  o.Set("latentCe", l.latent_ce);
  o.Set("latentTokens", static_cast<double>(l.latent_tokens));
  auto per = Napi::Array::New(env, l.distill_per_state.size());
  for (size_t i = 0; i < l.distill_per_state.size(); ++i) per.Set(static_cast<uint32_t>(i), l.distill_per_state[i]);
  o.Set("distillPerState", per);
  o.Set("ceTokens", static_cast<double>(l.ce_tokens));
  o.Set("refTokens", static_cast<double>(l.ref_tokens));
  o.Set("tokens", static_cast<double>(l.tokens));
  return o;
}

}  // namespace

class LatentTrainerWrap : public TrainerWrapBase<LatentTrainerWrap, lro::LatentTrainer> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    define(env, exports, "NativeLatentTrainer",
           {InstanceMethod("step", &LatentTrainerWrap::Step), InstanceMethod("evalLosses", &LatentTrainerWrap::EvalLosses),
            InstanceMethod("gradients", &LatentTrainerWrap::Gradients), InstanceMethod("keepPreclipGradients", &LatentTrainerWrap::KeepPreclip),
            InstanceMethod("saveModel", &LatentTrainerWrap::SaveModel), InstanceMethod("saveHead", &LatentTrainerWrap::SaveHead),
            InstanceMethod("info", &LatentTrainerWrap::Info)});
  }
  explicit LatentTrainerWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value EvalLosses(const Napi::CallbackInfo& info);
  Napi::Value Gradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = get(env);
    auto arr = Napi::Array::New(env, t.params().size());
    uint32_t i = 0;
    for (const auto& p : t.params()) {
      auto o = Napi::Object::New(env);
      o.Set("name", p.name);
      auto shape = Napi::Array::New(env, p.shape.size());
      for (size_t k = 0; k < p.shape.size(); ++k) shape.Set(static_cast<uint32_t>(k), static_cast<double>(p.shape[k]));
      o.Set("shape", shape);
      const auto v = t.hf_values(p, true);
      o.Set("data", to_f32(env, v.data(), v.size()));
      arr.Set(i++, o);
    }
    return arr;
  }
  Napi::Value KeepPreclip(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "keepPreclipGradients(on): a boolean");
    get(info.Env()).set_keep_preclip(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
  }
  Napi::Value SaveModel(const Napi::CallbackInfo& info) {
    auto& t = get(info.Env());
    std::vector<std::pair<std::string, std::string>> extra;
    if (info.Length() > 2 && info[2].IsObject()) {
      auto md = info[2].As<Napi::Object>();
      auto keys = md.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        const std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
        Napi::Value v = md.Get(k);
        if (!v.IsString()) throw Napi::TypeError::New(info.Env(), "saveModel: metadata '" + k + "' must be a string");
        extra.push_back({k, v.As<Napi::String>().Utf8Value()});
      }
    }
    t.save_model(string_arg(info, 0, "saveModel: path"), info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "", extra);
    return info.Env().Undefined();
  }
  Napi::Value SaveHead(const Napi::CallbackInfo& info) {
    get(info.Env()).save_head(string_arg(info, 0, "saveHead: path"));
    return info.Env().Undefined();
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = peek(env);
    auto o = info_object(env);
    o.Set("objective", lro::latent_objective_name(t.config().objective));
    o.Set("mode", t.config().mode == lro::LatentTrainMode::FULL ? "full" : "lora");
    o.Set("latentSteps", static_cast<double>(t.config().latent_steps));
    double n = 0;
    for (const auto& p : t.params()) n += static_cast<double>(p.w.size());
    o.Set("tensors", static_cast<double>(t.params().size()));
    o.Set("trainableParams", n);
    return o;
  }
};

// new NativeLatentTrainer(model, headPath | null, config, optim)
LatentTrainerWrap::LatentTrainerWrap(const Napi::CallbackInfo& info) : TrainerWrapBase(info, "latent trainer") {
  Napi::Env env = info.Env();
  ModelWrap* mw = &model_arg(info, "new NativeLatentTrainer(model, headPath, config?, optim?)", "NativeLatentTrainer");
  std::shared_ptr<lro::LatentHead> head;
  if (info.Length() > 1 && info[1].IsString()) head = lro::LatentHead::load(info[1].As<Napi::String>().Utf8Value(), mw->model->hparams().n_embd);
  else if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined())
    throw Napi::TypeError::New(env, "NativeLatentTrainer: headPath must be a string or null");
  auto arg = [&](size_t i) { return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(env); };
  Napi::Object co = arg(2), oo = arg(3);
  lro::LatentTrainConfig cfg;
  cfg.objective = lro::latent_objective_from_name(opt_string(co, "objective", "codi"));
  const std::string mode = opt_string(co, "mode", "lora");
  if (mode != "lora" && mode != "full") throw std::invalid_argument("latent trainer: mode must be 'lora' or 'full'");
  cfg.mode = mode == "full" ? lro::LatentTrainMode::FULL : lro::LatentTrainMode::LORA;
  cfg.latent_steps = static_cast<int64_t>(opt_number(co, "latentSteps", static_cast<double>(cfg.latent_steps)));
  cfg.distill_factor = opt_number(co, "distillFactor", cfg.distill_factor);
  cfg.ref_factor = opt_number(co, "refFactor", cfg.ref_factor);
  cfg.latent_factor = opt_number(co, "latentFactor", cfg.latent_factor);
  cfg.smooth_l1_beta = opt_number(co, "smoothL1Beta", cfg.smooth_l1_beta);
  cfg.train_head = opt_bool(co, "trainHead", cfg.train_head);
  cfg.threads = static_cast<int>(opt_number(co, "threads", 0));
  cfg.ce_chunk_rows = static_cast<int64_t>(opt_number(co, "ceChunkRows", 0));
  cfg.lora.rank = static_cast<int64_t>(opt_number(co, "rank", static_cast<double>(cfg.lora.rank)));
  cfg.lora.alpha = static_cast<float>(opt_number(co, "alpha", cfg.lora.alpha));
  cfg.lora.init_seed = static_cast<uint64_t>(opt_number(co, "initSeed", 0));
  cfg.lora.init_adapter = opt_string(co, "initAdapter", "");
  lro::OptimConfig oc;
  oc.lr = opt_number(oo, "lr", oc.lr);
  oc.beta1 = opt_number(oo, "beta1", oc.beta1);
  oc.beta2 = opt_number(oo, "beta2", oc.beta2);
  oc.eps = opt_number(oo, "eps", oc.eps);
  oc.weight_decay = opt_number(oo, "weightDecay", oc.weight_decay);
  oc.max_grad_norm = opt_number(oo, "maxGradNorm", oc.max_grad_norm);
  oc.schedule = lro::lr_schedule_from_name(opt_string(oo, "schedule", "constant"));
  oc.warmup_fraction = opt_number(oo, "warmupFraction", oc.warmup_fraction);
  oc.total_steps = static_cast<int64_t>(opt_number(oo, "totalSteps", 0));
  trainer = std::make_unique<lro::LatentTrainer>(mw->model, head, cfg, oc);
}

class LatentTrainWorker : public TrainerWorker<LatentTrainerWrap> {
 public:
  using TrainerWorker::TrainerWorker;
  bool eval_only = false;
  std::vector<std::vector<lro::LatentExample>> micro_batches;

 private:
  lro::LatentStepResult step_;
  std::vector<lro::LatentLoss> losses_;

  void run() override {
    if (eval_only) losses_ = owner_->trainer->accumulate(micro_batches.front(), 0.0);
    else step_ = owner_->trainer->step(micro_batches);
  }
  Napi::Value result(Napi::Env env) override {
    const auto& ls = eval_only ? losses_ : step_.examples;
    auto per = Napi::Array::New(env, ls.size());
    for (size_t i = 0; i < ls.size(); ++i) per.Set(static_cast<uint32_t>(i), loss_to_js(env, ls[i]));
    if (eval_only) return per;
    auto o = Napi::Object::New(env);
    set_step_fields(o, step_);
    o.Set("ce", step_.ce);
    o.Set("distill", step_.distill);
    o.Set("refCe", step_.ref_ce);
    o.Set("latentCe", step_.latent_ce);
    o.Set("examples", per);
    return o;
  }
};

// step(examples, microBatches?: number[][])
Napi::Value LatentTrainerWrap::Step(const Napi::CallbackInfo& info) { return queue_call<LatentTrainWorker>(info, false, latent_examples); }

// evalLosses(examples): per-example losses, no gradients.
Napi::Value LatentTrainerWrap::EvalLosses(const Napi::CallbackInfo& info) { return queue_call<LatentTrainWorker>(info, true, latent_examples); }

void register_latent_trainer(Napi::Env env, Napi::Object exports) { LatentTrainerWrap::Init(env, exports); }

}  // namespace lro_napi
