#include "convert/gguf_stream.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lro {
namespace convert {

namespace {

constexpr size_t kAlign = 32;

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
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

GgufValue scalar(GgufValueType t) {
  GgufValue v;
  v.type = t;
  return v;
}

}  // namespace

void GgufStreamWriter::set_value(const std::string& key, const GgufValue& v) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = v;
      return;
    }
  kv_.emplace_back(key, v);
}
void GgufStreamWriter::set_u32(const std::string& key, uint32_t x) {
  auto v = scalar(GgufValueType::U32);
  v.num.u64 = x;
  set_value(key, v);
}
void GgufStreamWriter::set_i32(const std::string& key, int32_t x) {
  auto v = scalar(GgufValueType::I32);
  v.num.i64 = x;
  set_value(key, v);
}
void GgufStreamWriter::set_f32(const std::string& key, float x) {
  auto v = scalar(GgufValueType::F32);
  v.num.f64 = x;
  set_value(key, v);
}
void GgufStreamWriter::set_bool(const std::string& key, bool x) {
  auto v = scalar(GgufValueType::BOOL);
  v.num.b = x;
  set_value(key, v);
}
void GgufStreamWriter::set_string(const std::string& key, const std::string& x) {
  auto v = scalar(GgufValueType::STRING);
  v.str = x;
  set_value(key, v);
}
void GgufStreamWriter::set_string_array(const std::string& key, const std::vector<std::string>& xs) {
  auto v = scalar(GgufValueType::ARRAY);
  v.elem_type = GgufValueType::STRING;
  v.arr.reserve(xs.size());
  for (const auto& s : xs) {
    auto e = scalar(GgufValueType::STRING);
    e.str = s;
    v.arr.push_back(std::move(e));
  }
  set_value(key, v);
}
void GgufStreamWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& xs) {
  auto v = scalar(GgufValueType::ARRAY);
  v.elem_type = GgufValueType::I32;
  v.arr.reserve(xs.size());
  for (int32_t x : xs) {
    auto e = scalar(GgufValueType::I32);
    e.num.i64 = x;
    v.arr.push_back(e);
  }
  set_value(key, v);
}

size_t GgufStreamWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne) {
  if (ne.empty() || ne.size() > 4) throw ConvertError("tensor '" + name + "': 1..4 dimensions required");
  const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(type));
  if (!tr) throw ConvertError("tensor '" + name + "': unknown type");
  if (ne[0] % tr->block_size != 0)
    throw ConvertError("tensor '" + name + "': row length " + std::to_string(ne[0]) + " is not a multiple of the " +
                       tr->name + " block size " + std::to_string(tr->block_size));
  for (const auto& t : tensors_)
    if (t.name == name) throw ConvertError("tensor '" + name + "' added twice");
  tensors_.push_back({name, type, ne});
  return tensors_.size() - 1;
}

size_t GgufStreamWriter::tensor_bytes(size_t i) const {
  const Info& t = tensors_[i];
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  return row_size(t.type, t.ne[0]) * static_cast<size_t>(rows);
}

uint64_t GgufStreamWriter::write(const std::string& path, const Producer& produce, const ProgressFn& progress) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, 0x46554747);  // "GGUF"
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& kv : kv_) {
    put_string(head, kv.first);
    put<uint32_t>(head, static_cast<uint32_t>(kv.second.type));
    put_value(head, kv.second);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Info& t = tensors_[i];
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += (tensor_bytes(i) + kAlign - 1) / kAlign * kAlign;
  }

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw ConvertError(tmp + ": cannot create: " + std::strerror(errno));
  uint64_t written = 0;
  auto abort_write = [&](const std::string& why) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw ConvertError(why);
  };
  auto write_all = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f) != n) abort_write(tmp + ": write failed (disk full?)");
    written += n;
  };
  static const uint8_t zeros[kAlign] = {0};
  auto pad = [&]() { write_all(zeros, (kAlign - written % kAlign) % kAlign); };
  write_all(head.data(), head.size());
  pad();
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (progress) progress("write", static_cast<int64_t>(i), static_cast<int64_t>(tensors_.size()), tensors_[i].name);
    bytes.clear();
    try {
      produce(i, bytes);
    } catch (...) {
      std::fclose(f);
      std::remove(tmp.c_str());
      throw;
    }
    if (bytes.size() != tensor_bytes(i))
      abort_write("tensor '" + tensors_[i].name + "': produced " + std::to_string(bytes.size()) + " bytes, expected " +
                  std::to_string(tensor_bytes(i)));
    write_all(bytes.data(), bytes.size());
    pad();
  }
  if (progress) progress("write", static_cast<int64_t>(tensors_.size()), static_cast<int64_t>(tensors_.size()), "");
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw ConvertError(tmp + ": close failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw ConvertError(path + ": cannot rename from " + tmp + ": " + std::strerror(e));
  }
  return written;
}

}  // namespace convert
}  // namespace lro
