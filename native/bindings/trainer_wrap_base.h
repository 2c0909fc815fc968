// What the addon's two trainer classes share (NativeTrainer, NativeLatentTrainer): the owned
// trainer, the busy flag of a running step, a dispose that waits for that step, and the checkpoint
// and data-position methods, with the same guards and messages on both.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "bindings/common.h"

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

  // The methods every trainer class has, added to its own for DefineClass.
  static Methods with_common_methods(Methods own) {
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("saveCheckpoint", &Base::SaveCheckpoint));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("loadCheckpoint", &Base::LoadCheckpoint));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("setDataPosition", &Base::SetDataPosition));
    own.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("dispose", &Base::Dispose));
    return own;
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

}  // namespace lro_napi
