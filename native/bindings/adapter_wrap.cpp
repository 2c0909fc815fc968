// NativeAdapter and loadAdapter.
#include "bindings/common.h"
#include "bindings/adapter_wrap.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

// loadAdapter(model, path): checked against the model's shapes.
Napi::Value LoadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* mw = unwrap_as<ModelWrap>(env, info[0], "NativeModel", "loadAdapter: model");
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  std::shared_ptr<lro::LoraAdapter> ad;
  ad = lro::LoraAdapter::load(string_arg(info, 1, "loadAdapter: path"), *mw->model);
  Napi::Object obj = new_instance(env, "NativeAdapter");
  AdapterWrap::Unwrap(obj)->adapter = ad;
  return obj;
}

void register_adapter(Napi::Env env, Napi::Object exports) {
  AdapterWrap::Init(env, exports);
  exports.Set("loadAdapter", Napi::Function::New(env, LoadAdapter));
}

}  // namespace lro_napi
