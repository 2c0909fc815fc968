#include "convert/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "convert/json.h"

namespace lro {
namespace convert {

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // the reference library's own limit
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  return from_mapping(MappedFile::open(path));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_mapping(std::shared_ptr<MappedFile> file) {
  const std::string& path = file->path();
  const size_t size = file->size();
  if (size < 8)
    throw ConvertError(path + ": header length: the file has " + std::to_string(size) +
                       " bytes, a safetensors file needs at least 8 (truncated or not safetensors)");
  const uint64_t n = load_le<uint64_t>(file->data());
  if (n > kMaxHeader)
    throw ConvertError(path + ": header length " + std::to_string(n) + " exceeds the 100 MiB limit (not a safetensors file?)");
  if (n > size - 8)
    throw ConvertError(path + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                       std::to_string(size) + " bytes; truncated file?)");
  std::string header(reinterpret_cast<const char*>(file->data() + 8), static_cast<size_t>(n));
  if (header.empty() || header[0] != '{')
    throw ConvertError(path + ": header does not start with '{' (not a safetensors file?)");
  json::Value h = json::parse(header, path + " (header)");
  if (!h.is_object()) throw ConvertError(path + ": header is not a JSON object");

  auto st = std::make_shared<SafetensorsFile>();
  st->file_ = file;
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = file->data() + 8 + n;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  std::map<std::string, int> seen;
  for (const auto& m : h.members) {
    const std::string& key = m.first;
    const json::Value& v = m.second;
    if (key == "__metadata__") {
      if (!v.is_object()) throw ConvertError(path + ": header field '__metadata__' must be an object of strings");
      for (const auto& kv : v.members) {
        if (!kv.second.is_string())
          throw ConvertError(path + ": header field '__metadata__." + kv.first + "' must be a string");
        st->metadata_.emplace_back(kv.first, kv.second.str);
      }
      continue;
    }
    const std::string field = path + ": header entry '" + key + "'";
    if (seen[key]++) throw ConvertError(field + " appears twice");
    if (!v.is_object()) throw ConvertError(field + " must be an object");
    const json::Value* dt = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offs = v.find("data_offsets");
    if (!dt || !dt->is_string()) throw ConvertError(field + ": 'dtype' is missing or not a string");
    if (!shape || !shape->is_array()) throw ConvertError(field + ": 'shape' is missing or not an array");
    if (!offs || !offs->is_array() || offs->items.size() != 2)
      throw ConvertError(field + ": 'data_offsets' must be an array [begin, end]");
    TensorRef t;
    t.name = key;
    if (!dtype_from_name(dt->str, t.dtype))
      throw ConvertError(field + ": unknown dtype '" + dt->str + "'");
    int64_t numel = 1;
    for (const auto& d : shape->items) {
      if (!d.is_number() || !d.is_int || d.integer < 0)
        throw ConvertError(field + ": 'shape' must hold non-negative integers");
      t.shape.push_back(d.integer);
      numel = checked_mul(numel, d.integer, field + " shape");
    }
    for (const auto& o : offs->items)
      if (!o.is_number() || !o.is_int || o.integer < 0)
        throw ConvertError(field + ": 'data_offsets' must hold non-negative integers");
    uint64_t b = static_cast<uint64_t>(offs->items[0].integer), e = static_cast<uint64_t>(offs->items[1].integer);
    if (e < b) throw ConvertError(field + ": data_offsets end " + std::to_string(e) + " is before begin " + std::to_string(b));
    if (e > data_size)
      throw ConvertError(field + ": data_offsets end " + std::to_string(e) + " is past the end of the data section (" +
                         std::to_string(data_size) + " bytes; truncated file?)");
    uint64_t nbytes = static_cast<uint64_t>(checked_mul(numel, static_cast<int64_t>(dtype_size(t.dtype)), field + " size"));
    if (nbytes != e - b)
      throw ConvertError(field + ": shape and dtype " + std::string(dtype_name(t.dtype)) + " give " + std::to_string(nbytes) +
                         " bytes but data_offsets span " + std::to_string(e - b));
    t.base = data + b;
    t.keep = file;
    t.origin = path;
    spans.push_back({b, e, st->tensors_.size()});
    st->tensors_.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin != at)
      throw ConvertError(path + ": header entry '" + st->tensors_[s.index].name + "': data_offsets begin " +
                         std::to_string(s.begin) + (s.begin < at ? " overlaps the previous tensor" : " leaves a gap") +
                         " (expected " + std::to_string(at) + ")");
    at = s.end;
  }
  if (at != data_size)
    throw ConvertError(path + ": the tensors cover " + std::to_string(at) + " bytes of a " + std::to_string(data_size) +
                       "-byte data section (trailing data or a bad header)");
  return st;
}

const TensorRef* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void write_safetensors(const std::string& path, std::vector<SafetensorsOut> tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata) {
  // Same order as the reference writer: larger dtypes first, then by name.
  std::stable_sort(tensors.begin(), tensors.end(), [](const SafetensorsOut& a, const SafetensorsOut& b) {
    if (a.dtype != b.dtype) return static_cast<int>(a.dtype) > static_cast<int>(b.dtype);
    return a.name < b.name;
  });
  json::Value h = json::Value::make_object();
  if (!metadata.empty()) {
    json::Value m = json::Value::make_object();
    for (const auto& kv : metadata) m.set(kv.first, json::Value::make_string(kv.second));
    h.set("__metadata__", std::move(m));
  }
  uint64_t off = 0;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel = checked_mul(numel, d, "tensor '" + t.name + "'");
    if (static_cast<uint64_t>(numel) * dtype_size(t.dtype) != t.bytes.size())
      throw ConvertError(path + ": tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) + " bytes for its shape");
    json::Value e = json::Value::make_object();
    e.set("dtype", json::Value::make_string(dtype_name(t.dtype)));
    json::Value shape = json::Value::make_array();
    for (int64_t d : t.shape) shape.push(json::Value::make_int(d));
    e.set("shape", std::move(shape));
    json::Value offs = json::Value::make_array();
    offs.push(json::Value::make_int(static_cast<int64_t>(off)));
    off += t.bytes.size();
    offs.push(json::Value::make_int(static_cast<int64_t>(off)));
    e.set("data_offsets", std::move(offs));
    h.set(t.name, std::move(e));
  }
  std::string header = json::dump(h);
  header.append((8 - header.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](FILE* f) {
    uint64_t n = header.size();
    bool ok = std::fwrite(&n, 8, 1, f) == 1;
    ok = ok && std::fwrite(header.data(), 1, header.size(), f) == header.size();
    for (const auto& t : tensors)
      ok = ok && (t.bytes.empty() || std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size());
    return ok;
  });
}

}  // namespace convert
}  // namespace lro
