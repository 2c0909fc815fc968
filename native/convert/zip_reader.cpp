#include "convert/zip_reader.h"

#include <map>

namespace lro {
namespace convert {

namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;

struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};

}  // namespace

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc) {
  static const CrcTables tab;
  const auto& t = tab.t;
  crc = ~crc;
  // Slicing by 8: multi-GB checkpoints are checked at memory speed rather than byte by byte.
  while (n >= 8) {
    uint32_t lo = load_le<uint32_t>(p) ^ crc;
    uint32_t hi = load_le<uint32_t>(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::unique_ptr<ZipReader> ZipReader::open(const std::string& path) { return from_mapping(MappedFile::open(path)); }

std::unique_ptr<ZipReader> ZipReader::from_mapping(std::shared_ptr<MappedFile> file) {
  const std::string& path = file->path();
  const uint8_t* base = file->data();
  const uint64_t size = file->size();
  auto fail = [&](const std::string& what) -> void { throw ConvertError(path + ": zip " + what); };

  if (size < 22) fail("end-of-central-directory record: the file has only " + std::to_string(size) + " bytes (truncated or not a zip)");
  // The EOCD record sits at the end, followed by a comment of at most 65535 bytes.
  uint64_t eocd = UINT64_MAX;
  uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t p = size - 22 + 1; p-- > lowest;) {
    if (load_le<uint32_t>(base + p) == kEocdSig && p + 22 + load_le<uint16_t>(base + p + 20) == size) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX)
    fail("end-of-central-directory record not found (truncated file, or not a torch.save zip checkpoint)");
  uint64_t n_entries = load_le<uint16_t>(base + eocd + 10);
  uint64_t cd_size = load_le<uint32_t>(base + eocd + 12);
  uint64_t cd_offset = load_le<uint32_t>(base + eocd + 16);
  if (load_le<uint16_t>(base + eocd + 4) != 0 || load_le<uint16_t>(base + eocd + 6) != 0)
    fail("end-of-central-directory: multi-disk archives are not supported");

  if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    if (eocd < 20 || load_le<uint32_t>(base + eocd - 20) != kZip64LocatorSig)
      fail("zip64 end-of-central-directory locator missing before the EOCD record at offset " + std::to_string(eocd));
    uint64_t z64 = load_le<uint64_t>(base + eocd - 20 + 8);
    if (z64 > size || size - z64 < 56 || load_le<uint32_t>(base + z64) != kZip64EocdSig)
      fail("zip64 end-of-central-directory record: bad offset " + std::to_string(z64));
    n_entries = load_le<uint64_t>(base + z64 + 32);
    cd_size = load_le<uint64_t>(base + z64 + 40);
    cd_offset = load_le<uint64_t>(base + z64 + 48);
  }
  if (cd_offset > size || cd_size > size - cd_offset)
    fail("central directory at offset " + std::to_string(cd_offset) + " with " + std::to_string(cd_size) +
         " bytes runs past the end of the file (" + std::to_string(size) + " bytes; truncated?)");

  auto zr = std::unique_ptr<ZipReader>(new ZipReader());
  zr->file_ = file;
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  std::map<std::string, int> seen;
  for (uint64_t i = 0; i < n_entries; ++i) {
    const std::string at = "central directory entry " + std::to_string(i) + " at offset " + std::to_string(p);
    if (cd_end - p < 46) fail(at + ": truncated");
    if (load_le<uint32_t>(base + p) != kCentralSig) fail(at + ": bad signature");
    ZipEntry e;
    e.flags = load_le<uint16_t>(base + p + 8);
    e.method = load_le<uint16_t>(base + p + 10);
    e.crc32 = load_le<uint32_t>(base + p + 16);
    uint64_t csize = load_le<uint32_t>(base + p + 20);
    uint64_t usize = load_le<uint32_t>(base + p + 24);
    uint16_t name_len = load_le<uint16_t>(base + p + 28);
    uint16_t extra_len = load_le<uint16_t>(base + p + 30);
    uint16_t comment_len = load_le<uint16_t>(base + p + 32);
    e.local_offset = load_le<uint32_t>(base + p + 42);
    if (cd_end - p - 46 < static_cast<uint64_t>(name_len) + extra_len + comment_len) fail(at + ": name/extra fields truncated");
    e.name.assign(reinterpret_cast<const char*>(base + p + 46), name_len);
    // zip64 extended information: only the fields whose 32-bit slot is saturated appear, in this order.
    const uint8_t* x = base + p + 46 + name_len;
    const uint8_t* xend = x + extra_len;
    while (xend - x >= 4) {
      uint16_t id = load_le<uint16_t>(x), len = load_le<uint16_t>(x + 2);
      if (xend - x - 4 < len) fail(at + " ('" + e.name + "'): extra field runs past its end");
      if (id == 0x0001) {
        const uint8_t* q = x + 4;
        const uint8_t* qend = q + len;
        auto take = [&](uint64_t& field) {
          if (qend - q < 8) fail(at + " ('" + e.name + "'): zip64 extra field too short");
          field = load_le<uint64_t>(q);
          q += 8;
        };
        if (usize == 0xFFFFFFFFu) take(usize);
        if (csize == 0xFFFFFFFFu) take(csize);
        if (e.local_offset == 0xFFFFFFFFu) take(e.local_offset);
      }
      x += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    if (seen[e.name]++) fail("entry '" + e.name + "' appears twice");
    e.size = usize;
    const std::string ent = "entry '" + e.name + "'";
    if (e.flags & 1) fail(ent + " is encrypted");
    if (e.method == 0) {
      if (csize != usize) fail(ent + ": stored entry with compressed size " + std::to_string(csize) + " != size " + std::to_string(usize));
      uint64_t lh = e.local_offset;
      if (lh > size || size - lh < 30) fail(ent + ": local header offset " + std::to_string(lh) + " is past the end of the file (truncated?)");
      if (load_le<uint32_t>(base + lh) != kLocalSig) fail(ent + ": bad local header signature at offset " + std::to_string(lh));
      uint64_t lname = load_le<uint16_t>(base + lh + 26), lextra = load_le<uint16_t>(base + lh + 28);
      uint64_t start = lh + 30 + lname + lextra;
      if (start > size || usize > size - start)
        fail(ent + ": data (" + std::to_string(usize) + " bytes at offset " + std::to_string(start) +
             ") runs past the end of the file (" + std::to_string(size) + " bytes; truncated?)");
      if (lname != name_len || std::memcmp(base + lh + 30, e.name.data(), name_len) != 0)
        fail(ent + ": local header name does not match the central directory");
      e.data = base + start;
    }
    zr->entries_.push_back(std::move(e));
  }
  return zr;
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

void ZipReader::verify_crc(const ZipEntry& e) const {
  if (!e.data) throw ConvertError(path() + ": zip entry '" + e.name + "' is compressed (method " + std::to_string(e.method) + "); only stored entries are supported");
  uint32_t c = crc32(e.data, static_cast<size_t>(e.size));
  if (c != e.crc32)
    throw ConvertError(path() + ": zip entry '" + e.name + "' fails its CRC-32 check (corrupt file)");
}

}  // namespace convert
}  // namespace lro
