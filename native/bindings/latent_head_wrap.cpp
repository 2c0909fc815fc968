// NativeLatentHead and loadLatentHead.
#include "bindings/common.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

class LatentHeadWrap : public Napi::ObjectWrap<LatentHeadWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeLatentHead",
                                   {InstanceMethod("settings", &LatentHeadWrap::Settings),
                                    InstanceMethod("project", &LatentHeadWrap::Project)});
    register_class(env, f);
    exports.Set("NativeLatentHead", f);
    return exports;
  }
  explicit LatentHeadWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LatentHeadWrap>(info) {}
  std::shared_ptr<const lro::LatentHead> head;
  int64_t n_embd = 0;
  std::unique_ptr<lro::ThreadPool> pool;

 private:
  Napi::Value Settings(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& s = head->settings();
    auto o = Napi::Object::New(env);
    o.Set("path", head->path());
    o.Set("mode", s.mode);
    o.Set("steps", static_cast<double>(s.steps));
    o.Set("botId", s.bot_id);
    o.Set("eotId", s.eot_id);
    o.Set("padId", s.pad_id);
    o.Set("promptFormat", s.prompt_format);
    o.Set("layerNormEps", s.ln_eps);
    o.Set("scale", s.scale);
    o.Set("hidden", static_cast<double>(head->hidden()));
    auto ex = Napi::Int32Array::New(env, s.exclude_ids.size());
    for (size_t i = 0; i < s.exclude_ids.size(); ++i) ex[i] = s.exclude_ids[i];
    o.Set("excludeIds", ex);
    return o;
  }
  // project(z: Float32Array [n * nEmbd]) -> Float32Array [n * nEmbd]
  Napi::Value Project(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto z = typed_arg<Napi::Float32Array>(info, 0, "project: z");
    if (z.ElementLength() == 0 || z.ElementLength() % static_cast<size_t>(n_embd) != 0)
      throw Napi::RangeError::New(env, "project: input length must be a positive multiple of the model width " + std::to_string(n_embd));
    int64_t n = static_cast<int64_t>(z.ElementLength()) / n_embd;
    auto out = Napi::Float32Array::New(env, z.ElementLength());
    head->project(z.Data(), out.Data(), n, *pool);
    return out;
  }
};

// loadLatentHead(model, path | null): null path = the model file itself; resolves null when it has none.
Napi::Value LoadLatentHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* mw = unwrap_as<ModelWrap>(env, info[0], "NativeModel", "loadLatentHead: model");
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  int64_t d = mw->model->hparams().n_embd;
  std::shared_ptr<lro::LatentHead> h;
  if (info.Length() > 1 && info[1].IsString()) h = lro::LatentHead::load(info[1].As<Napi::String>().Utf8Value(), d);
  else h = lro::LatentHead::from_file(mw->model->shared_file(), d);
  if (!h) return env.Null();
  Napi::Object obj = new_instance(env, "NativeLatentHead");
  auto* w = LatentHeadWrap::Unwrap(obj);
  w->head = h;
  w->n_embd = d;
  w->pool = std::make_unique<lro::ThreadPool>(1);
  return obj;
}

void register_latent_head(Napi::Env env, Napi::Object exports) {
  LatentHeadWrap::Init(env, exports);
  exports.Set("loadLatentHead", Napi::Function::New(env, LoadLatentHead));
}

}  // namespace lro_napi
