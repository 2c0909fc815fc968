// NativeModel and the model-level entry points (loadModel, inspectGguf).
#include "bindings/common.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

Napi::Object ModelWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NativeModel",
                                 {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("metadata", &ModelWrap::Metadata),
                                  InstanceMethod("tokenize", &ModelWrap::Tokenize),
                                  InstanceMethod("detokenize", &ModelWrap::Detokenize),
                                  InstanceMethod("tokenText", &ModelWrap::TokenText),
                                  InstanceMethod("isEog", &ModelWrap::IsEog), InstanceMethod("dispose", &ModelWrap::Dispose)});
  register_class(env, f);
  exports.Set("NativeModel", f);
  return exports;
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  const auto& hp = m.hparams();
  const auto& tok = m.tokenizer();
  auto o = Napi::Object::New(env);
  o.Set("path", m.file().path());
  o.Set("ggufVersion", m.file().version());
  o.Set("fileSize", static_cast<double>(m.file().file_size()));
  o.Set("weightMemory", lro::gguf_memory_name(m.file().memory()));
  o.Set("architecture", hp.arch);
  o.Set("name", m.file().get_string("general.name", ""));
  o.Set("vocabOnly", m.vocab_only());
  o.Set("nVocab", static_cast<double>(hp.n_vocab));
  o.Set("nEmbd", static_cast<double>(hp.n_embd));
  o.Set("nLayer", static_cast<double>(hp.n_layer));
  o.Set("nHead", static_cast<double>(hp.n_head));
  o.Set("nHeadKv", static_cast<double>(hp.n_head_kv));
  o.Set("headDim", static_cast<double>(hp.head_dim));
  o.Set("nFf", static_cast<double>(hp.n_ff));
  o.Set("nRot", static_cast<double>(hp.n_rot));
  o.Set("nCtxTrain", static_cast<double>(hp.n_ctx_train));
  o.Set("rmsEps", hp.rms_eps);
  o.Set("ropeFreqBase", hp.rope_base);
  o.Set("hasRopeFreqs", !m.rope_freqs().empty());
  o.Set("tiedOutput", m.tied_output());
  o.Set("tensors", tensors_to_js(env, m.file()));
  auto to = Napi::Object::New(env);
  to.Set("model", tok.model());
  to.Set("pre", tok.pre());
  to.Set("nTokens", tok.n_tokens());
  to.Set("bos", tok.bos());
  to.Set("eos", tok.eos());
  to.Set("eot", tok.eot());
  to.Set("addBos", tok.add_bos());
  to.Set("addEos", tok.add_eos());
  o.Set("tokenizer", to);
  return o;
}

Napi::Value ModelWrap::Metadata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  // Arrays longer than maxArray are summarised so `info` stays readable on 128k vocabularies.
  uint32_t max_array = info.Length() > 0 && !info[0].IsUndefined() ? static_cast<uint32_t>(int_arg(info, 0, "metadata: maxArray", 0, 0xffffffffll)) : 0xffffffffu;
  return metadata_to_js(env, m.file(), max_array);
}

Napi::Value ModelWrap::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  std::string text = string_arg(info, 0, "tokenize: text");
  bool add_bos = info[1].ToBoolean();
  bool parse_special = info[2].ToBoolean();
  auto ids = m.tokenizer().encode(text, add_bos, parse_special);
  auto arr = Napi::Int32Array::New(env, ids.size());
  if (!ids.empty()) std::memcpy(arr.Data(), ids.data(), ids.size() * 4);
  return arr;
}

Napi::Value ModelWrap::Detokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  auto arr = typed_arg<Napi::Int32Array>(info, 0, "detokenize: ids");
  std::vector<int32_t> ids(arr.Data(), arr.Data() + arr.ElementLength());
  for (int32_t id : ids)
    if (id < 0 || id >= m.tokenizer().n_tokens())
      throw Napi::RangeError::New(env, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                           std::to_string(m.tokenizer().n_tokens()) + ")");
  return Napi::String::New(env, m.tokenizer().decode(ids, info[1].ToBoolean()));
}

Napi::Value ModelWrap::TokenText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  const int32_t id = static_cast<int32_t>(int_arg(info, 0, "tokenText: id", 0, kMaxI32));
  if (id < 0 || id >= m.tokenizer().n_tokens())
    throw Napi::RangeError::New(env, "token id " + std::to_string(id) + " is outside the vocabulary");
  return Napi::String::New(env, m.tokenizer().token_text(id));
}

Napi::Value ModelWrap::IsEog(const Napi::CallbackInfo& info) {
  auto& m = get(info.Env());
  return Napi::Boolean::New(info.Env(), m.tokenizer().is_eog(static_cast<int32_t>(int_arg(info, 0, "isEog: id", -kMaxI32, kMaxI32))));
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model.reset();  // sessions hold their own reference; the mapping goes when the last one does
  return info.Env().Undefined();
}

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, bool vocab_only)
      : Napi::AsyncWorker(env), path_(std::move(path)), vocab_only_(vocab_only), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      model_ = lro::LlamaModel::load(path_, vocab_only_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Object obj = new_instance(Env(), "NativeModel");
    ModelWrap::Unwrap(obj)->model = model_;
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string path_;
  bool vocab_only_;
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<lro::LlamaModel> model_;
};

// inspectGguf(path, maxArray): metadata and tensor table of any GGUF (adapters, latent heads,
// vocab-only files), validated like a model file but without building a tokenizer.
Napi::Value InspectGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "inspectGguf(path: string, maxArray?: number)");
  uint32_t max_array = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<uint32_t>(int_arg(info, 1, "inspectGguf: maxArray", 0, 0xffffffffll)) : 0xffffffffu;
  // A malformed file throws lro::GgufError; node-addon-api turns it into a JS Error (CPP_EXCEPTIONS_ALL).
  auto f = lro::GgufFile::open(info[0].As<Napi::String>().Utf8Value());
  auto o = Napi::Object::New(env);
  o.Set("path", f->path());
  o.Set("ggufVersion", f->version());
  o.Set("fileSize", static_cast<double>(f->file_size()));
  o.Set("metadata", metadata_to_js(env, *f, max_array));
  o.Set("tensors", tensors_to_js(env, *f));
  return o;
}

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadModel(path: string, vocabOnly: boolean)");
  auto* w = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), info.Length() > 1 && info[1].ToBoolean());
  auto p = w->Promise();
  w->Queue();
  return p;
}

void register_model(Napi::Env env, Napi::Object exports) {
  ModelWrap::Init(env, exports);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("inspectGguf", Napi::Function::New(env, InspectGguf));
}

}  // namespace lro_napi
