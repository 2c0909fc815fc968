// A LoRA adapter in llama.cpp's GGUF format (general.type "adapter", adapter.type "lora",
// adapter.lora.alpha; tensors <base weight>.lora_a ne [n_in, r] and .lora_b ne [r, n_out]),
// applied at run time unmerged: y = W x + scale * (alpha / r) * B (A x).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "core/gguf.h"
#include "model/llama_model.h"

namespace lro {

struct LoraPair {
  Weight a;  // r rows of n_in
  Weight b;  // n_out rows of r
  int64_t rank = 0;
};

class LoraAdapter {
 public:
  // Checks every pair against the model's weight shapes; throws GgufError naming the tensor.
  static std::shared_ptr<LoraAdapter> load(const std::string& path, const LlamaModel& model);
  float alpha() const { return alpha_; }
  const std::string& path() const { return file_->path(); }
  // nullptr when the adapter does not touch that base weight.
  const LoraPair* find(const std::string& weight_name) const;
  const std::map<std::string, LoraPair>& pairs() const { return pairs_; }

 private:
  std::unique_ptr<GgufFile> file_;
  float alpha_ = 0;
  std::map<std::string, LoraPair> pairs_;
};

}  // namespace lro
