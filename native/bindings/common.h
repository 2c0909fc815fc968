// Helpers shared by the binding files: typed-array copies, type names, GGUF values as JS, and the
// per-environment class registry (constructors live in instance data, not process statics, so the
// addon also works when loaded in several worker threads).
#pragma once
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

#include "core/gguf.h"
#include "model/llama_model.h"
#include "ops/analysis_ops.h"
#include "convert/convert_hf.h"
#include "convert/lora_convert.h"
#include "model/latent_head.h"
#include "model/lora_adapter.h"
#include "ops/ops.h"
#include "quant/quants.h"
#include "model/random_model.h"
#include "runtime/session.h"
#include "train/train.h"
#include "bindings/float_buffer_pool.h"
#include "bindings/guards.h"

namespace lro_napi {

using lro::GgmlType;

inline Napi::Float32Array to_f32(Napi::Env env, const float* p, size_t n) {
  auto arr = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(arr.Data(), p, n * sizeof(float));
  return arr;
}

// Hands v's storage to JS without copying (lent by FloatBufferPool: back to it when the array is
// collected, or when an eval recycles it): a decode token's logits are 0.5 MB, and a fresh JS buffer
// for them costs a zeroed allocation and a copy per eval. Where external buffers are not allowed (a
// sandboxed V8), copies.
inline Napi::Float32Array to_f32(Napi::Env env, std::vector<float>&& v) {
  if (v.empty()) return to_f32(env, nullptr, 0);
  auto* owned = new std::vector<float>(std::move(v));
  auto returned = [](napi_env, void*, void* hint) { FloatBufferPool::shared().returned(static_cast<std::vector<float>*>(hint)); };
  napi_value ab;
  if (napi_create_external_arraybuffer(env, owned->data(), owned->size() * sizeof(float), returned, owned, &ab) != napi_ok) {
    auto copy = to_f32(env, owned->data(), owned->size());
    FloatBufferPool::shared().returned(owned);
    return copy;
  }
  FloatBufferPool::shared().lend(owned);
  return Napi::Float32Array::New(env, owned->size(), Napi::ArrayBuffer(env, ab), 0);
}

// Detaches each array of `arrays` that an eval returned (see to_f32) and puts its storage back in
// the pool, so that the next result reuses those pages; every view of its buffer then reads as
// empty. Other arrays are left alone. who names the argument in errors.
inline void recycle_arrays(Napi::Env env, const Napi::Value& arrays, const std::string& who) {
  if (arrays.IsUndefined() || arrays.IsNull()) return;
  if (!arrays.IsArray()) throw Napi::TypeError::New(env, who + ": expected an array of Float32Arrays");
  auto a = arrays.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, who + "[" + std::to_string(i) + "]: expected a Float32Array");
    Napi::ArrayBuffer ab = v.As<Napi::TypedArray>().ArrayBuffer();
    const void* data = ab.Data();
    const size_t bytes = ab.ByteLength();
    bool detached = false;
    if (!data || napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached) continue;
    if (!FloatBufferPool::shared().is_lent(data, bytes)) continue;
    if (napi_detach_arraybuffer(env, ab) != napi_ok) continue;
    FloatBufferPool::shared().reclaim(data, bytes);  // unless the detach already ran its finalizer
  }
}

inline GgmlType parse_type(const std::string& name) {
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

inline std::string type_name(GgmlType t) { return lro::traits(t).name; }

inline Napi::Value gguf_value_to_js(Napi::Env env, const lro::GgufValue& v, const std::string& key) {
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

struct AddonData {
  std::map<std::string, Napi::FunctionReference> classes;
};

inline void register_class(Napi::Env env, Napi::Function f) {
  auto* data = env.GetInstanceData<AddonData>();
  data->classes[f.Get("name").As<Napi::String>().Utf8Value()] = Napi::Persistent(f);
}

// The native object behind a JS value of class `name` (NativeModel, NativeAdapter, ...), or a
// TypeError naming `what`: no other object (another class's, a plain one) is ever reinterpreted.
template <typename W>
W* unwrap_as(Napi::Env env, const Napi::Value& v, const char* name, const std::string& what) {
  auto* data = env.GetInstanceData<AddonData>();
  auto it = data->classes.find(name);
  if (!v.IsObject() || it == data->classes.end() || !v.As<Napi::Object>().InstanceOf(it->second.Value()))
    throw Napi::TypeError::New(env, what + " must be a " + name);
  W* w = W::Unwrap(v.As<Napi::Object>());
  if (!w) throw Napi::TypeError::New(env, what + " must be a " + name);
  return w;
}

inline Napi::Object new_instance(Napi::Env env, const char* name) { return env.GetInstanceData<AddonData>()->classes.at(name).New({}); }

// The tensor table of a GGUF file: [{name, type, shape (ggml order), bytes}].
inline Napi::Array tensors_to_js(Napi::Env env, const lro::GgufFile& f) {
  auto tensors = Napi::Array::New(env, f.tensors().size());
  uint32_t i = 0;
  for (const auto& t : f.tensors()) {
    auto to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("type", type_name(t.type));
    auto shape = Napi::Array::New(env, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) shape.Set(d, static_cast<double>(t.ne[d]));
    to.Set("shape", shape);
    to.Set("bytes", static_cast<double>(t.nbytes));
    to.Set("fileOffset", static_cast<double>(f.file_offset(t)));
    tensors.Set(i++, to);
  }
  return tensors;
}

// All metadata as a JS object; arrays longer than max_array come back as {arrayOf, length}.
inline Napi::Object metadata_to_js(Napi::Env env, const lro::GgufFile& f, uint32_t max_array) {
  auto md = Napi::Object::New(env);
  for (const auto& kv : f.metadata()) {
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
  return md;
}

template <typename T, typename A>
std::vector<T> copy_typed(const Napi::Value& v, const char* field) {
  auto a = typed_value<A>(v.Env(), v, std::string("eval: ") + field);
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

inline std::string opt_string(const Napi::Object& o, const char* key, const std::string& fallback = "") {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline double opt_number(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline bool opt_bool(const Napi::Object& o, const char* key, bool fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline Napi::Array string_array(Napi::Env env, const std::vector<std::string>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

// A training step's examples split into micro-batches: spec is an array of index arrays (each
// example used at most once), or undefined for one micro-batch of all. who names the class in errors.
template <typename T>
std::vector<std::vector<T>> micro_batches(const Napi::Value& spec, std::vector<T> ex, const std::string& who) {
  std::vector<std::vector<T>> out;
  if (spec.IsArray()) {
    auto mbs = spec.As<Napi::Array>();
    std::vector<bool> used(ex.size(), false);
    for (uint32_t i = 0; i < mbs.Length(); ++i) {
      if (!mbs.Get(i).IsArray()) throw std::invalid_argument(who + ": microBatches must be an array of index arrays");
      auto idx = mbs.Get(i).As<Napi::Array>();
      std::vector<T> mb;
      for (uint32_t j = 0; j < idx.Length(); ++j) {
        Napi::Value kv = idx.Get(j);
        if (!kv.IsNumber()) throw std::invalid_argument(who + ": microBatches entries must be numbers");
        const int64_t k = kv.As<Napi::Number>().Int64Value();
        if (k < 0 || k >= static_cast<int64_t>(ex.size()) || used[static_cast<size_t>(k)])
          throw std::invalid_argument(who + ": microBatches index " + std::to_string(k) + " is out of range or repeated");
        used[static_cast<size_t>(k)] = true;
        mb.push_back(ex[static_cast<size_t>(k)]);
      }
      if (mb.empty()) throw std::invalid_argument(who + ": an empty micro-batch");
      out.push_back(std::move(mb));
    }
  } else {
    out.push_back(std::move(ex));
  }
  if (out.empty() || out.front().empty()) throw std::invalid_argument(who + ": no examples");
  return out;
}

// Queues an async worker whose inputs fill() prepares; a throw in fill() deletes it and becomes a JS error.
template <typename W, typename Fill>
Napi::Value queue_worker(Napi::Env env, W* w, std::atomic<bool>& busy, Fill&& fill) {
  try {
    fill(*w);
  } catch (const std::exception& e) {
    delete w;
    throw Napi::Error::New(env, e.what());
  }
  busy = true;
  auto p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace lro_napi
