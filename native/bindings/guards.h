// One set of argument guards for every native entry (better-sqlite3's REQUIRE_ARGUMENT idea):
// info[i] must be what the entry expects, or a TypeError / RangeError names the entry, the
// argument and what was expected. Typed arrays are checked for their element type, since
// node-addon-api's As<Float32Array>() does not check it (an Int32Array would be read as floats).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace lro_napi {

[[noreturn]] inline void type_error(Napi::Env env, const std::string& what, const char* expected) {
  throw Napi::TypeError::New(env, what + " must be " + expected);
}

template <typename A>
constexpr napi_typedarray_type typed_kind();
template <> constexpr napi_typedarray_type typed_kind<Napi::Float32Array>() { return napi_float32_array; }
template <> constexpr napi_typedarray_type typed_kind<Napi::Int32Array>() { return napi_int32_array; }
template <> constexpr napi_typedarray_type typed_kind<Napi::Uint8Array>() { return napi_uint8_array; }
template <typename A>
constexpr const char* typed_name();
template <> constexpr const char* typed_name<Napi::Float32Array>() { return "a Float32Array"; }
template <> constexpr const char* typed_name<Napi::Int32Array>() { return "an Int32Array"; }
template <> constexpr const char* typed_name<Napi::Uint8Array>() { return "a Uint8Array"; }

// A typed array of exactly the element type A.
template <typename A>
A typed_value(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != typed_kind<A>()) type_error(env, what, typed_name<A>());
  return v.As<A>();
}
template <typename A>
A typed_arg(const Napi::CallbackInfo& info, size_t i, const std::string& what) {
  return typed_value<A>(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), what);
}

inline double number_value(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) type_error(env, what, "a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x)) throw Napi::RangeError::New(env, what + " must be finite");
  return x;
}
inline double number_arg(const Napi::CallbackInfo& info, size_t i, const std::string& what) {
  return number_value(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), what);
}

// An integer in [lo, hi].
inline int64_t int_value(Napi::Env env, const Napi::Value& v, const std::string& what, int64_t lo, int64_t hi) {
  const double x = number_value(env, v, what);
  if (x != std::floor(x) || x < static_cast<double>(lo) || x > static_cast<double>(hi))
    throw Napi::RangeError::New(env, what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                         std::to_string(x));
  return static_cast<int64_t>(x);
}
inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const std::string& what, int64_t lo, int64_t hi) {
  return int_value(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), what, lo, hi);
}

inline std::string string_arg(const Napi::CallbackInfo& info, size_t i, const std::string& what) {
  if (info.Length() <= i || !info[i].IsString()) type_error(info.Env(), what, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const std::string& what) {
  if (info.Length() <= i || !info[i].IsObject() || info[i].IsArray()) type_error(info.Env(), what, "an object");
  return info[i].As<Napi::Object>();
}

constexpr int64_t kMaxSafeInt = (int64_t(1) << 53);
constexpr int64_t kMaxI32 = 0x7fffffff;

}  // namespace lro_napi
