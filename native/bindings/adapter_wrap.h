// NativeAdapter: a llama.cpp-format LoRA adapter checked against a model.
#pragma once
#include "bindings/common.h"

namespace lro_napi {

class AdapterWrap : public Napi::ObjectWrap<AdapterWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeAdapter", {InstanceMethod("info", &AdapterWrap::Info)});
    register_class(env, f);
    exports.Set("NativeAdapter", f);
    return exports;
  }
  explicit AdapterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdapterWrap>(info) {}
  std::shared_ptr<const lro::LoraAdapter> adapter;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!adapter) throw Napi::Error::New(env, "NativeAdapter: no adapter (make one with loadAdapter)");
    auto o = Napi::Object::New(env);
    o.Set("path", adapter->path());
    o.Set("alpha", adapter->alpha());
    auto names = Napi::Array::New(env);
    uint32_t i = 0;
    int64_t rank = 0;
    for (const auto& kv : adapter->pairs()) {
      names.Set(i++, kv.first);
      rank = kv.second.rank;
    }
    o.Set("weights", names);
    o.Set("rank", static_cast<double>(rank));
    return o;
  }
};

void register_adapter(Napi::Env env, Napi::Object exports);

}  // namespace lro_napi
