// LoRA adapters between PEFT folders (adapter_config.json + adapter_model.safetensors; lora_A
// [r, in], lora_B [out, r], scale alpha/r or alpha/sqrt(r) with rsLoRA) and llama.cpp's GGUF
// adapter format (general.type "adapter", adapter.lora.alpha, <weight>.lora_a ne [in, r] and
// .lora_b ne [r, out], scale alpha/r). lora_B of q/k gets the same row permutation as the base
// weights (and loses it on the way back). rsLoRA has no GGUF flag: its scale is folded into
// alpha (alpha * sqrt(r)), and the original alpha is kept under lro.adapter.* for the way back.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "convert/common.h"

namespace lro {
namespace convert {

struct AdapterConvertOptions {
  // Base model, for the head counts the Q/K permutation needs: a config.json, a folder holding
  // config.json / base_config.json, or a model GGUF. "" -> look next to the adapter (the folder
  // named by base_model_name_or_path), or the head counts a GGUF adapter written here records.
  std::string base_config;
  std::string type = "f32";  // GGUF tensor type when writing GGUF: f32 | f16 | bf16 | q8_0
  std::string name;          // general.name; "" -> from the adapter folder / file name
  ProgressFn progress;
};

struct AdapterConvertSummary {
  std::string direction;     // "peft->gguf" | "gguf->peft"
  std::string out;
  int64_t rank = 0;          // largest rank (PEFT rank_pattern may vary it)
  double alpha = 0;          // PEFT lora_alpha
  double gguf_alpha = 0;     // adapter.lora.alpha
  bool rslora = false;
  int64_t n_pairs = 0;
  int64_t n_permuted = 0;    // q/k lora_B tensors permuted (or unpermuted)
  std::vector<std::string> targets;  // PEFT module names (q_proj, ...)
  std::string base_config;   // what supplied the head counts ("" if not needed)
  std::vector<std::string> warnings;
};

// Direction from the input: a folder or .safetensors file is PEFT (output: a .gguf file); a
// .gguf file is GGUF (output: a folder, created if needed).
AdapterConvertSummary convert_adapter(const std::string& in, const std::string& out, const AdapterConvertOptions& opt);

// A GGUF adapter to load: path itself when it is a .gguf, else the PEFT folder or
// adapter_model.safetensors converted (q/k lora_B rows in the base GGUF model's order, rsLoRA
// folded into alpha, f32) into a temporary GGUF removed with this object. base_model: the GGUF
// model the adapter is for (its head counts).
class AdapterAsGguf {
 public:
  AdapterAsGguf(const std::string& path, const std::string& base_model);
  ~AdapterAsGguf();
  AdapterAsGguf(const AdapterAsGguf&) = delete;
  AdapterAsGguf& operator=(const AdapterAsGguf&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_, temp_;
};

}  // namespace convert
}  // namespace lro
