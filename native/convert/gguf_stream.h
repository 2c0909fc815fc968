// GGUF v3 writer that streams tensor data: the header (metadata and tensor infos) is written
// first and each tensor's bytes are produced on demand, so converting a multi-GB model needs one
// tensor in memory at a time (GgufWriter keeps them all).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "convert/common.h"
#include "gguf.h"

namespace lro {
namespace convert {

class GgufStreamWriter {
 public:
  void set_value(const std::string& key, const GgufValue& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // ne in ggml order; returns the tensor's index (the order in the file).
  size_t add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne);
  size_t n_tensors() const { return tensors_.size(); }
  const std::string& tensor_name(size_t i) const { return tensors_[i].name; }
  GgmlType tensor_type(size_t i) const { return tensors_[i].type; }
  const std::vector<int64_t>& tensor_ne(size_t i) const { return tensors_[i].ne; }
  size_t tensor_bytes(size_t i) const;

  // Writes path + ".tmp", calling produce(i, bytes) for each tensor in order (bytes must come back
  // with exactly tensor_bytes(i) bytes), then renames. Returns the file size.
  using Producer = std::function<void(size_t index, std::vector<uint8_t>& bytes)>;
  uint64_t write(const std::string& path, const Producer& produce, const ProgressFn& progress = nullptr) const;

 private:
  struct Info {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Info> tensors_;
};

}  // namespace convert
}  // namespace lro
