#include "convert/gguf_stream.h"

namespace lro {
namespace convert {

size_t GgufStreamWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne) {
  try {
    return add_tensor_info(name, type, ne);
  } catch (const GgufError& e) {
    throw ConvertError(e.what());
  }
}

uint64_t GgufStreamWriter::write(const std::string& path, const Producer& produce, const ProgressFn& progress) const {
  Progress p;
  if (progress)
    p = [&](size_t i, size_t n, const std::string& name) {
      progress("write", static_cast<int64_t>(i), static_cast<int64_t>(n), name);
    };
  try {
    return GgufWriter::write(path, produce, p);
  } catch (const GgufError& e) {
    throw ConvertError(e.what());
  }
}

}  // namespace convert
}  // namespace lro
