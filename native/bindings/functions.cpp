// Free functions: (de)quantisation, GGUF writing, sampling, numeric readouts, random models, CPU facts.
#include "bindings/common.h"
#include "quant/machine_limits.h"

namespace lro_napi {

// logitStats(logits, row, nVocab, vocabLimit, topK)
Napi::Value LogitStatsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = typed_arg<Napi::Float32Array>(info, 0, "logitStats: logits");
  int64_t row = int_arg(info, 1, "logitStats: row", 0, kMaxSafeInt), nv = int_arg(info, 2, "logitStats: nVocab", 1, kMaxI32);
  int64_t limit = int_arg(info, 3, "logitStats: vocabLimit", 0, kMaxI32), k = int_arg(info, 4, "logitStats: topK", 0, kMaxI32);
  if (nv <= 0 || row < 0 || static_cast<size_t>(row) >= logits.ElementLength() / static_cast<size_t>(nv))
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
  auto v = typed_arg<Napi::Float32Array>(info, 0, "vectorStats: v");
  const float* prev = nullptr;
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) {
    auto p = typed_arg<Napi::Float32Array>(info, 1, "vectorStats: prev");
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
  auto v = typed_arg<Napi::Float32Array>(info, 0, "addScaledNoise: v");
  const double scale = number_arg(info, 1, "addScaledNoise: scale");
  const int64_t seed = int_arg(info, 2, "addScaledNoise: seed", 0, kMaxSafeInt);
  auto out = Napi::Float32Array::New(env, v.ElementLength());
  lro::add_scaled_noise(out.Data(), v.Data(), static_cast<int64_t>(v.ElementLength()), scale, static_cast<uint64_t>(seed));
  return out;
}

// meanRows(x, width) -> mean row
Napi::Value MeanRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = typed_arg<Napi::Float32Array>(info, 0, "meanRows: x");
  int64_t d = int_arg(info, 1, "meanRows: width", 1, kMaxI32);
  if (d <= 0 || x.ElementLength() % static_cast<size_t>(d) != 0) throw Napi::RangeError::New(env, "meanRows: length not a multiple of width");
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(d));
  lro::mean_rows(out.Data(), x.Data(), static_cast<int64_t>(x.ElementLength()) / d, d);
  return out;
}

// ridgeClassify(xTrain, labels, xTest, width, nClasses, lambda) -> Int32Array of predicted classes
Napi::Value RidgeClassify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsNumber() ||
      !info[4].IsNumber() || !info[5].IsNumber())
    throw Napi::TypeError::New(env, "ridgeClassify(xTrain: Float32Array, labels: Int32Array, xTest: Float32Array, width, nClasses, lambda)");
  auto xt = info[0].As<Napi::TypedArray>();
  auto lb = info[1].As<Napi::TypedArray>();
  auto xs = info[2].As<Napi::TypedArray>();
  if (xt.TypedArrayType() != napi_float32_array || xs.TypedArrayType() != napi_float32_array || lb.TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "ridgeClassify: xTrain and xTest must be Float32Array, labels Int32Array");
  const int64_t d = info[3].As<Napi::Number>().Int64Value(), k = info[4].As<Napi::Number>().Int64Value();
  const double lambda = info[5].As<Napi::Number>().DoubleValue();
  if (d <= 0 || d > (1 << 16) || k <= 0 || k > (1 << 16)) throw Napi::RangeError::New(env, "ridgeClassify: width and nClasses must be in 1..65536");
  const size_t n = lb.ElementLength();
  if (xt.ElementLength() != n * static_cast<size_t>(d)) throw Napi::RangeError::New(env, "ridgeClassify: xTrain must hold labels.length x width values");
  if (xs.ElementLength() % static_cast<size_t>(d) != 0) throw Napi::RangeError::New(env, "ridgeClassify: xTest length is not a multiple of width");
  const size_t m = xs.ElementLength() / static_cast<size_t>(d);
  auto out = Napi::Int32Array::New(env, m);
  lro::ridge_classify(xt.As<Napi::Float32Array>().Data(), lb.As<Napi::Int32Array>().Data(), static_cast<int64_t>(n),
                      xs.As<Napi::Float32Array>().Data(), static_cast<int64_t>(m), d, k, lambda, out.Data());
  return out;
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GgmlType t = parse_type(string_arg(info, 0, "quantize: type"));
  auto src = typed_arg<Napi::Float32Array>(info, 1, "quantize: data");
  int64_t n = static_cast<int64_t>(src.ElementLength());
  int64_t row = info.Length() > 2 && !info[2].IsUndefined() ? int_arg(info, 2, "quantize: rowLength", 1, kMaxSafeInt) : n;
  if (!lro::can_quantize(t)) throw std::invalid_argument("cannot quantise to " + type_name(t));
  if (row <= 0 || n % row != 0 || row % lro::traits(t).block_size != 0)
    throw std::invalid_argument("quantize: row length must divide the data and be a multiple of the block size " +
                                std::to_string(lro::traits(t).block_size));
  size_t rs = lro::row_size(t, row);
  auto out = Napi::Uint8Array::New(env, rs * static_cast<size_t>(n / row));
  for (int64_t r = 0; r < n / row; ++r) lro::quantize_row(t, src.Data() + r * row, out.Data() + r * rs, row);
  return out;
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GgmlType t = parse_type(string_arg(info, 0, "dequantize: type"));
  auto src = typed_arg<Napi::Uint8Array>(info, 1, "dequantize: data");
  int64_t n = int_arg(info, 2, "dequantize: n", 0, kMaxSafeInt);
  if (n < 0 || n % lro::traits(t).block_size != 0 || lro::row_size(t, n) > src.ByteLength())
    throw std::invalid_argument("dequantize: data too short or length not a multiple of the block size");
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(n));
  lro::dequantize_row(t, src.Data(), out.Data(), n);
  return out;
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
    if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "writeGguf: a value of type " + type + " must be an array");
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
    if (g.type == T::STRING ? !v.IsString() : g.type == T::BOOL ? !v.IsBoolean() : !(v.IsNumber() || v.IsBigInt()))
      throw Napi::TypeError::New(v.Env(), "writeGguf: a value of type " + type + " must be a " +
                                              (g.type == T::STRING ? "string" : g.type == T::BOOL ? "boolean" : "number or bigint"));
    if (v.IsNumber() && !std::isfinite(v.As<Napi::Number>().DoubleValue()) && g.type != T::F32 && g.type != T::F64)
      throw Napi::RangeError::New(v.Env(), "writeGguf: a value of type " + type + " must be finite");
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
  std::string path = string_arg(info, 0, "writeGguf: path");
  lro::GgufWriter w;
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray())
    throw Napi::TypeError::New(env, "writeGguf(path, metadata: {key, type, value}[], tensors: {name, type, shape, data}[])");
  auto str = [&](const Napi::Object& o, const char* k, const std::string& where) {
    if (!o.Get(k).IsString()) type_error(env, where + "." + k, "a string");
    return o.Get(k).As<Napi::String>().Utf8Value();
  };
  auto md = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < md.Length(); ++i) {
    const std::string where = "writeGguf: metadata[" + std::to_string(i) + "]";
    if (!md.Get(i).IsObject()) type_error(env, where, "an object");
    auto e = md.Get(i).As<Napi::Object>();
    w.set_value(str(e, "key", where), js_to_gguf(e.Get("value"), str(e, "type", where)));
  }
  auto ts = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < ts.Length(); ++i) {
    const std::string where = "writeGguf: tensors[" + std::to_string(i) + "]";
    if (!ts.Get(i).IsObject()) type_error(env, where, "an object");
    auto t = ts.Get(i).As<Napi::Object>();
    if (!t.Get("shape").IsArray()) type_error(env, where + ".shape", "an array");
    auto shape = t.Get("shape").As<Napi::Array>();
    std::vector<int64_t> ne;
    for (uint32_t d = 0; d < shape.Length(); ++d) ne.push_back(int_value(env, shape.Get(d), where + ".shape[" + std::to_string(d) + "]", 1, kMaxSafeInt));
    auto data = typed_value<Napi::Uint8Array>(env, t.Get("data"), where + ".data");
    w.add_tensor(str(t, "name", where), parse_type(str(t, "type", where)), ne, std::vector<uint8_t>(data.Data(), data.Data() + data.ByteLength()));
  }
  w.write(path);
  return env.Undefined();
}

// sampleToken(logits, row, nVocab, {temperature, topK, topP, seed, step, exclude?: Int32Array})
// Greedy (lowest id on ties) when temperature <= 0. The draw depends only on (seed, step), so a
// resumed or re-run generation picks the same tokens.
Napi::Value SampleToken(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = typed_arg<Napi::Float32Array>(info, 0, "sampleToken: logits");
  int64_t row = int_arg(info, 1, "sampleToken: row", 0, kMaxSafeInt);
  int64_t nv = int_arg(info, 2, "sampleToken: nVocab", 1, kMaxI32);
  auto o = object_arg(info, 3, "sampleToken: options");
  if (nv <= 0 || row < 0 || static_cast<size_t>(row) >= logits.ElementLength() / static_cast<size_t>(nv))
    throw Napi::RangeError::New(env, "sampleToken: row outside the logits");
  const float* l = logits.Data() + row * nv;
  double temperature = number_value(env, o.Get("temperature"), "sampleToken: options.temperature");
  int64_t top_k = int_value(env, o.Get("topK"), "sampleToken: options.topK", 0, kMaxI32);
  double top_p = number_value(env, o.Get("topP"), "sampleToken: options.topP");
  uint64_t seed = static_cast<uint64_t>(int_value(env, o.Get("seed"), "sampleToken: options.seed", 0, kMaxSafeInt));
  uint64_t step = static_cast<uint64_t>(int_value(env, o.Get("step"), "sampleToken: options.step", 0, kMaxSafeInt));
  std::vector<char> banned(static_cast<size_t>(nv), 0);
  Napi::Value ex = o.Get("exclude");
  if (!ex.IsUndefined() && !ex.IsNull()) {
    auto e = typed_value<Napi::Int32Array>(env, ex, "sampleToken: options.exclude");
    for (size_t i = 0; i < e.ElementLength(); ++i)
      if (e[i] >= 0 && e[i] < nv) banned[static_cast<size_t>(e[i])] = 1;
  }
  lro::SampleParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  p.step = step;
  const int32_t id = lro::sample_token(l, nv, banned.data(), p);
  if (id < 0) throw Napi::Error::New(env, "sampleToken: every token is excluded");
  return Napi::Number::New(env, id);
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

// writeRandomLlama(path, {nEmbd, nLayer, nHead, nHeadKv, nFf, nVocab, type, seed, weightStd, name, latentPath, latentSteps,
//                         tokenizerFrom, ropeBase, unitNorms})
Napi::Value WriteRandomLlama(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = string_arg(info, 0, "writeRandomLlama: path");
  auto o = object_arg(info, 1, "writeRandomLlama: spec");
  lro::RandomLlamaSpec sp;
  auto num = [&](const char* k, int64_t& dst) {
    if (!o.Get(k).IsUndefined()) dst = int_value(env, o.Get(k), std::string("writeRandomLlama: spec.") + k, 0, kMaxI32);
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
  if (!o.Get("weightStd").IsUndefined()) sp.weight_std = static_cast<float>(number_value(env, o.Get("weightStd"), "writeRandomLlama: spec.weightStd"));
  if (o.Get("name").IsString()) sp.name = o.Get("name").As<Napi::String>().Utf8Value();
  if (o.Get("latentPath").IsString()) sp.latent_path = o.Get("latentPath").As<Napi::String>().Utf8Value();
  if (o.Get("type").IsString()) sp.type = parse_type(o.Get("type").As<Napi::String>().Utf8Value());
  if (o.Get("tokenizerFrom").IsString()) sp.tokenizer_from = o.Get("tokenizerFrom").As<Napi::String>().Utf8Value();
  if (!o.Get("ropeBase").IsUndefined()) sp.rope_base = static_cast<float>(number_value(env, o.Get("ropeBase"), "writeRandomLlama: spec.ropeBase"));
  sp.unit_norms = o.Get("unitNorms").ToBoolean().Value();
  auto* w = new RandomModelWorker(env, path, sp);
  auto p = w->Promise();
  w->Queue();
  return p;
}

// hookPoints(): the engine's hook-point table [{name, perLayer}], in forward order.
Napi::Value HookPoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& t = lro::hook_points();
  auto a = Napi::Array::New(env, t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", t[i].name);
    o.Set("perLayer", t[i].per_layer);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), lro::cpu_features()); }
// machineLimits(threads, triadMiB) -> { triadGBps, fmaGflops, int8Gops, bf16Gflops, threads }: the
// bench's ceilings (int8 / bf16: 0 where the kernels have no such dot product).
Napi::Value MachineLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t threads = int_arg(info, 0, "machineLimits: threads", 0, 1024);
  const int64_t mib = int_arg(info, 1, "machineLimits: triadMiB", 1, 16384);
  lro::ThreadPool pool(static_cast<int>(threads));
  Napi::Object o = Napi::Object::New(env);
  o.Set("triadGBps", lro::measure_triad_gbps(pool, static_cast<size_t>(mib) << 20, 5));
  o.Set("fmaGflops", lro::measure_fma_gflops(pool, 5));
  o.Set("int8Gops", lro::measure_int8_gops(pool, 5));
  o.Set("bf16Gflops", lro::measure_bf16_gflops(pool, 5));
  o.Set("threads", pool.size());
  return o;
}

Napi::Value PhysicalCores(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), lro::ThreadPool::physical_cores()); }

void register_functions(Napi::Env env, Napi::Object exports) {
  exports.Set("logitStats", Napi::Function::New(env, LogitStatsFn));
  exports.Set("vectorStats", Napi::Function::New(env, VectorStatsFn));
  exports.Set("addScaledNoise", Napi::Function::New(env, AddScaledNoise));
  exports.Set("meanRows", Napi::Function::New(env, MeanRows));
  exports.Set("ridgeClassify", Napi::Function::New(env, RidgeClassify));
  exports.Set("hookPoints", Napi::Function::New(env, HookPoints));
  exports.Set("quantize", Napi::Function::New(env, Quantize));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize));
  exports.Set("writeGguf", Napi::Function::New(env, WriteGguf));
  exports.Set("sampleToken", Napi::Function::New(env, SampleToken));
  exports.Set("writeRandomLlama", Napi::Function::New(env, WriteRandomLlama));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("physicalCores", Napi::Function::New(env, PhysicalCores));
  exports.Set("machineLimits", Napi::Function::New(env, MachineLimits));
}

}  // namespace lro_napi
