// Test-only helpers: a safetensors reader written from the format spec (8-byte little-endian
// header length, JSON header {name: {dtype, shape, data_offsets}}, then the data) and the
// location of the shared golden data.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace golden {

inline std::string shared_dir() {
  const char* env = std::getenv("LRO_SHARED");
  return env ? env : "../shared";
}

struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::vector<float> f32() const {
    if (dtype != "F32") throw std::runtime_error("tensor is " + dtype + ", not F32");
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), bytes.size());
    return v;
  }
  std::vector<int64_t> ints() const {
    std::vector<int64_t> v(static_cast<size_t>(numel()));
    for (size_t i = 0; i < v.size(); ++i) {
      if (dtype == "I32") { int32_t x; std::memcpy(&x, bytes.data() + 4 * i, 4); v[i] = x; }
      else if (dtype == "I64") std::memcpy(&v[i], bytes.data() + 8 * i, 8);
      else throw std::runtime_error("tensor is " + dtype + ", not an integer type");
    }
    return v;
  }
};

// Minimal parser for the safetensors header: objects, strings, integer arrays.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<uint8_t> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (all.size() < 8) throw std::runtime_error(path + ": too short");
    uint64_t hlen;
    std::memcpy(&hlen, all.data(), 8);
    if (hlen > all.size() - 8) throw std::runtime_error(path + ": header length beyond the file");
    std::string h(reinterpret_cast<const char*>(all.data() + 8), hlen);
    size_t data0 = 8 + hlen;
    size_t i = 0;
    auto ws = [&] { while (i < h.size() && isspace(static_cast<unsigned char>(h[i]))) ++i; };
    auto str = [&] {
      ws();
      if (h[i] != '"') throw std::runtime_error("expected string");
      std::string s;
      for (++i; h[i] != '"'; ++i) {
        if (h[i] == '\\') ++i;
        s += h[i];
      }
      ++i;
      return s;
    };
    auto skip_value = [&] {  // __metadata__ values: a flat object of strings
      ws();
      int depth = 0;
      bool in_str = false;
      for (; i < h.size(); ++i) {
        char c = h[i];
        if (in_str) { if (c == '\\') ++i; else if (c == '"') in_str = false; continue; }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') ++depth;
        else if (c == '}' || c == ']') { if (--depth == 0) { ++i; return; } }
      }
    };
    auto ints = [&] {
      ws();
      std::vector<int64_t> v;
      ++i;  // [
      for (;;) {
        ws();
        if (h[i] == ']') { ++i; break; }
        if (h[i] == ',') { ++i; continue; }
        size_t end;
        v.push_back(std::stoll(h.substr(i), &end));
        i += end;
      }
      return v;
    };
    ws();
    ++i;  // {
    for (;;) {
      ws();
      if (h[i] == '}') break;
      if (h[i] == ',') { ++i; continue; }
      std::string name = str();
      ws(); ++i;  // :
      if (name == "__metadata__") { skip_value(); continue; }
      ws(); ++i;  // {
      Tensor t;
      std::vector<int64_t> off;
      for (;;) {
        ws();
        if (h[i] == '}') { ++i; break; }
        if (h[i] == ',') { ++i; continue; }
        std::string k = str();
        ws(); ++i;
        if (k == "dtype") t.dtype = str();
        else if (k == "shape") t.shape = ints();
        else if (k == "data_offsets") off = ints();
      }
      if (off.size() != 2 || data0 + off[1] > all.size()) throw std::runtime_error(path + ": bad offsets for " + name);
      t.bytes.assign(all.begin() + data0 + off[0], all.begin() + data0 + off[1]);
      tensors[name] = std::move(t);
    }
  }
  const Tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw std::runtime_error("no tensor " + name);
    return it->second;
  }
  std::map<std::string, Tensor> tensors;
};

inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace golden
