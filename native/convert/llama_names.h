// Hugging Face Llama tensor names <-> GGUF names, the rotate-half -> adjacent-pair row permutation
// of Q/K (llama.cpp's LlamaModel.permute), and the small naming helpers llama.cpp's converter uses
// for general.name / general.size_label.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/qk_order.h"

namespace lro {
namespace convert {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" if the name is not a
// Llama weight. `layer` gets the block index (-1 for global tensors).
std::string hf_to_gguf_name(const std::string& hf, int* layer = nullptr);
// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; "" if unknown.
std::string gguf_to_hf_name(const std::string& gguf);

// The Q/K row permutation lives with the model (model/qk_order.h); the converters use it as their own.
using lro::permute_qk_rows;

// "tiny-llama3" -> "Tiny Llama3" (Metadata.id_to_title).
std::string id_to_title(const std::string& id);
// 3660832 -> "3.7M" (gguf.size_label for dense models).
std::string size_label(uint64_t n_params);

}  // namespace convert
}  // namespace lro
