#include "model/qk_order.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace lro {

void permute_qk_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_heads, bool inverse) {
  if (n_heads <= 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0)
    throw std::invalid_argument("Q/K permutation: " + std::to_string(rows) + " rows do not split into " + std::to_string(n_heads) +
                       " heads of even size");
  if (static_cast<int64_t>(w.size()) != rows * cols) throw std::invalid_argument("Q/K permutation: size mismatch");
  const int64_t hd = rows / n_heads, half = hd / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        int64_t hf_row = h * hd + s * half + j;  // [first half | second half]
        int64_t gg_row = h * hd + 2 * j + s;     // interleaved pairs
        int64_t from = inverse ? gg_row : hf_row, to = inverse ? hf_row : gg_row;
        std::memcpy(&out[static_cast<size_t>(to * cols)], &w[static_cast<size_t>(from * cols)], static_cast<size_t>(cols) * sizeof(float));
      }
  w.swap(out);
}

}  // namespace lro
