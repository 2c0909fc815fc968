#include "core/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <limits>

namespace lro {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are surely garbage

bool valid_value_type(uint32_t t) { return t <= 12; }

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
  }
}

// Sequential reader over the mapped bytes; every read checks the remaining length.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& label) : base_(base), size_(size), label_(label) {}
  size_t pos() const { return pos_; }
  [[noreturn]] void fail(const std::string& field, size_t at, const std::string& what) const {
    throw GgufError(label_ + ": " + field + " at offset " + std::to_string(at) + ": " + what);
  }
  void need(size_t n, const std::string& field) const {
    if (n > size_ - pos_)
      fail(field, pos_, "needs " + std::to_string(n) + " bytes but the file has only " +
                            std::to_string(size_ - pos_) + " left (truncated file?)");
  }
  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& field) {
    size_t at = pos_;
    uint64_t len = read<uint64_t>(field + " (string length)");
    if (len > size_ - pos_)
      fail(field, at, "string length " + std::to_string(len) + " runs past the end of the file (" +
                          std::to_string(size_ - pos_) + " bytes left)");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  size_t remaining() const { return size_ - pos_; }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& label_;
};

void read_value(Cursor& c, GgufValueType type, GgufValue& out, const std::string& field, int depth) {
  out.type = type;
  switch (type) {
    case GgufValueType::U8: out.num.u64 = c.read<uint8_t>(field); break;
    case GgufValueType::I8: out.num.i64 = c.read<int8_t>(field); break;
    case GgufValueType::U16: out.num.u64 = c.read<uint16_t>(field); break;
    case GgufValueType::I16: out.num.i64 = c.read<int16_t>(field); break;
    case GgufValueType::U32: out.num.u64 = c.read<uint32_t>(field); break;
    case GgufValueType::I32: out.num.i64 = c.read<int32_t>(field); break;
    case GgufValueType::U64: out.num.u64 = c.read<uint64_t>(field); break;
    case GgufValueType::I64: out.num.i64 = c.read<int64_t>(field); break;
    case GgufValueType::F32: out.num.f64 = c.read<float>(field); break;
    case GgufValueType::F64: out.num.f64 = c.read<double>(field); break;
    case GgufValueType::BOOL: {
      size_t at = c.pos();
      uint8_t b = c.read<uint8_t>(field);
      if (b > 1) c.fail(field, at, "bool value " + std::to_string(b) + " is neither 0 nor 1");
      out.num.b = b != 0;
      break;
    }
    case GgufValueType::STRING: out.str = c.read_string(field); break;
    case GgufValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) c.fail(field, c.pos(), "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
      size_t at = c.pos();
      uint32_t et = c.read<uint32_t>(field + " (array element type)");
      if (!valid_value_type(et)) c.fail(field, at, "unknown array element type " + std::to_string(et));
      out.elem_type = static_cast<GgufValueType>(et);
      at = c.pos();
      uint64_t n = c.read<uint64_t>(field + " (array length)");
      // Each element takes at least one byte (strings at least 8): a longer array cannot fit.
      size_t min_elem = scalar_size(out.elem_type);
      if (out.elem_type == GgufValueType::STRING) min_elem = 8;
      if (out.elem_type == GgufValueType::ARRAY) min_elem = 12;
      if (n > c.remaining() / min_elem)
        c.fail(field, at, "array length " + std::to_string(n) + " cannot fit in the " +
                              std::to_string(c.remaining()) + " bytes left");
      out.arr.resize(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) read_value(c, out.elem_type, out.arr[i], field, depth + 1);
      break;
    }
  }
}

std::string type_error(const std::string& key, const GgufValue& v, const char* expected) {
  return "metadata key '" + key + "' has type " + gguf_value_type_name(v.type) + ", expected " + expected;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i <= 12 ? names[i] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::U16: case GgufValueType::I16:
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::U64: case GgufValueType::I64:
      return true;
    default: return false;
  }
}
bool GgufValue::is_float() const { return type == GgufValueType::F32 || type == GgufValueType::F64; }

int64_t GgufValue::as_int(const std::string& key) const {
  switch (type) {
    case GgufValueType::U8: case GgufValueType::U16: case GgufValueType::U32: return static_cast<int64_t>(num.u64);
    case GgufValueType::U64:
      if (num.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw GgufError("metadata key '" + key + "' value " + std::to_string(num.u64) + " is too large");
      return static_cast<int64_t>(num.u64);
    case GgufValueType::I8: case GgufValueType::I16: case GgufValueType::I32: case GgufValueType::I64: return num.i64;
    case GgufValueType::BOOL: return num.b ? 1 : 0;
    default: throw GgufError(type_error(key, *this, "an integer"));
  }
}
double GgufValue::as_float(const std::string& key) const {
  if (is_float()) return num.f64;
  if (is_integer()) return static_cast<double>(as_int(key));
  throw GgufError(type_error(key, *this, "a number"));
}
bool GgufValue::as_bool(const std::string& key) const {
  if (type == GgufValueType::BOOL) return num.b;
  if (is_integer()) return as_int(key) != 0;
  throw GgufError(type_error(key, *this, "a bool"));
}
const std::string& GgufValue::as_string(const std::string& key) const {
  if (type != GgufValueType::STRING) throw GgufError(type_error(key, *this, "a string"));
  return str;
}
const std::vector<GgufValue>& GgufValue::as_array(const std::string& key) const {
  if (type != GgufValueType::ARRAY) throw GgufError(type_error(key, *this, "an array"));
  return arr;
}

const char* gguf_memory_name(GgufMemory m) {
  switch (m) {
    case GgufMemory::Mapped: return "mapped";
    case GgufMemory::Copy: return "copy";
    case GgufMemory::Borrowed: return "borrowed";
  }
  return "?";
}

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// Transparent huge pages for madvised memory: the kernel's mode is [always] or [madvise].
bool huge_pages_offered() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(in, mode);
  return mode.find("[always]") != std::string::npos || mode.find("[madvise]") != std::string::npos;
}

// MemAvailable in bytes, or 0 if unknown.
size_t memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

bool want_copy(size_t size) {
  const char* env = std::getenv("LRO_WEIGHT_MEMORY");
  const std::string mode = env ? env : "auto";
  if (mode == "mapped") return false;
  if (mode == "copy") return true;
  if (mode != "auto")
    throw GgufError("LRO_WEIGHT_MEMORY: expected auto, mapped or copy, found \"" + mode + "\" (unset it for auto)");
  return size >= GgufFile::kCopyMinBytes && huge_pages_offered() && size <= memory_available() / 2;
}

// The file's bytes in a private anonymous mapping, its start on a huge-page boundary and advised
// for huge pages, then made read-only. Returns the mapping (to unmap: *mapping, *mapping_size) or
// nullptr if no memory could be had (the caller maps the file instead: with strict overcommit the
// mmap fails here rather than the process dying while it reads); throws on a read error.
const uint8_t* copy_file(int fd, size_t size, const std::string& path, void** mapping, size_t* mapping_size) {
  const size_t span = size + kHugePage;
  void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  uint8_t* start = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + kHugePage - 1) & ~(uintptr_t(kHugePage) - 1));
#if defined(MADV_HUGEPAGE)
  madvise(start, (size + kHugePage - 1) & ~(kHugePage - 1), MADV_HUGEPAGE);  // advice: failure only costs speed
#endif
#if defined(POSIX_FADV_SEQUENTIAL)
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  for (size_t done = 0; done < size;) {
    const ssize_t r = pread(fd, start + done, std::min<size_t>(size - done, size_t(64) << 20), static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string why = r < 0 ? std::strerror(errno) : "the file ended early (was it truncated while loading?)";
      munmap(m, span);
      throw GgufError(path + ": read failed at byte " + std::to_string(done) + " of " + std::to_string(size) + ": " + why);
    }
    done += static_cast<size_t>(r);
  }
  mprotect(start, size, PROT_READ);  // read-only like the mapping: a stray write faults, never edits weights
  *mapping = m;
  *mapping_size = span;
  return start;
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GgufError(path + ": cannot open: " + std::strerror(errno));
  struct Closer {  // on every way out: the file's bytes outlive the descriptor (copied or mapped)
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) throw GgufError(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw GgufError(path + ": not a regular file");
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  f->memory_ = GgufMemory::Mapped;
  if (f->size_ > 0 && want_copy(f->size_)) {
    f->base_ = copy_file(fd, f->size_, path, &f->mapping_, &f->mapping_size_);
    if (f->base_) f->memory_ = GgufMemory::Copy;
  }
  if (f->size_ > 0 && !f->base_) {
    void* map = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) throw GgufError(path + ": cannot map: " + std::strerror(errno));
    f->base_ = static_cast<const uint8_t*>(map);
    f->mapping_ = map;
    f->mapping_size_ = f->size_;
  }
  f->parse();  // on throw, the destructor unmaps
  return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size, const std::string& label) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = label;
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

GgufFile::~GgufFile() {
  if (mapping_) munmap(mapping_, mapping_size_);
}

// LRO_DEBUG's native stack names frames from the dynamic symbol table, which has no entry for the
// cold part GCC splits off a function ("parse.cold", where every refusal is thrown): keep parse whole
// so that a refused file's stack shows GgufFile::parse.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-reorder-blocks-and-partition")))
#endif
void GgufFile::parse() {
  Cursor c(base_, size_, path_);
  if (size_ < 4) c.fail("magic", 0, "file is " + std::to_string(size_) + " bytes, too short to be GGUF");
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    char got[5] = {0};
    std::memcpy(got, base_, 4);
    for (char& ch : got)
      if (ch && (ch < 32 || ch > 126)) ch = '?';
    c.fail("magic", 0, std::string("expected \"GGUF\", found \"") + got + "\" (not a GGUF file)");
  }
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    c.fail("version", 4, "unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
  uint64_t n_tensors = c.read<uint64_t>("tensor_count");
  uint64_t n_kv = c.read<uint64_t>("metadata_kv_count");
  // A tensor info takes at least 8+1+4+8+4+8 bytes, a kv at least 8+1+4+1.
  if (n_tensors > c.remaining() / 33) c.fail("tensor_count", 8, std::to_string(n_tensors) + " tensors cannot fit in the file");
  if (n_kv > c.remaining() / 14) c.fail("metadata_kv_count", 16, std::to_string(n_kv) + " metadata entries cannot fit in the file");

  kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string field = "metadata[" + std::to_string(i) + "]";
    size_t at = c.pos();
    std::string key = c.read_string(field + " key");
    if (key.empty()) c.fail(field + " key", at, "empty key");
    field = "metadata '" + key + "'";
    if (kv_index_.count(key)) c.fail(field, at, "duplicate key");
    size_t tat = c.pos();
    uint32_t t = c.read<uint32_t>(field + " type");
    if (!valid_value_type(t)) c.fail(field + " type", tat, "unknown value type " + std::to_string(t));
    GgufValue v;
    read_value(c, static_cast<GgufValueType>(t), v, field, 0);
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    int64_t al = a->is_integer() ? a->as_int("general.alignment") : 0;
    if (al <= 0 || al > (1 << 20) || (al & (al - 1)) != 0)
      throw GgufError(path_ + ": metadata 'general.alignment' must be a power of two, got " +
                      (a->is_integer() ? std::to_string(al) : std::string(gguf_value_type_name(a->type))));
    alignment_ = static_cast<size_t>(al);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string field = "tensor[" + std::to_string(i) + "]";
    GgufTensorInfo ti;
    size_t at = c.pos();
    ti.name = c.read_string(field + " name");
    if (ti.name.empty()) c.fail(field + " name", at, "empty tensor name");
    field = "tensor '" + ti.name + "'";
    if (tensor_index_.count(ti.name)) c.fail(field, at, "duplicate tensor name");
    at = c.pos();
    ti.n_dims = c.read<uint32_t>(field + " n_dims");
    if (ti.n_dims == 0 || ti.n_dims > 4) c.fail(field + " n_dims", at, "must be 1..4, got " + std::to_string(ti.n_dims));
    uint64_t total = 1;
    for (uint32_t d = 0; d < ti.n_dims; ++d) {
      at = c.pos();
      uint64_t ne = c.read<uint64_t>(field + " ne[" + std::to_string(d) + "]");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail(field + " ne[" + std::to_string(d) + "]", at, "dimension " + std::to_string(ne) + " is out of range");
      if (total > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne)
        c.fail(field + " ne[" + std::to_string(d) + "]", at, "element count overflows 64 bits (absurd dimensions)");
      total *= ne;
      ti.ne[d] = static_cast<int64_t>(ne);
    }
    at = c.pos();
    uint32_t type = c.read<uint32_t>(field + " type");
    const GgmlTypeTraits* tr = ggml_type_traits(type);
    if (!tr) c.fail(field + " type", at, "unknown tensor type id " + std::to_string(type));
    ti.type = static_cast<GgmlType>(type);
    if (ti.ne[0] % tr->block_size != 0)
      c.fail(field + " ne[0]", at, "row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " + tr->name +
                                       " block size " + std::to_string(tr->block_size));
    uint64_t blocks = total / static_cast<uint64_t>(tr->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / tr->block_bytes)
      c.fail(field, at, "byte size overflows 64 bits (absurd dimensions)");
    ti.nbytes = static_cast<size_t>(blocks * tr->block_bytes);
    at = c.pos();
    ti.offset = c.read<uint64_t>(field + " offset");
    if (ti.offset % alignment_ != 0)
      c.fail(field + " offset", at, "offset " + std::to_string(ti.offset) + " is not aligned to " + std::to_string(alignment_));
    tensor_index_[ti.name] = tensors_.size();
    tensors_.push_back(std::move(ti));
  }

  size_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_)
    c.fail("tensor data", c.pos(), "data section starts at " + std::to_string(data_start) + " beyond the end of the file (" +
                                      std::to_string(size_) + " bytes)");
  size_t data_size = data_start <= size_ ? size_ - data_start : 0;
  for (auto& ti : tensors_) {
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
      throw GgufError(path_ + ": tensor '" + ti.name + "' data [" + std::to_string(ti.offset) + ", +" +
                      std::to_string(ti.nbytes) + ") at file offset " + std::to_string(data_start + ti.offset) +
                      " lies beyond the end of the file (data section has " + std::to_string(data_size) +
                      " bytes; truncated file?)");
    ti.data = base_ + data_start + ti.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}
const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw GgufError(path_ + ": required metadata key '" + key + "' is missing");
  return *v;
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_float(key) : fallback;
}
std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_string(key) : fallback;
}
const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------- writer

namespace {
GgufValue scalar_value(GgufValueType t) {
  GgufValue v;
  v.type = t;
  return v;
}

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
template <typename T>
void put(std::vector<uint8_t>& out, T v) { put_bytes(out, &v, sizeof(T)); }
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::U8: put<uint8_t>(out, static_cast<uint8_t>(v.num.u64)); break;
    case GgufValueType::I8: put<int8_t>(out, static_cast<int8_t>(v.num.i64)); break;
    case GgufValueType::U16: put<uint16_t>(out, static_cast<uint16_t>(v.num.u64)); break;
    case GgufValueType::I16: put<int16_t>(out, static_cast<int16_t>(v.num.i64)); break;
    case GgufValueType::U32: put<uint32_t>(out, static_cast<uint32_t>(v.num.u64)); break;
    case GgufValueType::I32: put<int32_t>(out, static_cast<int32_t>(v.num.i64)); break;
    case GgufValueType::U64: put<uint64_t>(out, v.num.u64); break;
    case GgufValueType::I64: put<int64_t>(out, v.num.i64); break;
    case GgufValueType::F32: put<float>(out, static_cast<float>(v.num.f64)); break;
    case GgufValueType::F64: put<double>(out, v.num.f64); break;
    case GgufValueType::BOOL: put<uint8_t>(out, v.num.b ? 1 : 0); break;
    case GgufValueType::STRING: put_string(out, v.str); break;
    case GgufValueType::ARRAY:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.arr.size());
      for (const auto& e : v.arr) put_value(out, e);
      break;
  }
}
}  // namespace

void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = v;
      return;
    }
  kv_.emplace_back(key, v);
}
void GgufWriter::set_u32(const std::string& key, uint32_t x) {
  auto v = scalar_value(GgufValueType::U32);
  v.num.u64 = x;
  set_value(key, v);
}
void GgufWriter::set_i32(const std::string& key, int32_t x) {
  auto v = scalar_value(GgufValueType::I32);
  v.num.i64 = x;
  set_value(key, v);
}
void GgufWriter::set_u64(const std::string& key, uint64_t x) {
  auto v = scalar_value(GgufValueType::U64);
  v.num.u64 = x;
  set_value(key, v);
}
void GgufWriter::set_f32(const std::string& key, float x) {
  auto v = scalar_value(GgufValueType::F32);
  v.num.f64 = x;
  set_value(key, v);
}
void GgufWriter::set_bool(const std::string& key, bool x) {
  auto v = scalar_value(GgufValueType::BOOL);
  v.num.b = x;
  set_value(key, v);
}
void GgufWriter::set_string(const std::string& key, const std::string& x) {
  auto v = scalar_value(GgufValueType::STRING);
  v.str = x;
  set_value(key, v);
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& xs) {
  auto v = scalar_value(GgufValueType::ARRAY);
  v.elem_type = GgufValueType::STRING;
  for (const auto& s : xs) {
    auto e = scalar_value(GgufValueType::STRING);
    e.str = s;
    v.arr.push_back(std::move(e));
  }
  set_value(key, v);
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& xs) {
  auto v = scalar_value(GgufValueType::ARRAY);
  v.elem_type = GgufValueType::I32;
  for (int32_t x : xs) {
    auto e = scalar_value(GgufValueType::I32);
    e.num.i64 = x;
    v.arr.push_back(e);
  }
  set_value(key, v);
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& xs) {
  auto v = scalar_value(GgufValueType::ARRAY);
  v.elem_type = GgufValueType::F32;
  for (float x : xs) {
    auto e = scalar_value(GgufValueType::F32);
    e.num.f64 = x;
    v.arr.push_back(e);
  }
  set_value(key, v);
}

size_t GgufWriter::add_tensor_info(const std::string& name, GgmlType type, const std::vector<int64_t>& ne) {
  if (ne.empty() || ne.size() > 4) throw GgufError("tensor '" + name + "': 1..4 dimensions required");
  const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(type));
  if (!tr) throw GgufError("tensor '" + name + "': unknown type");
  if (ne[0] % tr->block_size != 0)
    throw GgufError("tensor '" + name + "': row length " + std::to_string(ne[0]) + " is not a multiple of the " + tr->name +
                    " block size " + std::to_string(tr->block_size));
  for (const auto& t : tensors_)
    if (t.name == name) throw GgufError("tensor '" + name + "' added twice");
  tensors_.push_back({name, type, ne, {}, false});
  return tensors_.size() - 1;
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                            std::vector<uint8_t> bytes) {
  size_t i = add_tensor_info(name, type, ne);
  if (bytes.size() != tensor_bytes(i)) {
    tensors_.pop_back();
    throw GgufError("tensor '" + name + "': got " + std::to_string(bytes.size()) + " bytes, expected " +
                    std::to_string(tensor_bytes(i)));
  }
  tensors_[i].bytes = std::move(bytes);
  tensors_[i].has_bytes = true;
}

size_t GgufWriter::tensor_bytes(size_t i) const {
  const Tensor& t = tensors_[i];
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  return row_size(t.type, t.ne[0]) * static_cast<size_t>(rows);
}

uint64_t GgufWriter::write(const std::string& path, const Producer& produce, const Progress& progress,
                           size_t alignment) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  bool has_alignment = false;
  for (const auto& kv : kv_) has_alignment |= kv.first == "general.alignment";
  const bool add_alignment = alignment != 32 && !has_alignment;
  put<uint64_t>(head, kv_.size() + (add_alignment ? 1 : 0));
  for (const auto& kv : kv_) {
    put_string(head, kv.first);
    put<uint32_t>(head, static_cast<uint32_t>(kv.second.type));
    put_value(head, kv.second);
  }
  if (add_alignment) {
    put_string(head, "general.alignment");
    put<uint32_t>(head, static_cast<uint32_t>(GgufValueType::U32));
    put<uint32_t>(head, static_cast<uint32_t>(alignment));
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += (tensor_bytes(i) + alignment - 1) / alignment * alignment;
  }

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw GgufError(tmp + ": cannot create: " + std::strerror(errno));
  uint64_t written = 0;
  auto abort_write = [&](const std::string& why) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw GgufError(why);
  };
  auto write_all = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f) != n) abort_write(tmp + ": write failed (disk full?)");
    written += n;
  };
  static const uint8_t zeros[256] = {0};
  auto pad = [&] {
    size_t n = (alignment - written % alignment) % alignment;
    while (n > 0) {
      size_t k = std::min(n, sizeof(zeros));
      write_all(zeros, k);
      n -= k;
    }
  };
  write_all(head.data(), head.size());
  pad();
  std::vector<uint8_t> produced;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (progress) progress(i, tensors_.size(), t.name);
    const std::vector<uint8_t>* bytes = &t.bytes;
    if (!t.has_bytes) {
      if (!produce) abort_write("tensor '" + t.name + "' has no data and no producer was given");
      produced.clear();
      try {
        produce(i, produced);
      } catch (...) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
      }
      bytes = &produced;
    }
    if (bytes->size() != tensor_bytes(i))
      abort_write("tensor '" + t.name + "': produced " + std::to_string(bytes->size()) + " bytes, expected " +
                  std::to_string(tensor_bytes(i)));
    write_all(bytes->data(), bytes->size());
    pad();
  }
  if (progress) progress(tensors_.size(), tensors_.size(), "");
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw GgufError(tmp + ": close failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw GgufError(path + ": cannot rename from " + tmp + ": " + std::strerror(e));
  }
  return written;
}

}  // namespace lro
