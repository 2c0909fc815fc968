// The converter's GGUF writer: lro::GgufWriter (which streams tensors one at a time through a
// producer) with the converter's progress callback and error type.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "convert/common.h"
#include "core/gguf.h"

namespace lro {
namespace convert {

class GgufStreamWriter : public GgufWriter {
 public:
  using GgufWriter::add_tensor;
  // ne in ggml order; returns the tensor's index (its order in the file). Bytes come from write's producer.
  size_t add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne);
  uint64_t write(const std::string& path, const Producer& produce, const ProgressFn& progress = nullptr) const;
};

}  // namespace convert
}  // namespace lro
