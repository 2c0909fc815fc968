// safetensors reader (validated header, mapped data) and writer (the layout the Python library
// writes: 8-byte header length, compact JSON header padded with spaces to 8 bytes, tensors sorted
// by dtype then name), so adapters written here are byte-identical to PEFT's own files.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "convert/common.h"
#include "convert/tensor_ref.h"

namespace lro {
namespace convert {

class SafetensorsFile {
 public:
  // Throws ConvertError("<path>: header ...") for a short file, a bad header length, invalid JSON,
  // an unknown dtype, offsets that are not contiguous or leave the file, or a shape that does not
  // match its byte length.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  static std::shared_ptr<SafetensorsFile> from_mapping(std::shared_ptr<MappedFile> file);
  const std::string& path() const { return file_->path(); }
  const std::vector<TensorRef>& tensors() const { return tensors_; }  // header order
  const TensorRef* find(const std::string& name) const;
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorRef> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

struct SafetensorsOut {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // numpy order
  std::vector<uint8_t> bytes;  // row-major, little-endian
};

void write_safetensors(const std::string& path, std::vector<SafetensorsOut> tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata);

}  // namespace convert
}  // namespace lro
