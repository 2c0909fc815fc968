// GGUF v2/v3 reader (memory-mapped or copied into huge pages, validated) and writer.
// Every parse is bounds-checked; a malformed file throws GgufError naming the field and offset.
#pragma once
#include "core/debug.h"
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ggml_types.h"

namespace lro {

class GgufError : public std::runtime_error {
 public:
  // With LRO_DEBUG the message also carries the native stack where it was thrown.
  explicit GgufError(const std::string& message) : std::runtime_error(with_native_stack(message)) {}
};

enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Arrays hold their element type and elements (nested arrays allowed).
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  union {
    uint64_t u64;
    int64_t i64;
    double f64;
    bool b;
  } num{};
  std::string str;                 // STRING
  GgufValueType elem_type = GgufValueType::U8;  // ARRAY
  std::vector<GgufValue> arr;      // ARRAY

  bool is_integer() const;
  bool is_float() const;
  int64_t as_int(const std::string& key) const;     // throws GgufError if not an integer type
  double as_float(const std::string& key) const;    // integer or float
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const std::vector<GgufValue>& as_array(const std::string& key) const;
};

struct GgufTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous (row) dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;           // relative to the data section
  const uint8_t* data = nullptr; // into the mapping
  size_t nbytes = 0;
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
};

// Where an opened file's bytes live.
//   Mapped: a shared read-only mapping of the file (its page cache pages, shared between processes).
//   Copy: a private read-only copy advised for transparent huge pages (2 MB pages). On a VM, a
//     4 KB page not touched for ~0.3 s cost ~200 ns on its next touch, which halved the bandwidth of
//     a pass over idle weights (the output head after each prefill); measured in README.md, "Where
//     the weights live".
//   Borrowed: from_memory's caller-owned buffer.
enum class GgufMemory { Mapped, Copy, Borrowed };
const char* gguf_memory_name(GgufMemory m);

class GgufFile {
 public:
  // Reads and validates the whole file. Throws GgufError("<path>: <field> at offset N: ...").
  // The environment variable LRO_WEIGHT_MEMORY picks how the bytes are held: "mapped", "copy", or
  // "auto" (unset): a copy when the file is at least kCopyMinBytes, the kernel offers transparent
  // huge pages (enabled: always or madvise) and the file is at most half of MemAvailable; else mapped.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  static constexpr size_t kCopyMinBytes = size_t(64) << 20;
  // Parses an in-memory buffer (not copied; must outlive the object). For tests/fuzzing.
  static std::unique_ptr<GgufFile> from_memory(const uint8_t* data, size_t size, const std::string& label);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  GgufMemory memory() const { return memory_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  // Where a tensor's data starts in the file (bytes from its beginning).
  size_t file_offset(const GgufTensorInfo& t) const { return static_cast<size_t>(t.data - base_); }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;        // nullptr if absent
  const GgufValue& get(const std::string& key) const;         // throws naming the key if absent
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent

 private:
  GgufFile() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  GgufMemory memory_ = GgufMemory::Borrowed;
  void* mapping_ = nullptr;  // what the destructor unmaps (Mapped, Copy)
  size_t mapping_size_ = 0;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3, atomically (path + ".tmp", then rename). Tensor bytes are either given up front
// (add_tensor with bytes) or produced one tensor at a time while writing (add_tensor_info + a
// Producer), so converting a multi-GB model holds one tensor in memory.
class GgufWriter {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_value(const std::string& key, const GgufValue& v);  // any type incl. arrays
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);

  // ne in ggml order (ne[0] contiguous). Returns the tensor's index (its order in the file).
  size_t add_tensor_info(const std::string& name, GgmlType type, const std::vector<int64_t>& ne);
  // The same with its bytes (row_size(type, ne[0]) * rows of them).
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne, std::vector<uint8_t> bytes);

  size_t n_tensors() const { return tensors_.size(); }
  const std::string& tensor_name(size_t i) const { return tensors_[i].name; }
  GgmlType tensor_type(size_t i) const { return tensors_[i].type; }
  const std::vector<int64_t>& tensor_ne(size_t i) const { return tensors_[i].ne; }
  size_t tensor_bytes(size_t i) const;

  // produce(i, bytes) fills bytes with exactly tensor_bytes(i) bytes of tensor i; progress(i, n, name)
  // is called before each tensor. Tensors added with their bytes need no producer. Returns the size.
  using Producer = std::function<void(size_t index, std::vector<uint8_t>& bytes)>;
  using Progress = std::function<void(size_t index, size_t count, const std::string& name)>;
  uint64_t write(const std::string& path, const Producer& produce = nullptr, const Progress& progress = nullptr,
                 size_t alignment = 32) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;  // empty when produced while writing
    bool has_bytes = false;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace lro
