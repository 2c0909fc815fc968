// The one fact where Hugging Face and GGUF Llama weights differ in layout: the order of Q/K rows.
// HF keeps each head's rotary pairs as (x[j], x[j+d/2]), llama.cpp as (x[2j], x[2j+1]).
#pragma once
#include <cstdint>
#include <vector>

namespace lro {

// Rows of a [rows, cols] row-major matrix from HF's order to GGUF's; inverse=true undoes it. rows
// must be n_heads * an even head size (std::invalid_argument otherwise).
void permute_qk_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_heads, bool inverse);

}  // namespace lro
