// GGUF Llama -> Hugging Face folder, the way back of convert_hf: config.json, model.safetensors
// (f32, q/k rows in HF's rotate-half order, HF names), tokenizer.json / tokenizer_config.json from
// the GGUF's byte-level BPE, and for a latent model the CODI head as prj.* plus a README.json with
// its latent settings (which convert_hf reads back). transformers loads the folder as
// LlamaForCausalLM (prj.* is reported as an unused weight).
#pragma once
#include <string>
#include <vector>

namespace lro {
namespace convert {

struct HfExportOptions {
  std::string latent_head;  // "" -> <model without .gguf>.latent.gguf when it exists, else the model file's own head
};

struct HfExportSummary {
  std::string dir;
  std::vector<std::string> files;
  int64_t n_tensors = 0;
  std::string latent_mode;  // "" | codi | coconut
};

// Throws ConvertError naming what cannot be expressed (another tokenizer kind, rope scaling factors).
HfExportSummary export_hf(const std::string& model_path, const std::string& out_dir, const HfExportOptions& opt);

}  // namespace convert
}  // namespace lro
