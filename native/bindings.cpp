// N-API surface of the engine. Every type crossing here is described in lib/native.ts.
// Long calls (model load, eval) run on libuv's pool and return Promises; C++ exceptions become
// JS Errors (never a crash of the Node process).
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf.h"
#include "llama_model.h"
#include "analysis_ops.h"
#include "convert/convert_hf.h"
#include "convert/lora_convert.h"
#include "latent_head.h"
#include "lora_adapter.h"
#include "ops.h"
#include "quants.h"
#include "random_model.h"
#include "session.h"
#include "train.h"

namespace {

using lro::GgmlType;

Napi::Float32Array to_f32(Napi::Env env, const float* p, size_t n) {
  auto arr = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(arr.Data(), p, n * sizeof(float));
  return arr;
}

GgmlType parse_type(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto* tr = lro::ggml_type_traits(id);
    if (!tr) continue;
    std::string n = tr->name;
    std::string lower;
    for (char c : n) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string want;
    for (char c : name) want += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == want) return static_cast<GgmlType>(id);
  }
  throw std::invalid_argument("unknown tensor type '" + name + "' (expected f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)");
}

std::string type_name(GgmlType t) { return lro::traits(t).name; }

Napi::Value gguf_value_to_js(Napi::Env env, const lro::GgufValue& v, const std::string& key) {
  using T = lro::GgufValueType;
  switch (v.type) {
    case T::STRING: return Napi::String::New(env, v.str);
    case T::BOOL: return Napi::Boolean::New(env, v.num.b);
    case T::F32: case T::F64: return Napi::Number::New(env, v.num.f64);
    case T::U64: case T::I64: {
      int64_t x = v.as_int(key);
      if (x > (int64_t(1) << 53) || x < -(int64_t(1) << 53)) return Napi::BigInt::New(env, x);
      return Napi::Number::New(env, static_cast<double>(x));
    }
    case T::ARRAY: {
      auto arr = Napi::Array::New(env, v.arr.size());
      for (size_t i = 0; i < v.arr.size(); ++i) arr.Set(static_cast<uint32_t>(i), gguf_value_to_js(env, v.arr[i], key));
      return arr;
    }
    default: return Napi::Number::New(env, static_cast<double>(v.as_int(key)));
  }
}

// Class constructors per Node environment (not process-wide statics), so the addon also works
// when loaded in several worker threads.
struct AddonData {
  std::map<std::string, Napi::FunctionReference> classes;
};

void register_class(Napi::Env env, Napi::Function f) {
  auto* data = env.GetInstanceData<AddonData>();
  data->classes[f.Get("name").As<Napi::String>().Utf8Value()] = Napi::Persistent(f);
}

Napi::Object new_instance(Napi::Env env, const char* name) { return env.GetInstanceData<AddonData>()->classes.at(name).New({}); }

// ------------------------------------------------------------------ Model

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
  auto tensors = Napi::Array::New(env, m.file().tensors().size());
  uint32_t i = 0;
  for (const auto& t : m.file().tensors()) {
    auto to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("type", type_name(t.type));
    auto shape = Napi::Array::New(env, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) shape.Set(d, static_cast<double>(t.ne[d]));
    to.Set("shape", shape);
    to.Set("bytes", static_cast<double>(t.nbytes));
    tensors.Set(i++, to);
  }
  o.Set("tensors", tensors);
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
  uint32_t max_array = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0xffffffffu;
  auto o = Napi::Object::New(env);
  for (const auto& kv : m.file().metadata()) {
    const auto& v = kv.second;
    if (v.type == lro::GgufValueType::ARRAY && v.arr.size() > max_array) {
      auto s = Napi::Object::New(env);
      s.Set("arrayOf", lro::gguf_value_type_name(v.elem_type));
      s.Set("length", static_cast<double>(v.arr.size()));
      o.Set(kv.first, s);
    } else {
      o.Set(kv.first, gguf_value_to_js(env, v, kv.first));
    }
  }
  return o;
}

Napi::Value ModelWrap::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& m = get(env);
  std::string text = info[0].As<Napi::String>().Utf8Value();
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
  auto arr = info[0].As<Napi::Int32Array>();
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
  int32_t id = info[0].As<Napi::Number>().Int32Value();
  if (id < 0 || id >= m.tokenizer().n_tokens())
    throw Napi::RangeError::New(env, "token id " + std::to_string(id) + " is outside the vocabulary");
  return Napi::String::New(env, m.tokenizer().token_text(id));
}

Napi::Value ModelWrap::IsEog(const Napi::CallbackInfo& info) {
  auto& m = get(info.Env());
  return Napi::Boolean::New(info.Env(), m.tokenizer().is_eog(info[0].As<Napi::Number>().Int32Value()));
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
  uint32_t max_array = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0xffffffffu;
  std::unique_ptr<lro::GgufFile> f;
  try {
    f = lro::GgufFile::open(info[0].As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto o = Napi::Object::New(env);
  o.Set("path", f->path());
  o.Set("ggufVersion", f->version());
  o.Set("fileSize", static_cast<double>(f->file_size()));
  auto md = Napi::Object::New(env);
  for (const auto& kv : f->metadata()) {
    const auto& v = kv.second;
    if (v.type == lro::GgufValueType::ARRAY && v.arr.size() > max_array) {
      auto sm = Napi::Object::New(env);
      sm.Set("arrayOf", lro::gguf_value_type_name(v.elem_type));
      sm.Set("length", static_cast<double>(v.arr.size()));
      md.Set(kv.first, sm);
    } else {
      md.Set(kv.first, gguf_value_to_js(env, v, kv.first));
    }
  }
  o.Set("metadata", md);
  auto tensors = Napi::Array::New(env, f->tensors().size());
  uint32_t i = 0;
  for (const auto& t : f->tensors()) {
    auto to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("type", type_name(t.type));
    auto shape = Napi::Array::New(env, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) shape.Set(d, static_cast<double>(t.ne[d]));
    to.Set("shape", shape);
    to.Set("bytes", static_cast<double>(t.nbytes));
    tensors.Set(i++, to);
  }
  o.Set("tensors", tensors);
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

// ------------------------------------------------------------------ LoRA adapter

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

// loadAdapter(model, path): checked against the model's shapes.
Napi::Value LoadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  std::shared_ptr<lro::LoraAdapter> ad;
  try {
    ad = lro::LoraAdapter::load(info[1].As<Napi::String>().Utf8Value(), *mw->model);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object obj = new_instance(env, "NativeAdapter");
  AdapterWrap::Unwrap(obj)->adapter = ad;
  return obj;
}

// ------------------------------------------------------------------ latent head

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
    o.Set("hidden", static_cast<double>(head->hidden()));
    auto ex = Napi::Int32Array::New(env, s.exclude_ids.size());
    for (size_t i = 0; i < s.exclude_ids.size(); ++i) ex[i] = s.exclude_ids[i];
    o.Set("excludeIds", ex);
    return o;
  }
  // project(z: Float32Array [n * nEmbd]) -> Float32Array [n * nEmbd]
  Napi::Value Project(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto z = info[0].As<Napi::Float32Array>();
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
  auto* mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  int64_t d = mw->model->hparams().n_embd;
  std::shared_ptr<lro::LatentHead> h;
  try {
    if (info.Length() > 1 && info[1].IsString()) h = lro::LatentHead::load(info[1].As<Napi::String>().Utf8Value(), d);
    else h = lro::LatentHead::from_file(mw->model->shared_file(), d);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  if (!h) return env.Null();
  Napi::Object obj = new_instance(env, "NativeLatentHead");
  auto* w = LatentHeadWrap::Unwrap(obj);
  w->head = h;
  w->n_embd = d;
  w->pool = std::make_unique<lro::ThreadPool>(1);
  return obj;
}

// logitStats(logits, row, nVocab, vocabLimit, topK)
Napi::Value LogitStatsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = info[0].As<Napi::Float32Array>();
  int64_t row = info[1].As<Napi::Number>().Int64Value(), nv = info[2].As<Napi::Number>().Int64Value();
  int64_t limit = info[3].As<Napi::Number>().Int64Value(), k = info[4].As<Napi::Number>().Int64Value();
  if (nv <= 0 || row < 0 || static_cast<size_t>((row + 1) * nv) > logits.ElementLength())
    throw Napi::RangeError::New(env, "logitStats: row outside the logits");
  auto s = lro::logit_stats(logits.Data() + row * nv, nv, limit, std::max<int64_t>(k, 0));
  auto o = Napi::Object::New(env);
  auto ids = Napi::Int32Array::New(env, s.top_ids.size());
  auto lg = Napi::Float32Array::New(env, s.top_ids.size());
  auto pr = Napi::Float32Array::New(env, s.top_ids.size());
  for (size_t i = 0; i < s.top_ids.size(); ++i) {
    ids[i] = s.top_ids[i];
    lg[i] = s.top_logits[i];
    pr[i] = s.top_probs[i];
  }
  o.Set("topIds", ids);
  o.Set("topLogits", lg);
  o.Set("topProbs", pr);
  o.Set("logsumexp", s.logsumexp);
  o.Set("entropy", s.entropy);
  return o;
}

// vectorStats(v, prev | null)
Napi::Value VectorStatsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto v = info[0].As<Napi::Float32Array>();
  const float* prev = nullptr;
  if (info.Length() > 1 && info[1].IsTypedArray()) {
    auto p = info[1].As<Napi::Float32Array>();
    if (p.ElementLength() != v.ElementLength()) throw Napi::RangeError::New(env, "vectorStats: vectors differ in length");
    prev = p.Data();
  }
  auto s = lro::vector_stats(v.Data(), prev, static_cast<int64_t>(v.ElementLength()));
  auto o = Napi::Object::New(env);
  o.Set("norm", s.norm);
  o.Set("sparsity", s.sparsity);
  o.Set("cosineToPrev", prev ? Napi::Value(Napi::Number::New(env, s.cosine_to_prev)) : env.Null());
  return o;
}

// addScaledNoise(v, scale, seed) -> v + scale * ||v|| * g / ||g||
Napi::Value AddScaledNoise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto v = info[0].As<Napi::Float32Array>();
  auto out = Napi::Float32Array::New(env, v.ElementLength());
  lro::add_scaled_noise(out.Data(), v.Data(), static_cast<int64_t>(v.ElementLength()), info[1].As<Napi::Number>().DoubleValue(),
                        static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()));
  return out;
}

// meanRows(x, width) -> mean row
Napi::Value MeanRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = info[0].As<Napi::Float32Array>();
  int64_t d = info[1].As<Napi::Number>().Int64Value();
  if (d <= 0 || x.ElementLength() % static_cast<size_t>(d) != 0) throw Napi::RangeError::New(env, "meanRows: length not a multiple of width");
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(d));
  lro::mean_rows(out.Data(), x.Data(), static_cast<int64_t>(x.ElementLength()) / d, d);
  return out;
}

// ------------------------------------------------------------------ Session

struct CaptureSpec {
  lro::HookPoint point;
  int layer;  // -1: final_norm
  std::string name;
};

CaptureSpec parse_capture(const std::string& name, int64_t n_layer) {
  if (name == "final_norm") return {lro::HookPoint::FINAL_NORM, -1, name};
  if (name == "embed") return {lro::HookPoint::RESID_PRE, 0, name};
  auto dot = name.rfind('.');
  if (dot == std::string::npos)
    throw std::invalid_argument("capture point '" + name + "' needs a layer, e.g. resid_post.0");
  std::string p = name.substr(0, dot), ls = name.substr(dot + 1);
  lro::HookPoint hp;
  if (p == "resid_pre") hp = lro::HookPoint::RESID_PRE;
  else if (p == "attn_out") hp = lro::HookPoint::ATTN_OUT;
  else if (p == "resid_mid") hp = lro::HookPoint::RESID_MID;
  else if (p == "mlp_out") hp = lro::HookPoint::MLP_OUT;
  else if (p == "resid_post") hp = lro::HookPoint::RESID_POST;
  else
    throw std::invalid_argument("unknown capture point '" + p + "' (expected embed, resid_pre, resid_mid, resid_post, attn_out, mlp_out, final_norm)");
  if (ls.empty() || ls.find_first_not_of("0123456789") != std::string::npos || ls.size() > 6)
    throw std::invalid_argument("capture point '" + name + "': layer must be a number");
  int layer = std::stoi(ls);
  if (layer >= n_layer)
    throw std::invalid_argument("capture point '" + name + "': the model has layers 0.." + std::to_string(n_layer - 1));
  return {hp, layer, name};
}

// A vector added to (or written over) the residual stream at a point, for steering and patching.
// INJECT is the Activation Oracles injection, x + scale * ||x|| * v / ||v||, computed by the trainer's
// own inject_forward so that inference sees the very bits training did.
struct EditSpec {
  enum Mode { ADD, REPLACE, NOISE, INJECT } mode;
  lro::HookPoint point;
  int layer;
  int64_t row;
  std::vector<float> vec;  // ADD: added (already scaled); REPLACE: written over
  double scale = 1;        // NOISE: x + scale * ||x|| * g / ||g||
  uint64_t seed = 0;
};

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit SessionWrap(const Napi::CallbackInfo& info);
  std::unique_ptr<lro::Session> session;
  std::atomic<bool> busy{false};
  std::atomic<bool> cancel{false};
  bool dispose_pending = false;

  lro::Session& get(const Napi::Env& env) {
    if (!session) throw Napi::Error::New(env, "session has been disposed");
    if (busy) throw Napi::Error::New(env, "session is busy with an eval; await it (or cancel it) first");
    return *session;
  }

 private:
  Napi::Value Eval(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value SeqCopy(const Napi::CallbackInfo& info);
  Napi::Value SeqRemove(const Napi::CallbackInfo& info);
  Napi::Value SeqPosMax(const Napi::CallbackInfo& info);
  Napi::Value Threads(const Napi::CallbackInfo& info);
  Napi::Value SetAdapters(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

Napi::Object SessionWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(
      env, "NativeSession",
      {InstanceMethod("eval", &SessionWrap::Eval), InstanceMethod("cancel", &SessionWrap::Cancel),
       InstanceMethod("seqCopy", &SessionWrap::SeqCopy), InstanceMethod("seqRemove", &SessionWrap::SeqRemove),
       InstanceMethod("seqPosMax", &SessionWrap::SeqPosMax), InstanceMethod("threads", &SessionWrap::Threads),
       InstanceMethod("setAdapters", &SessionWrap::SetAdapters),
       InstanceMethod("dispose", &SessionWrap::Dispose)});
  register_class(env, f);
  exports.Set("NativeSession", f);
  return exports;
}

// new NativeSession(model, {nCtx, kvType, threads})
SessionWrap::SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "new NativeSession(model, options)");
  auto* mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  auto o = info[1].As<Napi::Object>();
  lro::SessionOptions so;
  so.n_ctx = o.Get("nCtx").As<Napi::Number>().Int64Value();
  so.kv_f16 = o.Get("kvType").As<Napi::String>().Utf8Value() == "f16";
  so.threads = o.Get("threads").As<Napi::Number>().Int32Value();
  try {
    session = std::make_unique<lro::Session>(mw->model, so);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

class EvalWorker : public Napi::AsyncWorker {
 public:
  EvalWorker(Napi::Env env, SessionWrap* owner) : Napi::AsyncWorker(env), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_->Ref();
  }
  ~EvalWorker() override { owner_->Unref(); }
  Napi::Promise Promise() { return deferred_.Promise(); }

  std::vector<int32_t> tokens, pos, seq;
  std::vector<float> embeddings;
  lro::Batch batch;
  std::vector<CaptureSpec> captures;
  std::vector<EditSpec> edits;
  std::vector<std::vector<float>> captured;  // per capture: [output_rows, d]
  lro::EvalResult result;

  void Execute() override {
    try {
      batch.tokens = tokens.empty() ? nullptr : tokens.data();
      batch.embeddings = embeddings.empty() ? nullptr : embeddings.data();
      batch.pos = pos.data();
      batch.seq = seq.data();
      const auto& rows = batch.output_rows;
      captured.resize(captures.size());
      if (!captures.empty() || !edits.empty()) {
        batch.hook = [this, &rows](lro::HookPoint p, int layer, float* x, int64_t n, int64_t d) {
          for (const auto& e : edits) {
            if (e.point != p || e.layer != layer) continue;
            float* r = x + e.row * d;
            if (e.mode == EditSpec::NOISE) lro::add_scaled_noise(r, r, d, e.scale, e.seed);
            else if (e.mode == EditSpec::INJECT) {
              const int64_t row0 = 0;
              lro::inject_forward(r, d, &row0, e.vec.data(), 1, static_cast<float>(e.scale), 1e-12f, false, nullptr);
            } else
              for (int64_t i = 0; i < d; ++i)
                r[i] = e.mode == EditSpec::REPLACE ? e.vec[i] : r[i] + static_cast<float>(e.scale) * e.vec[i];
          }
          for (size_t c = 0; c < captures.size(); ++c) {
            if (captures[c].point != p || captures[c].layer != layer) continue;
            auto& out = captured[c];
            out.resize(rows.size() * d);
            for (size_t i = 0; i < rows.size(); ++i) {
              int64_t src = p == lro::HookPoint::FINAL_NORM ? static_cast<int64_t>(i) : rows[i];
              if (src >= n) continue;
              std::memcpy(out.data() + i * d, x + src * d, d * sizeof(float));
            }
          }
        };
      }
      result = owner_->session->eval(batch, &owner_->cancel);
    } catch (const lro::CancelledError&) {
      SetError("cancelled");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void Finish() {
    owner_->busy = false;
    owner_->cancel = false;
    if (owner_->dispose_pending) owner_->session.reset();
  }
  void OnOK() override {
    Finish();
    Napi::Env env = Env();
    auto o = Napi::Object::New(env);
    if (batch.want_logits) o.Set("logits", to_f32(env, result.logits.data(), result.logits.size()));
    if (batch.want_final_norm) o.Set("finalNorm", to_f32(env, result.final_norm.data(), result.final_norm.size()));
    auto caps = Napi::Object::New(env);
    for (size_t c = 0; c < captures.size(); ++c) caps.Set(captures[c].name, to_f32(env, captured[c].data(), captured[c].size()));
    o.Set("captures", caps);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    Finish();
    if (std::string(e.Message()) == "cancelled") {
      auto err = Napi::Error::New(Env(), "eval cancelled");
      err.Set("code", "ABORT_ERR");
      err.Set("name", "AbortError");
      deferred_.Reject(err.Value());
    } else {
      deferred_.Reject(e.Value());
    }
  }

 private:
  SessionWrap* owner_;
  Napi::Promise::Deferred deferred_;
};

template <typename T, typename A>
std::vector<T> copy_typed(const Napi::Value& v, const char* field) {
  if (!v.IsTypedArray()) throw std::invalid_argument(std::string("eval: '") + field + "' must be a typed array");
  auto a = v.As<A>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

// eval({tokens?: Int32Array, embeddings?: Float32Array, pos: Int32Array, seq: Int32Array,
//       outputRows: Int32Array, logits: boolean, finalNorm: boolean, capture: string[],
//       edits: {point, row, mode: add|replace|noise|inject, vector?, scale?, seed?}[]})
Napi::Value SessionWrap::Eval(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& s = get(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "eval(request)");
  auto req = info[0].As<Napi::Object>();
  const auto& hp = s.model().hparams();
  auto* w = new EvalWorker(env, this);
  try {
    Napi::Value tv = req.Get("tokens"), ev = req.Get("embeddings");
    if (!tv.IsUndefined() && !tv.IsNull()) w->tokens = copy_typed<int32_t, Napi::Int32Array>(tv, "tokens");
    if (!ev.IsUndefined() && !ev.IsNull()) w->embeddings = copy_typed<float, Napi::Float32Array>(ev, "embeddings");
    w->pos = copy_typed<int32_t, Napi::Int32Array>(req.Get("pos"), "pos");
    w->seq = copy_typed<int32_t, Napi::Int32Array>(req.Get("seq"), "seq");
    auto rows = copy_typed<int32_t, Napi::Int32Array>(req.Get("outputRows"), "outputRows");
    size_t n = w->tokens.empty() ? w->embeddings.size() / static_cast<size_t>(hp.n_embd) : w->tokens.size();
    if (w->tokens.empty() == w->embeddings.empty()) throw std::invalid_argument("eval: give exactly one of tokens or embeddings");
    if (!w->embeddings.empty() && w->embeddings.size() % static_cast<size_t>(hp.n_embd) != 0)
      throw std::invalid_argument("eval: embeddings length " + std::to_string(w->embeddings.size()) +
                                  " is not a multiple of the model width " + std::to_string(hp.n_embd));
    if (w->pos.size() != n || w->seq.size() != n)
      throw std::invalid_argument("eval: pos and seq must have one entry per batch row (" + std::to_string(n) + ")");
    w->batch.n = static_cast<int64_t>(n);
    w->batch.output_rows.assign(rows.begin(), rows.end());
    w->batch.want_logits = req.Get("logits").ToBoolean();
    w->batch.want_final_norm = req.Get("finalNorm").ToBoolean();
    Napi::Value cap = req.Get("capture");
    if (cap.IsArray()) {
      auto a = cap.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) w->captures.push_back(parse_capture(a.Get(i).As<Napi::String>().Utf8Value(), hp.n_layer));
    }
    Napi::Value ed = req.Get("edits");
    if (ed.IsArray()) {
      auto a = ed.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        auto eo = a.Get(i).As<Napi::Object>();
        std::string name = eo.Get("point").As<Napi::String>().Utf8Value();
        CaptureSpec sp = parse_capture(name, hp.n_layer);
        if (sp.point == lro::HookPoint::FINAL_NORM) throw std::invalid_argument("eval: edits at final_norm are not supported");
        EditSpec e;
        std::string mode = eo.Get("mode").As<Napi::String>().Utf8Value();
        if (mode == "add") e.mode = EditSpec::ADD;
        else if (mode == "replace") e.mode = EditSpec::REPLACE;
        else if (mode == "noise") e.mode = EditSpec::NOISE;
        else if (mode == "inject") e.mode = EditSpec::INJECT;
        else throw std::invalid_argument("eval: edit mode '" + mode + "' (expected add, replace, noise, inject)");
        e.point = sp.point;
        e.layer = sp.layer;
        e.row = eo.Get("row").As<Napi::Number>().Int64Value();
        Napi::Value sc = eo.Get("scale");
        if (sc.IsNumber()) e.scale = sc.As<Napi::Number>().DoubleValue();
        if (e.mode == EditSpec::NOISE) {
          e.seed = static_cast<uint64_t>(eo.Get("seed").As<Napi::Number>().Int64Value());
        } else {
          e.vec = copy_typed<float, Napi::Float32Array>(eo.Get("vector"), "edits.vector");
          if (static_cast<int64_t>(e.vec.size()) != hp.n_embd)
            throw std::invalid_argument("eval: edit vector must have the model width " + std::to_string(hp.n_embd));
        }
        if (e.row < 0 || e.row >= static_cast<int64_t>(n)) throw std::invalid_argument("eval: edit row outside the batch");
        w->edits.push_back(std::move(e));
      }
    }
  } catch (const std::exception& e) {
    delete w;
    throw Napi::Error::New(env, e.what());
  }
  busy = true;
  cancel = false;
  auto p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SessionWrap::Cancel(const Napi::CallbackInfo& info) {
  if (busy) cancel = true;
  return info.Env().Undefined();
}

Napi::Value SessionWrap::SeqCopy(const Napi::CallbackInfo& info) {
  auto& s = get(info.Env());
  try {
    s.seq_copy(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(),
               info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}

Napi::Value SessionWrap::SeqRemove(const Napi::CallbackInfo& info) {
  auto& s = get(info.Env());
  s.seq_remove(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(),
               info[2].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value SessionWrap::SeqPosMax(const Napi::CallbackInfo& info) {
  if (!session) throw Napi::Error::New(info.Env(), "session has been disposed");
  return Napi::Number::New(info.Env(), session->seq_pos_max(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value SessionWrap::Threads(const Napi::CallbackInfo& info) {
  if (!session) throw Napi::Error::New(info.Env(), "session has been disposed");
  return Napi::Number::New(info.Env(), session->threads());
}

// setAdapters([{adapter, scale}])
Napi::Value SessionWrap::SetAdapters(const Napi::CallbackInfo& info) {
  auto& s = get(info.Env());
  std::vector<std::pair<std::shared_ptr<const lro::LoraAdapter>, float>> list;
  auto a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto o = a.Get(i).As<Napi::Object>();
    auto* aw = AdapterWrap::Unwrap(o.Get("adapter").As<Napi::Object>());
    list.push_back({aw->adapter, o.Get("scale").As<Napi::Number>().FloatValue()});
  }
  s.set_adapters(std::move(list));
  return info.Env().Undefined();
}

Napi::Value SessionWrap::Dispose(const Napi::CallbackInfo& info) {
  if (busy) {
    cancel = true;
    dispose_pending = true;
  } else {
    session.reset();
  }
  return info.Env().Undefined();
}

// ------------------------------------------------------------------ free functions

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    GgmlType t = parse_type(info[0].As<Napi::String>().Utf8Value());
    auto src = info[1].As<Napi::Float32Array>();
    int64_t n = static_cast<int64_t>(src.ElementLength());
    int64_t row = info.Length() > 2 ? info[2].As<Napi::Number>().Int64Value() : n;
    if (!lro::can_quantize(t)) throw std::invalid_argument("cannot quantise to " + type_name(t));
    if (row <= 0 || n % row != 0 || row % lro::traits(t).block_size != 0)
      throw std::invalid_argument("quantize: row length must divide the data and be a multiple of the block size " +
                                  std::to_string(lro::traits(t).block_size));
    size_t rs = lro::row_size(t, row);
    auto out = Napi::Uint8Array::New(env, rs * static_cast<size_t>(n / row));
    for (int64_t r = 0; r < n / row; ++r) lro::quantize_row(t, src.Data() + r * row, out.Data() + r * rs, row);
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    GgmlType t = parse_type(info[0].As<Napi::String>().Utf8Value());
    auto src = info[1].As<Napi::Uint8Array>();
    int64_t n = info[2].As<Napi::Number>().Int64Value();
    if (n < 0 || n % lro::traits(t).block_size != 0 || lro::row_size(t, n) > src.ByteLength())
      throw std::invalid_argument("dequantize: data too short or length not a multiple of the block size");
    auto out = Napi::Float32Array::New(env, static_cast<size_t>(n));
    lro::dequantize_row(t, src.Data(), out.Data(), n);
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

lro::GgufValue js_to_gguf(const Napi::Value& v, const std::string& type);

// writeGguf(path, metadata: {key, type, value}[], tensors: {name, type, shape, data: Uint8Array}[])
// type: u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool string, or "array:<type>".
lro::GgufValue js_to_gguf(const Napi::Value& v, const std::string& type) {
  using T = lro::GgufValueType;
  lro::GgufValue g;
  if (type.rfind("array:", 0) == 0) {
    g.type = T::ARRAY;
    std::string et = type.substr(6);
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) g.arr.push_back(js_to_gguf(a.Get(i), et));
    g.elem_type = g.arr.empty() ? (et == "string" ? T::STRING : T::I32) : g.arr[0].type;
    if (et.rfind("array:", 0) == 0) g.elem_type = T::ARRAY;
    return g;
  }
  static const std::pair<const char*, T> names[] = {{"u8", T::U8}, {"i8", T::I8}, {"u16", T::U16}, {"i16", T::I16},
                                                    {"u32", T::U32}, {"i32", T::I32}, {"u64", T::U64}, {"i64", T::I64},
                                                    {"f32", T::F32}, {"f64", T::F64}, {"bool", T::BOOL}, {"string", T::STRING}};
  for (auto& nt : names) {
    if (type != nt.first) continue;
    g.type = nt.second;
    switch (g.type) {
      case T::STRING: g.str = v.As<Napi::String>().Utf8Value(); break;
      case T::BOOL: g.num.b = v.ToBoolean(); break;
      case T::F32: case T::F64: g.num.f64 = v.As<Napi::Number>().DoubleValue(); break;
      case T::U8: case T::U16: case T::U32: case T::U64:
        g.num.u64 = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(nullptr) : static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
        break;
      default:
        g.num.i64 = v.IsBigInt() ? v.As<Napi::BigInt>().Int64Value(nullptr) : v.As<Napi::Number>().Int64Value();
    }
    return g;
  }
  throw std::invalid_argument("unknown GGUF value type '" + type + "'");
}

Napi::Value WriteGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    lro::GgufWriter w;
    auto md = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < md.Length(); ++i) {
      auto e = md.Get(i).As<Napi::Object>();
      w.set_value(e.Get("key").As<Napi::String>().Utf8Value(),
                  js_to_gguf(e.Get("value"), e.Get("type").As<Napi::String>().Utf8Value()));
    }
    auto ts = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < ts.Length(); ++i) {
      auto t = ts.Get(i).As<Napi::Object>();
      auto shape = t.Get("shape").As<Napi::Array>();
      std::vector<int64_t> ne;
      for (uint32_t d = 0; d < shape.Length(); ++d) ne.push_back(shape.Get(d).As<Napi::Number>().Int64Value());
      auto data = t.Get("data").As<Napi::Uint8Array>();
      w.add_tensor(t.Get("name").As<Napi::String>().Utf8Value(), parse_type(t.Get("type").As<Napi::String>().Utf8Value()), ne,
                   std::vector<uint8_t>(data.Data(), data.Data() + data.ByteLength()));
    }
    w.write(path);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

// sampleToken(logits, row, nVocab, {temperature, topK, topP, seed, step, exclude?: Int32Array})
// Greedy (lowest id on ties) when temperature <= 0. The draw depends only on (seed, step), so a
// resumed or re-run generation picks the same tokens.
Napi::Value SampleToken(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = info[0].As<Napi::Float32Array>();
  int64_t row = info[1].As<Napi::Number>().Int64Value();
  int64_t nv = info[2].As<Napi::Number>().Int64Value();
  auto o = info[3].As<Napi::Object>();
  if (nv <= 0 || row < 0 || static_cast<size_t>((row + 1) * nv) > logits.ElementLength())
    throw Napi::RangeError::New(env, "sampleToken: row outside the logits");
  const float* l = logits.Data() + row * nv;
  double temperature = o.Get("temperature").As<Napi::Number>().DoubleValue();
  int64_t top_k = o.Get("topK").As<Napi::Number>().Int64Value();
  double top_p = o.Get("topP").As<Napi::Number>().DoubleValue();
  uint64_t seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
  uint64_t step = static_cast<uint64_t>(o.Get("step").As<Napi::Number>().Int64Value());
  std::vector<char> banned(static_cast<size_t>(nv), 0);
  Napi::Value ex = o.Get("exclude");
  if (ex.IsTypedArray()) {
    auto e = ex.As<Napi::Int32Array>();
    for (size_t i = 0; i < e.ElementLength(); ++i)
      if (e[i] >= 0 && e[i] < nv) banned[static_cast<size_t>(e[i])] = 1;
  }
  int64_t best = -1;
  for (int64_t i = 0; i < nv; ++i)
    if (!banned[i] && (best < 0 || l[i] > l[best])) best = i;
  if (best < 0) throw Napi::Error::New(env, "sampleToken: every token is excluded");
  if (temperature <= 0) return Napi::Number::New(env, static_cast<double>(best));
  std::vector<std::pair<float, int32_t>> cand;
  for (int64_t i = 0; i < nv; ++i)
    if (!banned[i]) cand.push_back({l[i], static_cast<int32_t>(i)});
  std::sort(cand.begin(), cand.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (top_k > 0 && static_cast<size_t>(top_k) < cand.size()) cand.resize(static_cast<size_t>(top_k));
  std::vector<double> p(cand.size());
  double mx = cand[0].first, sum = 0;
  for (size_t i = 0; i < cand.size(); ++i) sum += p[i] = std::exp((cand[i].first - mx) / temperature);
  if (top_p > 0 && top_p < 1) {
    double acc = 0;
    size_t keep = cand.size();
    for (size_t i = 0; i < cand.size(); ++i) {
      acc += p[i] / sum;
      if (acc >= top_p) { keep = i + 1; break; }
    }
    p.resize(keep);
    sum = 0;
    for (double x : p) sum += x;
  }
  // splitmix64 of (seed, step): a stateless stream.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + step + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  double u = static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0) * sum;
  for (size_t i = 0; i < p.size(); ++i) {
    if (u < p[i]) return Napi::Number::New(env, cand[i].second);
    u -= p[i];
  }
  return Napi::Number::New(env, cand[p.size() - 1].second);
}

class RandomModelWorker : public Napi::AsyncWorker {
 public:
  RandomModelWorker(Napi::Env env, std::string path, lro::RandomLlamaSpec spec)
      : Napi::AsyncWorker(env), path_(std::move(path)), spec_(std::move(spec)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      lro::write_random_llama(path_, spec_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string path_;
  lro::RandomLlamaSpec spec_;
  Napi::Promise::Deferred deferred_;
};

// writeRandomLlama(path, {nEmbd, nLayer, nHead, nHeadKv, nFf, nVocab, type, seed, weightStd, name, latentPath, latentSteps})
Napi::Value WriteRandomLlama(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = info[1].As<Napi::Object>();
  lro::RandomLlamaSpec sp;
  auto num = [&](const char* k, int64_t& dst) {
    if (o.Get(k).IsNumber()) dst = o.Get(k).As<Napi::Number>().Int64Value();
  };
  num("nEmbd", sp.n_embd);
  num("nLayer", sp.n_layer);
  num("nHead", sp.n_head);
  num("nHeadKv", sp.n_head_kv);
  num("nFf", sp.n_ff);
  num("nVocab", sp.n_vocab);
  num("latentSteps", sp.latent_steps);
  int64_t seed = 1;
  num("seed", seed);
  sp.seed = static_cast<uint64_t>(seed);
  if (o.Get("weightStd").IsNumber()) sp.weight_std = o.Get("weightStd").As<Napi::Number>().FloatValue();
  if (o.Get("name").IsString()) sp.name = o.Get("name").As<Napi::String>().Utf8Value();
  if (o.Get("latentPath").IsString()) sp.latent_path = o.Get("latentPath").As<Napi::String>().Utf8Value();
  try {
    if (o.Get("type").IsString()) sp.type = parse_type(o.Get("type").As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto* w = new RandomModelWorker(env, info[0].As<Napi::String>().Utf8Value(), sp);
  auto p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), lro::cpu_features()); }
Napi::Value PhysicalCores(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), lro::ThreadPool::physical_cores()); }

// ------------------------------------------------------------------ Conversion (HF -> GGUF, adapters)

// Runs a conversion on libuv's pool. Progress (when options.onProgress is a function) crosses to
// the JS thread through a thread-safe function, throttled so a large model does not flood it.
class ConvertWorker : public Napi::AsyncWorker {
 public:
  ConvertWorker(Napi::Env env, Napi::Value on_progress)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {
    if (on_progress.IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "lro-convert-progress", 64, 1);
      has_tsfn_ = true;
    }
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

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
  void OnOK() override { deferred_.Resolve(result(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  struct Progress {
    std::string stage;
    int64_t done, total;
    std::string item;
  };
  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction tsfn_;
  bool has_tsfn_ = false;
  std::string last_stage_;
  std::chrono::steady_clock::time_point last_sent_{};
};

std::string opt_string(const Napi::Object& o, const char* key, const std::string& fallback = "") {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double opt_number(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool opt_bool(const Napi::Object& o, const char* key, bool fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Array string_array(Napi::Env env, const std::vector<std::string>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

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
  opt.threads = static_cast<int>(opt_number(o, "threads", 0));
  auto* w = new ConvertWorker(env, o.Has("onProgress") ? o.Get("onProgress") : env.Undefined());
  opt.progress = w->progress_fn();
  auto sum = std::make_shared<lro::convert::HfConvertSummary>();
  std::string dir = info[0].As<Napi::String>().Utf8Value(), out = info[1].As<Napi::String>().Utf8Value();
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
  std::string in = info[0].As<Napi::String>().Utf8Value(), out = info[1].As<Napi::String>().Utf8Value();
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

// ------------------------------------------------------------------ LoRA trainer

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

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "NativeTrainer",
        {InstanceMethod("step", &TrainerWrap::Step), InstanceMethod("evalLoss", &TrainerWrap::EvalLoss),
         InstanceMethod("saveAdapter", &TrainerWrap::SaveAdapter), InstanceMethod("saveCheckpoint", &TrainerWrap::SaveCheckpoint),
         InstanceMethod("loadCheckpoint", &TrainerWrap::LoadCheckpoint), InstanceMethod("info", &TrainerWrap::Info),
         InstanceMethod("setDataPosition", &TrainerWrap::SetDataPosition), InstanceMethod("dispose", &TrainerWrap::Dispose)});
    register_class(env, f);
    exports.Set("NativeTrainer", f);
    return exports;
  }
  explicit TrainerWrap(const Napi::CallbackInfo& info);
  std::unique_ptr<lro::Trainer> trainer;
  std::atomic<bool> busy{false};
  bool dispose_pending = false;

  lro::Trainer& get(const Napi::Env& env) {
    if (!trainer) throw Napi::Error::New(env, "trainer has been disposed");
    if (busy) throw Napi::Error::New(env, "trainer is busy with a step; await it first");
    return *trainer;
  }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value EvalLoss(const Napi::CallbackInfo& info);
  Napi::Value SaveAdapter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = get(env);
    try {
      t.save_adapter(info[0].As<Napi::String>().Utf8Value(), info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "");
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }
  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = get(env);
    try {
      t.save_checkpoint(info[0].As<Napi::String>().Utf8Value());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }
  Napi::Value LoadCheckpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto& t = get(env);
    try {
      t.load_checkpoint(info[0].As<Napi::String>().Utf8Value());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }
  Napi::Value SetDataPosition(const Napi::CallbackInfo& info) {
    get(info.Env()).set_data_position(info[0].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!trainer) throw Napi::Error::New(env, "trainer has been disposed");
    const auto& t = *trainer;
    auto o = Napi::Object::New(env);
    o.Set("step", static_cast<double>(t.step_count()));
    o.Set("dataPosition", static_cast<double>(t.data_position()));
    o.Set("threads", t.threads());
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
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy) dispose_pending = true;
    else trainer.reset();
    return info.Env().Undefined();
  }
};

// new NativeTrainer(model, lora, optim, options)
TrainerWrap::TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "new NativeTrainer(model, lora?, optim?, options?)");
  auto* mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  auto arg = [&](size_t i) { return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(env); };
  Napi::Object lo = arg(1), oo = arg(2), to = arg(3);
  try {
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
      for (uint32_t i = 0; i < a.Length(); ++i) lc.targets.push_back(a.Get(i).As<Napi::String>().Utf8Value());
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
    trainer = std::make_unique<lro::Trainer>(mw->model, lc, oc, tro);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

class TrainWorker : public Napi::AsyncWorker {
 public:
  TrainWorker(Napi::Env env, TrainerWrap* owner) : Napi::AsyncWorker(env), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_->Ref();
  }
  ~TrainWorker() override { owner_->Unref(); }
  Napi::Promise Promise() { return deferred_.Promise(); }

  bool eval_only = false;
  std::vector<std::vector<lro::TrainExample>> micro_batches;
  lro::StepResult result;
  double eval = 0;

  void Execute() override {
    try {
      if (eval_only) eval = owner_->trainer->eval_loss(micro_batches.front());
      else result = owner_->trainer->step(micro_batches);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void Finish() {
    owner_->busy = false;
    if (owner_->dispose_pending) owner_->trainer.reset();
  }
  void OnOK() override {
    Finish();
    Napi::Env env = Env();
    if (eval_only) {
      deferred_.Resolve(Napi::Number::New(env, eval));
      return;
    }
    auto o = Napi::Object::New(env);
    o.Set("loss", result.loss);
    auto ml = Napi::Array::New(env, result.micro_losses.size());
    for (size_t i = 0; i < result.micro_losses.size(); ++i) ml.Set(static_cast<uint32_t>(i), result.micro_losses[i]);
    o.Set("microLosses", ml);
    o.Set("gradNorm", result.grad_norm);
    o.Set("clipCoef", result.clip_coef);
    o.Set("lr", result.lr);
    o.Set("tokens", static_cast<double>(result.tokens));
    o.Set("lossTokens", static_cast<double>(result.loss_tokens));
    o.Set("step", static_cast<double>(result.step));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    Finish();
    deferred_.Reject(e.Value());
  }

 private:
  TrainerWrap* owner_;
  Napi::Promise::Deferred deferred_;
};

std::vector<lro::TrainExample> train_examples(const Napi::Value& v) {
  if (!v.IsArray()) throw std::invalid_argument("trainer: examples must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<lro::TrainExample> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(train_example(a.Get(i), i));
  return out;
}

// step(examples, microBatches?: number[][]): one optimizer step; default one micro-batch of all examples.
Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  get(env);
  auto* w = new TrainWorker(env, this);
  try {
    auto ex = train_examples(info.Length() > 0 ? info[0] : env.Undefined());
    if (info.Length() > 1 && info[1].IsArray()) {
      auto mbs = info[1].As<Napi::Array>();
      std::vector<bool> used(ex.size(), false);
      for (uint32_t i = 0; i < mbs.Length(); ++i) {
        if (!mbs.Get(i).IsArray()) throw std::invalid_argument("trainer: microBatches must be an array of index arrays");
        auto idx = mbs.Get(i).As<Napi::Array>();
        std::vector<lro::TrainExample> mb;
        for (uint32_t j = 0; j < idx.Length(); ++j) {
          int64_t k = idx.Get(j).As<Napi::Number>().Int64Value();
          if (k < 0 || k >= static_cast<int64_t>(ex.size()) || used[static_cast<size_t>(k)])
            throw std::invalid_argument("trainer: microBatches index " + std::to_string(k) + " is out of range or repeated");
          used[static_cast<size_t>(k)] = true;
          mb.push_back(ex[static_cast<size_t>(k)]);
        }
        if (mb.empty()) throw std::invalid_argument("trainer: an empty micro-batch");
        w->micro_batches.push_back(std::move(mb));
      }
    } else {
      w->micro_batches.push_back(std::move(ex));
    }
    if (w->micro_batches.empty() || w->micro_batches.front().empty()) throw std::invalid_argument("trainer: no examples");
  } catch (const std::exception& e) {
    delete w;
    throw Napi::Error::New(env, e.what());
  }
  busy = true;
  auto p = w->Promise();
  w->Queue();
  return p;
}

// evalLoss(examples): pooled token mean, no gradients, no dropout.
Napi::Value TrainerWrap::EvalLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  get(env);
  auto* w = new TrainWorker(env, this);
  try {
    w->eval_only = true;
    w->micro_batches.push_back(train_examples(info.Length() > 0 ? info[0] : env.Undefined()));
  } catch (const std::exception& e) {
    delete w;
    throw Napi::Error::New(env, e.what());
  }
  busy = true;
  auto p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  ModelWrap::Init(env, exports);
  SessionWrap::Init(env, exports);
  AdapterWrap::Init(env, exports);
  LatentHeadWrap::Init(env, exports);
  TrainerWrap::Init(env, exports);
  exports.Set("loadLatentHead", Napi::Function::New(env, LoadLatentHead));
  exports.Set("logitStats", Napi::Function::New(env, LogitStatsFn));
  exports.Set("vectorStats", Napi::Function::New(env, VectorStatsFn));
  exports.Set("addScaledNoise", Napi::Function::New(env, AddScaledNoise));
  exports.Set("meanRows", Napi::Function::New(env, MeanRows));
  exports.Set("loadAdapter", Napi::Function::New(env, LoadAdapter));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("inspectGguf", Napi::Function::New(env, InspectGguf));
  exports.Set("quantize", Napi::Function::New(env, Quantize));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize));
  exports.Set("writeGguf", Napi::Function::New(env, WriteGguf));
  exports.Set("sampleToken", Napi::Function::New(env, SampleToken));
  exports.Set("writeRandomLlama", Napi::Function::New(env, WriteRandomLlama));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("physicalCores", Napi::Function::New(env, PhysicalCores));
  exports.Set("convertHf", Napi::Function::New(env, ConvertHf));
  exports.Set("convertAdapter", Napi::Function::New(env, ConvertAdapter));
  return exports;
}

}  // namespace

NODE_API_MODULE(lro_native, Init)
