// Shared pieces of the Hugging Face → GGUF converter: the error type, read-only file mappings,
// progress reporting, and little-endian helpers. Nothing here runs code from the files it reads.
#pragma once
#include "core/debug.h"
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lro {
namespace convert {

// Every reader throws this with a message that names the file and the field at fault.
class ConvertError : public std::runtime_error {
 public:
  // With LRO_DEBUG the message also carries the native stack where it was thrown.
  explicit ConvertError(const std::string& message) : std::runtime_error(with_native_stack(message)) {}
};

// A whole file mapped read-only (empty files give size 0 and a null pointer).
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Called from the converting thread: stage ("read", "tensor", "write", ...), done of total units,
// and the item being worked on. Must not throw.
using ProgressFn = std::function<void(const std::string& stage, int64_t done, int64_t total, const std::string& item)>;

std::string read_text_file(const std::string& path);
// Writes path through path.tmp and a rename; write returns false when a write failed.
void write_file_atomically(const std::string& path, const std::function<bool(FILE*)>& write);
void write_text_file(const std::string& path, const std::string& text);  // atomic (tmp + rename)
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
std::vector<std::string> list_directory(const std::string& dir);  // names only, sorted
std::string path_join(const std::string& a, const std::string& b);
std::string path_basename(const std::string& p);  // last component, trailing slashes ignored
std::string path_dirname(const std::string& p);
void make_directories(const std::string& dir);

template <typename T>
inline T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// a * b, throwing when the product overflows int64 (shapes from untrusted headers).
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);

}  // namespace convert
}  // namespace lro
