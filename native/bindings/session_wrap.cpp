// NativeSession: the batched forward pass with captures and edits, KV-cache sequences, adapters.
#include "bindings/common.h"
#include "bindings/adapter_wrap.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

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
  const lro::HookPointInfo* found = nullptr;
  std::string names = "embed";
  for (const auto& h : lro::hook_points()) {
    names += std::string(", ") + h.name;
    if (h.per_layer && p == h.name) found = &h;
  }
  if (!found) throw std::invalid_argument("unknown capture point '" + p + "' (expected " + names + ")");
  const lro::HookPoint hp = found->point;
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
  auto* mw = unwrap_as<ModelWrap>(env, info[0], "NativeModel", "new NativeSession: model");
  if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
  auto o = info[1].As<Napi::Object>();
  lro::SessionOptions so;
  so.n_ctx = int_value(env, o.Get("nCtx"), "new NativeSession: options.nCtx", 1, kMaxI32);
  const std::string kv = o.Get("kvType").IsUndefined() ? "f32" : (o.Get("kvType").IsString() ? o.Get("kvType").As<Napi::String>().Utf8Value() : "");
  if (kv != "f32" && kv != "f16") throw Napi::TypeError::New(env, "new NativeSession: options.kvType must be 'f32' or 'f16'");
  so.kv_f16 = kv == "f16";
  so.threads = static_cast<int>(int_value(env, o.Get("threads"), "new NativeSession: options.threads", 0, 1024));
  session = std::make_unique<lro::Session>(mw->model, so);
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
      // Result buffers from the pool (see FloatBufferPool): a decode loop then reuses the pages of
      // the results JS has collected instead of faulting in new ones every token.
      auto& pool = FloatBufferPool::shared();
      const auto& hp = owner_->session->model().hparams();
      captured.resize(captures.size());
      for (auto& c : captured) c = pool.take(rows.size() * static_cast<size_t>(hp.n_embd));
      lro::EvalResult storage;
      if (batch.want_logits) storage.logits = pool.take(rows.size() * static_cast<size_t>(hp.n_vocab));
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
      result = owner_->session->eval(batch, &owner_->cancel, std::move(storage));
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
    if (batch.want_logits) o.Set("logits", to_f32(env, std::move(result.logits)));
    if (batch.want_final_norm) o.Set("finalNorm", to_f32(env, std::move(result.final_norm)));
    auto caps = Napi::Object::New(env);
    for (size_t c = 0; c < captures.size(); ++c) caps.Set(captures[c].name, to_f32(env, std::move(captured[c])));
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


// eval({tokens?: Int32Array, embeddings?: Float32Array, pos: Int32Array, seq: Int32Array,
//       outputRows: Int32Array, logits: boolean, finalNorm: boolean, capture: string[], recycle?: Float32Array[],
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
      for (uint32_t i = 0; i < a.Length(); ++i) {
        if (!a.Get(i).IsString()) type_error(env, "eval: capture[" + std::to_string(i) + "]", "a hook point name");
        w->captures.push_back(parse_capture(a.Get(i).As<Napi::String>().Utf8Value(), hp.n_layer));
      }
    }
    Napi::Value ed = req.Get("edits");
    if (ed.IsArray()) {
      auto a = ed.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        const std::string where = "eval: edits[" + std::to_string(i) + "]";
        if (!a.Get(i).IsObject()) type_error(env, where, "an object");
        auto eo = a.Get(i).As<Napi::Object>();
        if (!eo.Get("point").IsString() || !eo.Get("mode").IsString()) type_error(env, where + ".point and .mode", "strings");
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
        e.row = int_value(env, eo.Get("row"), where + ".row", 0, kMaxI32);
        Napi::Value sc = eo.Get("scale");
        if (!sc.IsUndefined()) e.scale = number_value(env, sc, where + ".scale");
        if (e.mode == EditSpec::NOISE) {
          e.seed = static_cast<uint64_t>(int_value(env, eo.Get("seed"), where + ".seed", 0, kMaxSafeInt));
        } else {
          e.vec = copy_typed<float, Napi::Float32Array>(eo.Get("vector"), "edits.vector");
          if (static_cast<int64_t>(e.vec.size()) != hp.n_embd)
            throw std::invalid_argument("eval: edit vector must have the model width " + std::to_string(hp.n_embd));
        }
        if (e.row < 0 || e.row >= static_cast<int64_t>(n)) throw std::invalid_argument("eval: edit row outside the batch");
        w->edits.push_back(std::move(e));
      }
    }
    recycle_arrays(env, req.Get("recycle"), "eval: recycle");  // last: a refused eval detaches nothing
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
  auto i32 = [&](size_t i, const char* what) { return static_cast<int32_t>(int_arg(info, i, what, -kMaxI32, kMaxI32)); };
  s.seq_copy(i32(0, "seqCopy: src"), i32(1, "seqCopy: dst"), i32(2, "seqCopy: p0"), i32(3, "seqCopy: p1"));
  return info.Env().Undefined();
}

Napi::Value SessionWrap::SeqRemove(const Napi::CallbackInfo& info) {
  auto& s = get(info.Env());
  auto i32 = [&](size_t i, const char* what) { return static_cast<int32_t>(int_arg(info, i, what, -kMaxI32, kMaxI32)); };
  s.seq_remove(i32(0, "seqRemove: seq"), i32(1, "seqRemove: p0"), i32(2, "seqRemove: p1"));
  return info.Env().Undefined();
}

Napi::Value SessionWrap::SeqPosMax(const Napi::CallbackInfo& info) {
  if (!session) throw Napi::Error::New(info.Env(), "session has been disposed");
  return Napi::Number::New(info.Env(), session->seq_pos_max(static_cast<int32_t>(int_arg(info, 0, "seqPosMax: seq", -kMaxI32, kMaxI32))));
}

Napi::Value SessionWrap::Threads(const Napi::CallbackInfo& info) {
  if (!session) throw Napi::Error::New(info.Env(), "session has been disposed");
  return Napi::Number::New(info.Env(), session->threads());
}

// setAdapters([{adapter, scale}])
Napi::Value SessionWrap::SetAdapters(const Napi::CallbackInfo& info) {
  auto& s = get(info.Env());
  std::vector<std::pair<std::shared_ptr<const lro::LoraAdapter>, float>> list;
  if (info.Length() < 1 || !info[0].IsArray()) type_error(info.Env(), "setAdapters: adapters", "an array of {adapter, scale}");
  auto a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    if (!a.Get(i).IsObject()) type_error(info.Env(), "setAdapters: adapters[" + std::to_string(i) + "]", "an object");
    auto o = a.Get(i).As<Napi::Object>();
    auto* aw = unwrap_as<AdapterWrap>(info.Env(), o.Get("adapter"), "NativeAdapter", "setAdapters: adapters[" + std::to_string(i) + "].adapter");
    if (!aw->adapter) throw Napi::Error::New(info.Env(), "setAdapters: adapters[" + std::to_string(i) + "].adapter holds no adapter");
    list.push_back({aw->adapter, static_cast<float>(number_value(info.Env(), o.Get("scale"), "setAdapters: adapters[" + std::to_string(i) + "].scale"))});
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

void register_session(Napi::Env env, Napi::Object exports) { SessionWrap::Init(env, exports); }

}  // namespace lro_napi
