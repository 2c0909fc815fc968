// NativeModel: a loaded GGUF model (info, metadata, tokenizer).
#pragma once
#include "bindings/common.h"

namespace lro_napi {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<lro::LlamaModel> model;

 private:
  lro::LlamaModel& get(const Napi::Env& env) {
    if (!model) throw Napi::Error::New(env, "model has been disposed");
    return *model;
  }
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Metadata(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  Napi::Value TokenText(const Napi::CallbackInfo& info);
  Napi::Value IsEog(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

void register_model(Napi::Env env, Napi::Object exports);

}  // namespace lro_napi
