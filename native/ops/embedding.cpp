// embedding: the table lookup (any GGUF type), then the scatter-add of its backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "quant/quants.h"
#include "core/thread_pool.h"
#include "core/vec_ops.h"

namespace lro {

void embedding_forward(float* out, const int32_t* ids, int64_t n, GgmlType type, const void* table, int64_t d) {
  size_t rs = row_size(type, d);
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(type, static_cast<const uint8_t*>(table) + rs * static_cast<size_t>(ids[t]), out + t * d, d);
}

// embedding: dtable[vocab, d] += dout[n, d] at rows ids[t]
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t d) {
  for (int64_t t = 0; t < n; ++t) axpy_f32(dtable + static_cast<int64_t>(ids[t]) * d, 1.0f, dout + t * d, d);
}

}  // namespace lro
