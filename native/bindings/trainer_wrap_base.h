// What the addon's two trainer classes share (NativeTrainer, NativeLatentTrainer): the owned
// trainer, the busy flag of a running step, a dispose that waits for that step, and the checkpoint
// and data-position methods, with the same guards and messages on both.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "bindings/model_wrap.h"

namespace lro_napi {

template <class Derived, class Trainer>
class TrainerWrapBase : public Napi::ObjectWrap<Derived> {
 public:
  // what: the class in messages ("trainer", "latent trainer").
  TrainerWrapBase(const Napi::CallbackInfo& info, const char* what) : Napi::ObjectWrap<Derived>(info), what_(what) {}

  std::unique_ptr<Trainer> trainer;
  std::atomic<bool> busy{false};
  bool dispose_pending = false;

  Trainer& get(const Napi::Env& env) {
    if (!trainer) throw Napi::Error::New(env, what_ + " has been disposed");
    if (busy) throw Napi::Error::New(env, what_ + " is busy with a step; await it first");
    return *trainer;
  }
  // A step's worker is done: a dispose asked while it ran happens now.
  void step_done() {
    busy = false;
    if (dispose_pending) trainer.reset();
  }

 protected:
  using Base = TrainerWrapBase<Derived, Trainer>;
  using Methods = std::vector<typename Napi::ObjectWrap<Derived>::PropertyDescriptor>;

  // Defines the JS class `name` with its own methods and the common ones, and exports it.
  static void define(Napi::Env env, Napi::Object exports, const char* name, Methods own) {
    Napi::Function f = Napi::ObjectWrap<Derived>::DefineClass(env, name, with_common_methods(std::move(own)));
    register_class(env, f);
    exports.Set(name, f);
  }
  static Methods with_common_methods(Methods own) {
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("saveCheckpoint", &Base::SaveCheckpoint));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("loadCheckpoint", &Base::LoadCheckpoint));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("setDataPosition", &Base::SetDataPosition));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("dispose", &Base::Dispose));
    return own;
  }
  // step(examples, microBatches?) (eval_only false) or the losses without gradients (true): the
  // examples parsed by parse, then the work queued on a Worker; the promise settles when it ends.
  template <class Worker, class Parse>
  Napi::Value queue_call(const Napi::CallbackInfo& info, bool eval_only, Parse parse) {
    Napi::Env env = info.Env();
    get(env);
    return queue_worker(env, new Worker(env, static_cast<Derived*>(this)), busy, [&](Worker& w) {
      auto examples = parse(info.Length() > 0 ? info[0] : env.Undefined());
      w.eval_only = eval_only;
      if (eval_only) w.micro_batches.push_back(std::move(examples));
      else w.micro_batches = micro_batches(info.Length() > 1 ? info[1] : env.Undefined(), std::move(examples), what_);
    });
  }
  // info()'s common fields (readable while a step runs): step, data position, threads.
  Napi::Object info_object(const Napi::Env& env) const {
    const Trainer& t = peek(env);
    auto o = Napi::Object::New(env);
    o.Set("step", static_cast<double>(t.step_count()));
    o.Set("dataPosition", static_cast<double>(t.data_position()));
    o.Set("threads", t.threads());
    return o;
  }
  // The constructor's first argument, a NativeModel that is not disposed.
  static ModelWrap& model_arg(const Napi::CallbackInfo& info, const std::string& usage, const std::string& cls) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, usage);
    auto* mw = unwrap_as<ModelWrap>(env, info[0], "NativeModel", "new " + cls + ": model");
    if (!mw || !mw->model) throw Napi::Error::New(env, "model has been disposed");
    return *mw;
  }
  // For info(): the trainer even while a step runs, or the disposed error.
  Trainer& peek(const Napi::Env& env) const {
    if (!trainer) throw Napi::Error::New(env, what_ + " has been disposed");
    return *trainer;
  }

 private:
  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info) {
    get(info.Env()).save_checkpoint(string_arg(info, 0, "saveCheckpoint: path"));
    return info.Env().Undefined();
  }
  Napi::Value LoadCheckpoint(const Napi::CallbackInfo& info) {
    get(info.Env()).load_checkpoint(string_arg(info, 0, "loadCheckpoint: path"));
    return info.Env().Undefined();
  }
  Napi::Value SetDataPosition(const Napi::CallbackInfo& info) {
    get(info.Env()).set_data_position(int_arg(info, 0, "setDataPosition: position", 0, kMaxSafeInt));
    return info.Env().Undefined();
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy) dispose_pending = true;
    else trainer.reset();
    return info.Env().Undefined();
  }

  std::string what_;
};

// The async worker of one trainer call (a step, or losses without gradients): keeps its owner
// alive, runs the work off the JS thread, then frees the busy flag and settles the promise with
// what result() makes of it.
template <class Owner>
class TrainerWorker : public Napi::AsyncWorker {
 public:
  TrainerWorker(Napi::Env env, Owner* owner) : Napi::AsyncWorker(env), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_->Ref();
  }
  ~TrainerWorker() override { owner_->Unref(); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void run() = 0;                         // on the worker thread
  virtual Napi::Value result(Napi::Env env) = 0;  // on the JS thread
  Owner* owner_;

 private:
  void Execute() override {
    try {
      run();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    owner_->step_done();
    deferred_.Resolve(result(Env()));
  }
  void OnError(const Napi::Error& e) override {
    owner_->step_done();
    deferred_.Reject(e.Value());
  }
  Napi::Promise::Deferred deferred_;
};

// The fields every step result reports, on o.
template <class StepResult>
void set_step_fields(Napi::Object& o, const StepResult& r) {
  o.Set("loss", r.loss);
  o.Set("gradNorm", r.grad_norm);
  o.Set("clipCoef", r.clip_coef);
  o.Set("lr", r.lr);
  o.Set("tokens", static_cast<double>(r.tokens));
  o.Set("step", static_cast<double>(r.step));
}

}  // namespace lro_napi
