// NativeAdapter and loadAdapter.
#include "bindings/common.h"
#include "bindings/adapter_wrap.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

// loadAdapter(model, path): checked against the model's shapes.
Napi::Value LoadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  std::shared_ptr<lro::LoraAdapter> ad;
  ad = lro::LoraAdapter::load(info[1].As<Napi::String>().Utf8Value(), *mw->model);
  Napi::Object obj = new_instance(env, "NativeAdapter");
  AdapterWrap::Unwrap(obj)->adapter = ad;
  return obj;
}

void register_adapter(Napi::Env env, Napi::Object exports) {
  AdapterWrap::Init(env, exports);
  exports.Set("loadAdapter", Napi::Function::New(env, LoadAdapter));
}

}  // namespace lro_napi
