// Hugging Face Llama tensor names <-> GGUF names, the rotate-half -> adjacent-pair row permutation
// of Q/K (llama.cpp's LlamaModel.permute), and the small naming helpers llama.cpp's converter uses
// for general.name / general.size_label.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lro {
namespace convert {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" if the name is not a
// Llama weight. `layer` gets the block index (-1 for global tensors).
std::string hf_to_gguf_name(const std::string& hf, int* layer = nullptr);
// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; "" if unknown.
std::string gguf_to_hf_name(const std::string& gguf);

// Rows of a [rows, cols] row-major matrix: HF keeps each head's rotary pairs as (x[j], x[j+d/2]),
// llama.cpp as (x[2j], x[2j+1]). inverse=true undoes it. rows must be n_heads * even head size.
void permute_qk_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_heads, bool inverse);

// "tiny-llama3" -> "Tiny Llama3" (Metadata.id_to_title).
std::string id_to_title(const std::string& id);
// 3660832 -> "3.7M" (gguf.size_label for dense models).
std::string size_label(uint64_t n_params);

}  // namespace convert
}  // namespace lro
