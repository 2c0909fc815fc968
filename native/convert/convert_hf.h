// Hugging Face Llama folder -> GGUF, laid out as llama.cpp's convert_hf_to_gguf.py writes it
// (same metadata keys and order, tensor names and order, Q/K row permutation, llama3 rope_freqs,
// 1-D tensors kept F32). CODI checkpoints (PEFT-wrapped Llama under "codi." plus the projection
// "prj.") get their LoRA merged into the base weights and the projection written to a latent-head
// sidecar GGUF (format in latent_head.h).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "convert/common.h"

namespace lro {
namespace convert {

struct HfConvertOptions {
  std::string type = "f32";      // f32 | f16 | bf16 | q8_0
  std::string latent;            // "" (auto: codi when the checkpoint has prj.*), "codi", "coconut", "none"
  double lora_alpha = std::numeric_limits<double>::quiet_NaN();  // NaN: from README.json / adapter_config.json
  std::string latent_out;        // "" -> <out without .gguf>.latent.gguf
  int64_t latent_steps = -1;     // -1 -> README.json num_latent, else 6
  std::string weights;           // "" -> pick as llama.cpp does; else a file in (or path outside) the folder
  std::string tokenizer_dir;     // "" -> the model folder
  std::string name;              // general.name; "" -> from the folder name
  std::string pad_names = "auto";  // auto | codi | llama (naming of embedding rows past the tokenizer)
  std::string pre;               // tokenizer.ggml.pre override; "" -> detect
  bool vocab_only = false;       // tokenizer metadata (and llama.* keys when a config exists), no tensors
  // LoRA checkpoints (CODI): write the base unmerged and the LoRA as a llama.cpp GGUF adapter at
  // lora_out ("" -> <out without .gguf>.lora.gguf), so that training can start from it.
  bool no_merge = false;
  std::string lora_out;
  int threads = 0;               // LoRA merge threads; 0 -> hardware concurrency
  ProgressFn progress;
};

struct HfConvertSummary {
  std::string out;
  bool vocab_only = false;
  std::string latent_out;        // "" when no sidecar was written
  std::string latent_mode;       // "" | codi | coconut
  std::string type;
  std::string source_format;     // safetensors | pytorch; "" when no weights were read (vocab-only)
  std::vector<std::string> source_files;
  std::string config_file;       // "" when a vocab-only conversion had no config
  int64_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t bytes = 0;
  int64_t n_vocab = 0, tokenizer_size = 0;
  int64_t n_layer = 0, n_embd = 0;
  bool tied = false;
  bool codi = false;
  int64_t lora_merged = 0;       // matrices that received a merged LoRA delta
  std::string lora_out;          // no_merge: the adapter written ("" when the checkpoint has no LoRA)
  int64_t lora_rank = 0;
  double lora_alpha = 0;
  std::string lora_alpha_source; // option | README.json | adapter_config.json
  bool rslora = false;
  int32_t bot_id = -1, eot_id = -1, pad_id = -1;
  int64_t latent_steps = 0;
  std::string pre;
  std::vector<std::string> warnings;
};

HfConvertSummary convert_hf(const std::string& dir, const std::string& out, const HfConvertOptions& opt);

}  // namespace convert
}  // namespace lro
