// Reader for the uncompressed ("stored") zip archives that torch.save writes, including zip64
// records. Every offset and size from the archive is checked against the file before use.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convert/common.h"

namespace lro {
namespace convert {

struct ZipEntry {
  std::string name;
  uint64_t size = 0;         // uncompressed = stored size
  uint32_t crc32 = 0;
  uint16_t method = 0;       // 0 stored, 8 deflate, ...
  uint16_t flags = 0;
  uint64_t local_offset = 0;
  const uint8_t* data = nullptr;  // set for stored entries after the local header was checked
};

class ZipReader {
 public:
  // Throws ConvertError("<path>: zip ...: ...") for a truncated archive, a missing or inconsistent
  // central directory, encrypted or compressed entries, or entries that leave the file.
  static std::unique_ptr<ZipReader> open(const std::string& path);
  static std::unique_ptr<ZipReader> from_mapping(std::shared_ptr<MappedFile> file);
  const std::string& path() const { return file_->path(); }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;
  // Checks the CRC-32 of an entry; throws naming the entry on mismatch.
  void verify_crc(const ZipEntry& e) const;
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<ZipEntry> entries_;
};

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace convert
}  // namespace lro
