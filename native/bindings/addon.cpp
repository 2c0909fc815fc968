// The addon's entry point. Every type crossing into JS is described in lib/native.ts; each binding
// file registers its classes and functions here. Long calls (model load, eval, conversion,
// training steps) run on libuv's pool and return Promises; C++ exceptions become JS Errors.
#include "bindings/common.h"
#include "core/debug.h"

namespace lro_napi {
void register_model(Napi::Env env, Napi::Object exports);
void register_adapter(Napi::Env env, Napi::Object exports);
void register_latent_head(Napi::Env env, Napi::Object exports);
void register_session(Napi::Env env, Napi::Object exports);
void register_functions(Napi::Env env, Napi::Object exports);
void register_convert(Napi::Env env, Napi::Object exports);
void register_trainer(Napi::Env env, Napi::Object exports);
void register_latent_trainer(Napi::Env env, Napi::Object exports);
}  // namespace lro_napi

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new lro_napi::AddonData());
  lro::install_crash_handlers();
  lro_napi::register_model(env, exports);
  lro_napi::register_adapter(env, exports);
  lro_napi::register_latent_head(env, exports);
  lro_napi::register_session(env, exports);
  lro_napi::register_functions(env, exports);
  lro_napi::register_convert(env, exports);
  lro_napi::register_trainer(env, exports);
  lro_napi::register_latent_trainer(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(lro_native, Init)
