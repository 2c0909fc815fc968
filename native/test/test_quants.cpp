// Tests for element types, (de)quantisation and matmul (native/quants.*, native/ggml_types.*).
//
// Build (from the project root; the SIMD files enable their instruction sets themselves):
//   g++ -std=c++17 -O2 -pthread -Inative native/test/test_quants.cpp
//     native/quants.cpp native/quants_avx2.cpp native/quants_avx512.cpp native/quants_avx512_vnni.cpp
//     native/ggml_types.cpp native/gguf.cpp native/thread_pool.cpp -o build/test_quants
//   (one command line; no -m flags needed, the SIMD files enable their own instruction sets)
// Run:  build/test_quants [--golden DIR] [--bench] [--quick]
//   DIR defaults to $LRO_GOLDEN_DIR, else shared/golden, else /work/shared/golden.
//   --bench prints matmul GFLOP/s for a 2048x2048 weight (n_tok 1 and 64, 2 threads) per type and path.
//
// What is checked:
//   1. type traits table;
//   2. fp16/bf16 conversions: exact fp16->fp32, round-to-nearest-even fp32->fp16/bf16 (ties, overflow,
//      subnormals, NaN), against the F16C instructions where the CPU has them;
//   3. dequantize_row bit-exact against llama.cpp's to_float for rows 0, 1, last of every non-F32
//      tensor of the golden GGUF files (f16 bf16 q8_0 q4_0 q4_k_m q6_k);
//   4. quantize_row -> dequantize_row error bounds per type (and Q8_0/Q4_0 requantisation of the
//      golden rows reproduces llama.cpp's bytes);
//   5. matmul against a double-precision reference on every available SIMD path, several shapes, with
//      bounds derived from the activation quantisation (see check_matmul), and paths against each other.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ggml_types.h"
#include "core/gguf.h"
#include "quant/quants.h"
#include "core/thread_pool.h"

using namespace lro;

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    ++g_checks;                                            \
    if (!(cond)) {                                         \
      ++g_failures;                                        \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);     \
      std::printf(__VA_ARGS__);                            \
      std::printf("\n");                                   \
    }                                                      \
  } while (0)

static uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Minimal JSON (enough for a safetensors header)

struct Json {
  enum Kind { Null, Bool, Num, Str, Arr, Obj } kind = Null;
  double num = 0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
  const Json* get(const std::string& k) const {
    for (auto& kv : obj)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
};

struct JsonParser {
  const std::string& s;
  size_t p = 0;
  explicit JsonParser(const std::string& src) : s(src) {}
  void ws() {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\n' || s[p] == '\t' || s[p] == '\r')) ++p;
  }
  [[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string("json: ") + what + " at " + std::to_string(p)); }
  std::string string() {
    if (s[p] != '"') fail("expected string");
    ++p;
    std::string out;
    while (p < s.size() && s[p] != '"') {
      if (s[p] == '\\') {
        ++p;
        if (p >= s.size()) fail("bad escape");
        char c = s[p++];
        switch (c) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {
            unsigned v = unsigned(std::stoul(s.substr(p, 4), nullptr, 16));
            p += 4;
            if (v < 0x80) out += char(v);
            else if (v < 0x800) out += char(0xC0 | (v >> 6)), out += char(0x80 | (v & 0x3F));
            else out += char(0xE0 | (v >> 12)), out += char(0x80 | ((v >> 6) & 0x3F)), out += char(0x80 | (v & 0x3F));
            break;
          }
          default: out += c;
        }
      } else {
        out += s[p++];
      }
    }
    if (p >= s.size()) fail("unterminated string");
    ++p;
    return out;
  }
  Json value() {
    ws();
    if (p >= s.size()) fail("unexpected end");
    Json j;
    char c = s[p];
    if (c == '{') {
      j.kind = Json::Obj;
      ++p;
      ws();
      if (s[p] == '}') return ++p, j;
      for (;;) {
        ws();
        std::string k = string();
        ws();
        if (s[p] != ':') fail("expected ':'");
        ++p;
        j.obj.emplace_back(k, value());
        ws();
        if (s[p] == ',') { ++p; continue; }
        if (s[p] == '}') { ++p; return j; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      j.kind = Json::Arr;
      ++p;
      ws();
      if (s[p] == ']') return ++p, j;
      for (;;) {
        j.arr.push_back(value());
        ws();
        if (s[p] == ',') { ++p; continue; }
        if (s[p] == ']') { ++p; return j; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      j.kind = Json::Str;
      j.str = string();
      return j;
    }
    if (s.compare(p, 4, "true") == 0) return p += 4, j.kind = Json::Bool, j.b = true, j;
    if (s.compare(p, 5, "false") == 0) return p += 5, j.kind = Json::Bool, j;
    if (s.compare(p, 4, "null") == 0) return p += 4, j;
    size_t end = p;
    while (end < s.size() && std::strchr("+-0123456789.eE", s[end])) ++end;
    if (end == p) fail("unexpected character");
    j.kind = Json::Num;
    j.num = std::stod(s.substr(p, end - p));
    p = end;
    return j;
  }
};

// ---------------------------------------------------------------------------------------------
// Minimal safetensors reader: u64 LE header length, JSON header, data.

struct StTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

struct Safetensors {
  std::vector<uint8_t> bytes;
  std::map<std::string, StTensor> tensors;
  std::map<std::string, std::string> metadata;

  static Safetensors load(const std::string& path) {
    Safetensors st;
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    st.bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (st.bytes.size() < 8) throw std::runtime_error(path + ": too short");
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(st.bytes[i]) << (8 * i);
    if (hlen > st.bytes.size() - 8) throw std::runtime_error(path + ": header length past end");
    const std::string header(reinterpret_cast<const char*>(st.bytes.data() + 8), size_t(hlen));
    JsonParser jp(header);
    Json root = jp.value();
    const size_t base = 8 + size_t(hlen);
    for (auto& kv : root.obj) {
      if (kv.first == "__metadata__") {
        for (auto& m : kv.second.obj) st.metadata[m.first] = m.second.str;
        continue;
      }
      StTensor t;
      t.dtype = kv.second.get("dtype")->str;
      for (auto& d : kv.second.get("shape")->arr) t.shape.push_back(int64_t(d.num));
      const Json* off = kv.second.get("data_offsets");
      const size_t b = size_t(off->arr[0].num), e = size_t(off->arr[1].num);
      if (e < b || base + e > st.bytes.size()) throw std::runtime_error(path + ": bad offsets for " + kv.first);
      t.data = st.bytes.data() + base + b;
      t.nbytes = e - b;
      st.tensors[kv.first] = t;
    }
    return st;
  }
};

// ---------------------------------------------------------------------------------------------
// 1. traits

static void test_traits() {
  struct E { uint32_t id; const char* name; int64_t bs; size_t bytes; bool sup; };
  const E expect[] = {
      {0, "f32", 1, 4, true},       {1, "f16", 1, 2, true},      {2, "q4_0", 32, 18, true},
      {8, "q8_0", 32, 34, true},    {12, "q4_K", 256, 144, true}, {14, "q6_K", 256, 210, true},
      {30, "bf16", 1, 2, true},     {3, "q4_1", 32, 20, false},  {13, "q5_K", 256, 176, false},
      {15, "q8_K", 256, 292, false}, {23, "iq4_xs", 256, 136, false}, {39, "mxfp4", 32, 17, false},
  };
  for (const E& e : expect) {
    const GgmlTypeTraits* t = ggml_type_traits(e.id);
    CHECK(t != nullptr, "traits(%u) missing", e.id);
    if (!t) continue;
    CHECK(std::strcmp(t->name, e.name) == 0, "traits(%u).name = %s, want %s", e.id, t->name, e.name);
    CHECK(t->block_size == e.bs && t->block_bytes == e.bytes && t->supported == e.sup, "traits(%u) layout", e.id);
  }
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 1000u, 0xFFFFFFFFu})
    CHECK(ggml_type_traits(id) == nullptr, "traits(%u) should be null", id);
  CHECK(traits(GgmlType::Q4_K).block_bytes == sizeof(block_q4_K), "q4_K size");
  CHECK(traits(GgmlType::Q6_K).block_bytes == sizeof(block_q6_K), "q6_K size");
  CHECK(row_size(GgmlType::Q4_0, 4096) == 4096 / 32 * 18, "row_size");
  std::printf("traits: ok\n");
}

// ---------------------------------------------------------------------------------------------
// 2. fp16 / bf16

#if defined(__x86_64__)
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
// Every AVX2 CPU has F16C (older compilers have no __builtin_cpu_supports name for it).
static bool have_f16c() { return __builtin_cpu_supports("avx2"); }
#endif

static bool is_nan_h(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

// Reference fp32 -> fp16 by exhaustive neighbour comparison in double (independent of the bit tricks).
static uint16_t ref_f2h(float f) {
  if (std::isnan(f)) return 0x7E00;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(double(f));
  // Find the largest finite half magnitude <= a, then compare with the next one up.
  uint16_t lo = 0;
  {
    uint16_t l = 0, h = 0x7BFF;
    if (a >= double(fp16_to_fp32(0x7BFF))) lo = 0x7BFF;
    else {
      while (l < h) {
        const uint16_t m = uint16_t((l + h + 1) / 2);
        if (double(fp16_to_fp32(m)) <= a) l = m; else h = uint16_t(m - 1);
      }
      lo = l;
    }
  }
  const double vlo = fp16_to_fp32(lo);
  const double vhi = lo == 0x7BFF ? 65536.0 : double(fp16_to_fp32(uint16_t(lo + 1)));  // 65536: the "next" step after max
  if (a == vlo) return sign | lo;
  const double dlo = a - vlo, dhi = vhi - a;
  uint16_t r;
  if (dlo < dhi) r = lo;
  else if (dhi < dlo) r = uint16_t(lo + 1);
  else r = (lo & 1) ? uint16_t(lo + 1) : lo;
  if (r > 0x7BFF) r = 0x7C00;  // rounded past the max: infinity
  return sign | r;
}

static void test_conversions() {
  // fp16 -> fp32 on all 65536 values: exact, and fp32 -> fp16 gives the value back.
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(uint16_t(h));
    if (is_nan_h(uint16_t(h))) {
      if (!std::isnan(f)) ++bad;
      continue;
    }
    if (fp32_to_fp16(f) != h) ++bad;
#if defined(__x86_64__)
    if (have_f16c() && fbits(hw_h2f(uint16_t(h))) != fbits(f)) ++bad;
#endif
  }
  CHECK(bad == 0, "fp16 round trip / exactness: %d bad", bad);

  // Ties: exactly halfway between consecutive halves must go to the even one.
  bad = 0;
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const double mid = (double(fp16_to_fp32(uint16_t(h))) + double(fp16_to_fp32(uint16_t(h + 1)))) / 2;
    const float f = float(mid);  // halfway points are representable in float
    if (double(f) != mid) { ++bad; continue; }
    const uint16_t want = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    if (fp32_to_fp16(f) != want || fp32_to_fp16(-f) != (want | 0x8000)) ++bad;
  }
  CHECK(bad == 0, "fp16 ties-to-even: %d bad", bad);
  CHECK(fp32_to_fp16(65519.996f) == 0x7BFF, "65519.996 -> max half");
  CHECK(fp32_to_fp16(65520.0f) == 0x7C00, "65520 -> inf (tie, max half is odd)");
  CHECK(fp32_to_fp16(1e30f) == 0x7C00 && fp32_to_fp16(-INFINITY) == 0xFC00, "overflow -> inf");
  CHECK(fp32_to_fp16(0x1p-25f) == 0x0000, "2^-25 ties to 0");
  CHECK(fp32_to_fp16(0x1.000002p-25f) == 0x0001, "just above 2^-25 -> smallest subnormal");
  CHECK(fp32_to_fp16(0x1.8p-24f) == 0x0002, "1.5 * 2^-24 ties to 2 (even)");
  CHECK(is_nan_h(fp32_to_fp16(NAN)), "NaN stays NaN");

  // Sweep of the float space against the independent reference (and the F16C instruction).
  bad = 0;
  int hw_bad = 0;
  std::mt19937 rng(123);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = rng();
    if (i & 1) u = (u & 0x87FFFFFFu) | 0x30000000u;  // bias half the samples into the fp16 range
    const float f = bitsf(u);
    const uint16_t got = fp32_to_fp16(f);
    if (std::isnan(f)) {
      if (!is_nan_h(got)) ++bad;
      continue;
    }
    if (got != ref_f2h(f)) ++bad;
#if defined(__x86_64__)
    if (have_f16c() && hw_f2h(f) != got) ++hw_bad;
#endif
  }
  CHECK(bad == 0, "fp32->fp16 vs reference: %d bad", bad);
  CHECK(hw_bad == 0, "fp32->fp16 vs F16C vcvtps2ph: %d bad", hw_bad);

  // bf16: round to nearest even on the upper 16 bits, NaN kept and quiet, overflow to inf.
  bad = 0;
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t u = rng();
    const float f = bitsf(u);
    const uint16_t got = fp32_to_bf16(f);
    if (std::isnan(f)) {
      if (!std::isnan(bf16_to_fp32(got)) || !(got & 0x40)) ++bad;
      continue;
    }
    const uint16_t lo = uint16_t(u >> 16);
    const uint32_t rem = u & 0xFFFF;
    uint16_t want = lo;
    if (rem > 0x8000 || (rem == 0x8000 && (lo & 1))) want = uint16_t(lo + 1);
    if (got != want) ++bad;
    if (fbits(bf16_to_fp32(got)) != (uint32_t(got) << 16)) ++bad;
  }
  CHECK(bad == 0, "bf16 rounding: %d bad", bad);
  CHECK(fp32_to_bf16(bitsf(0x3F808000u)) == 0x3F80, "bf16 tie to even (down)");
  CHECK(fp32_to_bf16(bitsf(0x3F818000u)) == 0x3F82, "bf16 tie to even (up)");
  CHECK(fp32_to_bf16(bitsf(0x7F7FFFFFu)) == 0x7F80, "bf16 overflow -> inf");
  CHECK(fp32_to_bf16(bitsf(0x7F800001u)) == 0x7FC0, "bf16 sNaN -> quiet NaN");
  CHECK(fp32_to_bf16(bitsf(0x00000001u)) == 0x0000 && fp32_to_bf16(bitsf(0x00008001u)) == 0x0001, "bf16 subnormals kept");
  std::printf("conversions: ok (%d failures so far)\n", g_failures);
}

// ---------------------------------------------------------------------------------------------
// 3. golden dequantisation (+ Q8_0/Q4_0 requantisation reproduces llama.cpp's blocks)

static std::string find_golden(const std::string& arg) {
  std::vector<std::string> cands;
  if (!arg.empty()) cands.push_back(arg);
  if (const char* e = std::getenv("LRO_GOLDEN_DIR")) cands.push_back(e);
  cands.push_back("shared/golden");
  cands.push_back("/work/shared/golden");
  for (auto& c : cands) {
    std::ifstream f(c + "/README.md");
    if (f) return c;
  }
  return "";
}

static void test_golden(const std::string& dir) {
  const char* types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q6_k"};
  for (const char* ty : types) {
    const std::string gg = dir + "/gguf/tiny-l3." + ty + ".gguf";
    const std::string st_path = dir + "/llamacpp/tiny-l3." + ty + ".dequant.safetensors";
    std::unique_ptr<GgufFile> g;
    Safetensors st;
    try {
      g = GgufFile::open(gg);
      st = Safetensors::load(st_path);
    } catch (const std::exception& e) {
      CHECK(false, "golden %s: %s", ty, e.what());
      continue;
    }
    JsonParser jp(st.metadata["ggml_types"]);
    const Json type_map = jp.value();
    int n_tensors = 0, n_rows = 0, bad_rows = 0, requant_blocks = 0, requant_same = 0;
    std::map<std::string, int> per_type;
    for (auto& kv : st.tensors) {
      const std::string& name = kv.first;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".rows") == 0) continue;
      const StTensor& vals = kv.second;
      auto rit = st.tensors.find(name + ".rows");
      const GgufTensorInfo* ti = g->find_tensor(name);
      CHECK(ti != nullptr && rit != st.tensors.end(), "%s: tensor %s missing", ty, name.c_str());
      if (!ti || rit == st.tensors.end()) continue;
      const Json* tn = type_map.get(name);
      CHECK(tn && tn->str == traits(ti->type).name, "%s: %s type %s vs golden %s", ty, name.c_str(),
            traits(ti->type).name, tn ? tn->str.c_str() : "?");
      const int64_t ne0 = ti->ne[0];
      CHECK(vals.dtype == "F32" && vals.shape.size() == 2 && vals.shape[1] == ne0, "%s: %s golden shape", ty, name.c_str());
      ++n_tensors;
      ++per_type[traits(ti->type).name];
      const size_t rs = row_size(ti->type, ne0);
      std::vector<float> out(static_cast<size_t>(ne0));
      for (int k = 0; k < 3; ++k) {
        int32_t row;
        std::memcpy(&row, rit->second.data + 4 * k, 4);
        dequantize_row(ti->type, ti->data + rs * size_t(row), out.data(), ne0);
        const float* want = reinterpret_cast<const float*>(vals.data) + size_t(k) * size_t(ne0);
        ++n_rows;
        if (std::memcmp(out.data(), want, size_t(ne0) * 4) != 0) {
          ++bad_rows;
          int64_t i = 0;
          while (fbits(out[size_t(i)]) == fbits(want[i])) ++i;
          if (bad_rows <= 3)
            std::printf("  %s %s row %d: first difference at %" PRId64 ": got %a want %a\n", ty, name.c_str(), row, i,
                        out[size_t(i)], want[i]);
        }
        // llama-quantize used ggml's reference Q8_0/Q4_0 quantisers; quantize_row follows the same
        // rules, so requantising the dequantised row should give back (nearly all of) the same blocks.
        if (ti->type == GgmlType::Q8_0 || ti->type == GgmlType::Q4_0) {
          std::vector<uint8_t> rq(rs);
          quantize_row(ti->type, want, rq.data(), ne0);
          const size_t bb = traits(ti->type).block_bytes;
          for (size_t b = 0; b < rs / bb; ++b) {
            ++requant_blocks;
            requant_same += std::memcmp(rq.data() + b * bb, ti->data + rs * size_t(row) + b * bb, bb) == 0;
          }
        }
      }
    }
    CHECK(n_tensors > 0, "%s: no tensors compared", ty);
    CHECK(bad_rows == 0, "%s: %d of %d rows differ from ggml's to_float", ty, bad_rows, n_rows);
    std::string types_seen;
    for (auto& pt : per_type) types_seen += " " + pt.first + "x" + std::to_string(pt.second);
    std::printf("golden %-7s: %d tensors, %d rows bit-exact %s (types:%s)", ty, n_tensors, n_rows - bad_rows,
                bad_rows ? "FAIL" : "ok", types_seen.c_str());
    if (requant_blocks) {
      std::printf(", requantised blocks identical %d/%d", requant_same, requant_blocks);
      CHECK(requant_same >= requant_blocks * 99 / 100, "%s: requantisation reproduces only %d/%d blocks", ty, requant_same,
            requant_blocks);
    }
    std::printf("\n");
  }
}

// ---------------------------------------------------------------------------------------------
// 4. quantize -> dequantize round trip

static std::vector<float> test_row(std::mt19937& rng, int kind, int n) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    switch (kind) {
      case 0: x[size_t(i)] = nd(rng); break;                                  // Gaussian
      case 1: x[size_t(i)] = nd(rng) * 0.02f + 0.01f; break;                  // small, offset
      case 2: x[size_t(i)] = (i % 97 == 5) ? 40.0f * nd(rng) : nd(rng); break;  // outliers
      case 3: x[size_t(i)] = 0.0f; break;                                     // zeros
      case 4: x[size_t(i)] = -std::fabs(nd(rng)) - 0.5f; break;               // all negative
      case 5: x[size_t(i)] = std::ldexp(nd(rng), (i / 256) % 20 - 10); break; // scale changing per 256
      default: x[size_t(i)] = 1.5f; break;                                    // constant
    }
  }
  return x;
}

static void test_roundtrip() {
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                            GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};
  CHECK(!can_quantize(GgmlType::Q5_K) && !can_quantize(GgmlType::Q4_1), "can_quantize unsupported");
  std::mt19937 rng(7);
  const int n = 4096;
  for (GgmlType t : types) {
    CHECK(can_quantize(t), "can_quantize(%s)", traits(t).name);
    double worst_ratio = 0, worst_rms = 0;
    for (int kind = 0; kind < 7; ++kind) {
      const std::vector<float> x = test_row(rng, kind, n);
      std::vector<uint8_t> q(row_size(t, n));
      std::vector<float> y(static_cast<size_t>(n));
      quantize_row(t, x.data(), q.data(), n);
      dequantize_row(t, q.data(), y.data(), n);
      double se = 0, sx = 0;
      const int bs = t == GgmlType::Q4_K || t == GgmlType::Q6_K ? 256 : 32;
      for (int b0 = 0; b0 < n; b0 += bs) {
        float amax = 0;
        for (int i = b0; i < b0 + bs; ++i) amax = std::max(amax, std::fabs(x[size_t(i)]));
        for (int i = b0; i < b0 + bs; ++i) {
          const double xi = x[size_t(i)], yi = y[size_t(i)], e = std::fabs(xi - yi);
          se += e * e, sx += xi * xi;
          // Per-element bounds (bound / |error| ratio tracked to report the margin).
          double bound = 0;
          switch (t) {
            case GgmlType::F32: bound = 0; break;
            case GgmlType::F16: bound = std::max(std::fabs(xi) * 0x1p-11, 0x1p-25); break;   // half an ulp
            case GgmlType::BF16: bound = std::fabs(xi) * 0x1p-8; break;
            // |x - q d| <= d/2 with d = amax/127, plus 127 * (fp16 rounding of d: half an ulp,
            // 2^-11 relative, or 2^-25 absolute where d is a half subnormal).
            case GgmlType::Q8_0: {
              const double d = amax / 127.0;
              bound = 0.5 * d + 127 * std::max(d * 0x1p-11, 0x1p-25) + 1e-30;
              break;
            }
            // Largest-magnitude element maps to -8 exactly; +8 d clamps to 7: error <= |d| (+ 8 *
            // the fp16 rounding of d).
            case GgmlType::Q4_0: {
              const double d = amax / 8.0;
              bound = d + 8 * std::max(d * 0x1p-11, 0x1p-25) + 1e-30;
              break;
            }
            // Affine 4-bit per 32 with 6-bit scales/mins: within one step of the super-block range.
            case GgmlType::Q4_K: bound = amax * 2.0 / 15.0 + 1e-30; break;
            case GgmlType::Q6_K: bound = amax / 31.0 + 1e-30; break;
            default: break;
          }
          if (bound == 0) {
            if (fbits(float(xi)) != fbits(float(yi))) CHECK(false, "%s: f32 round trip not exact", traits(t).name);
          } else if (e > bound) {
            CHECK(false, "%s kind %d elem %d: |%g - %g| = %g > %g", traits(t).name, kind, i, xi, yi, e, bound);
            break;
          } else {
            worst_ratio = std::max(worst_ratio, e / bound);
          }
        }
      }
      const double rms = sx > 0 ? std::sqrt(se / sx) : 0;
      // Relative RMS error on Gaussian-like rows (kinds 0, 2, 5): typical 4-bit ~0.1, 6-bit ~0.02.
      if (kind == 0 || kind == 5) {
        double lim = 0;
        switch (t) {
          case GgmlType::F16: lim = 5e-4; break;
          case GgmlType::BF16: lim = 4e-3; break;
          case GgmlType::Q8_0: lim = 0.008; break;
          case GgmlType::Q4_0: lim = 0.12; break;
          case GgmlType::Q4_K: lim = 0.10; break;
          case GgmlType::Q6_K: lim = 0.025; break;
          default: lim = 0; break;
        }
        CHECK(rms <= lim + 1e-12, "%s kind %d: relative rms error %.4f > %.4f", traits(t).name, kind, rms, lim);
        if (kind == 0) worst_rms = rms;
      }
      if (kind == 3) {
        bool zeros = true;
        for (float v : y) zeros &= v == 0.0f;
        CHECK(zeros, "%s: zeros do not round-trip to zeros", traits(t).name);
      }
    }
    std::printf("roundtrip %-5s: gaussian rel rms %.4f, worst |err|/bound %.3f\n", traits(t).name, worst_rms, worst_ratio);
  }
  // F16/BF16 rows go through exactly the scalar conversions.
  {
    std::vector<float> x = test_row(rng, 5, 1024);
    std::vector<uint16_t> h(1024), b(1024);
    quantize_row(GgmlType::F16, x.data(), h.data(), 1024);
    quantize_row(GgmlType::BF16, x.data(), b.data(), 1024);
    int bad = 0;
    for (int i = 0; i < 1024; ++i) bad += h[size_t(i)] != fp32_to_fp16(x[size_t(i)]) || b[size_t(i)] != fp32_to_bf16(x[size_t(i)]);
    CHECK(bad == 0, "quantize_row F16/BF16 differ from the scalar conversions");
  }
}

// ---------------------------------------------------------------------------------------------
// 5. matmul

// The activation quantisation the integer kernels use (block 32 for Q8_0/Q4_0, 256 for K-quants),
// replicated here: d = amax/127, q = nearest-even(x * 127/amax).
static int act_block(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: case GgmlType::Q4_0: return 32;
    case GgmlType::Q4_K: case GgmlType::Q6_K: return 256;
    default: return 0;
  }
}

static std::vector<float> quantise_acts(const std::vector<float>& x, int64_t n_in, int bs, std::vector<float>* dstep) {
  std::vector<float> xq(x.size());
  if (dstep) dstep->assign(x.size(), 0.0f);
  for (size_t b0 = 0; b0 < x.size(); b0 += size_t(bs)) {
    float amax = 0;
    for (size_t i = b0; i < b0 + size_t(bs); ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    for (size_t i = b0; i < b0 + size_t(bs); ++i) {
      xq[i] = float(std::nearbyint(x[i] * id)) * d;
      if (dstep) (*dstep)[i] = d;
    }
  }
  (void)n_in;
  return xq;
}

struct MmCase {
  GgmlType type;
  int64_t n_out, n_in, n_tok;
};

static std::vector<std::string> available_paths() {
  std::vector<std::string> out;
  for (const char* p : {"scalar", "avx2", "avx512-novnni", "avx512-nobf16", "avx512"}) {
    if (set_simd_path(p)) out.push_back(p);
  }
  set_simd_path("auto");
  return out;
}

// Bounds for y[t, o] (per output element):
//   vs the exact double reference on the dequantised W and the original f32 x:
//     |y - ref| <= sum_i |W_oi| * d_i / 2 * (1 + 1e-6)      (activation quantisation: each x_i is
//                                                            moved by at most half its block's step d_i)
//                + 4e-6 * sum_i |W_oi * xq_i|               (f32 accumulation and scale rounding)
//     where the first term is 0 for F32/F16 weights (f32 activations, no quantisation) and covers
//     the rounding of x to bf16 for BF16 weights;
//   vs the double reference on the quantised activations xq (isolates the kernel arithmetic):
//     |y - ref_q| <= 4e-6 * sum_i |W_oi * xq_i| + 1e-30;
//   path vs scalar path (same integer dot products, different f32 summation order):
//     |y_path - y_scalar| <= 4e-6 * sum_i |W_oi * xq_i| + 1e-30.
// (n_in <= 8192 here; the f32 accumulation error is far below 4e-6 relative to sum |w x| in practice,
// the worst case n*eps/16-lanes being ~3e-5 for 8192.)
static void check_matmul(const MmCase& c, const std::vector<std::string>& paths, ThreadPool& pool, std::mt19937& rng,
                         double& worst_act_ratio, double& worst_kernel_rel, double& worst_path_rel) {
  const GgmlType t = c.type;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // Weights: Gaussian rows of varying scale, quantised to the type; W = their dequantised values.
  std::vector<float> wsrc(size_t(c.n_out * c.n_in));
  for (int64_t o = 0; o < c.n_out; ++o) {
    const float s = std::ldexp(1.0f, int(o % 5) - 2);
    for (int64_t i = 0; i < c.n_in; ++i) wsrc[size_t(o * c.n_in + i)] = nd(rng) * s;
  }
  const size_t rs = row_size(t, c.n_in);
  std::vector<uint8_t> wq(rs * size_t(c.n_out));
  std::vector<float> W(wsrc.size());
  for (int64_t o = 0; o < c.n_out; ++o) {
    quantize_row(t, wsrc.data() + o * c.n_in, wq.data() + size_t(o) * rs, c.n_in);
    dequantize_row(t, wq.data() + size_t(o) * rs, W.data() + o * c.n_in, c.n_in);
  }
  // Activations: Gaussian with a few large outliers (as in real hidden states).
  std::vector<float> x(size_t(c.n_tok * c.n_in));
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 251 == 17) ? 20.0f * nd(rng) : nd(rng);
  const int bs = act_block(t);
  std::vector<float> dstep;
  std::vector<float> xq = bs ? quantise_acts(x, c.n_in, bs, &dstep) : x;
  if (!bs) dstep.assign(x.size(), 0.0f);
  if (t == GgmlType::BF16)  // x rounded to bf16 (nearest even): moved by at most half a step of 2^-7 |x|
    for (size_t i = 0; i < x.size(); ++i) {
      xq[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
      dstep[i] = std::ldexp(std::fabs(x[i]), -7);
    }

  const int64_t ldy = c.n_out + 3;
  std::vector<double> ref(size_t(c.n_tok * c.n_out)), refq(ref.size()), act_bound(ref.size()), mag(ref.size());
  for (int64_t tk = 0; tk < c.n_tok; ++tk)
    for (int64_t o = 0; o < c.n_out; ++o) {
      double s = 0, sq = 0, ab = 0, m = 0;
      const float* w = W.data() + o * c.n_in;
      const size_t xo = size_t(tk * c.n_in);
      for (int64_t i = 0; i < c.n_in; ++i) {
        s += double(w[i]) * x[xo + size_t(i)];
        sq += double(w[i]) * xq[xo + size_t(i)];
        ab += std::fabs(double(w[i])) * dstep[xo + size_t(i)] * 0.5;
        m += std::fabs(double(w[i]) * xq[xo + size_t(i)]);
      }
      const size_t k = size_t(tk * c.n_out + o);
      ref[k] = s, refq[k] = sq, act_bound[k] = ab * (1 + 1e-6), mag[k] = m;
    }

  std::vector<float> y_scalar;
  for (const std::string& p : paths) {
    set_simd_path(p);
    std::vector<float> y(size_t(c.n_tok * ldy), -7.0f);
    matmul(t, wq.data(), c.n_out, c.n_in, x.data(), c.n_tok, y.data(), ldy, pool);
    int bad = 0;
    for (int64_t tk = 0; tk < c.n_tok; ++tk) {
      for (int64_t o = 0; o < c.n_out; ++o) {
        const size_t k = size_t(tk * c.n_out + o);
        const double v = y[size_t(tk * ldy + o)];
        const double fp = 4e-6 * mag[k] + 1e-30;
        const double e1 = std::fabs(v - ref[k]), e2 = std::fabs(v - refq[k]);
        if (!(e1 <= act_bound[k] + fp) || !(e2 <= fp)) {
          if (++bad <= 3)
            std::printf("  %s %s [%" PRId64 "x%" PRId64 "] tok %" PRId64 ": y[%" PRId64 "] = %.9g ref %.9g (bound %.3g) refq %.9g (bound %.3g)\n",
                        p.c_str(), traits(t).name, c.n_out, c.n_in, tk, o, v, ref[k], act_bound[k] + fp, refq[k], fp);
        }
        if (act_bound[k] > 0) worst_act_ratio = std::max(worst_act_ratio, e1 / (act_bound[k] + fp));
        worst_kernel_rel = std::max(worst_kernel_rel, e2 / (mag[k] + 1e-30));
        if (!y_scalar.empty()) {
          const double e3 = std::fabs(v - y_scalar[size_t(tk * ldy + o)]);
          worst_path_rel = std::max(worst_path_rel, e3 / (mag[k] + 1e-30));
          if (!(e3 <= fp) && ++bad <= 3)
            std::printf("  %s vs scalar %s: y[%" PRId64 ",%" PRId64 "] %.9g vs %.9g\n", p.c_str(), traits(t).name, tk, o, v,
                        y_scalar[size_t(tk * ldy + o)]);
        }
      }
      for (int64_t o = c.n_out; o < ldy; ++o) bad += y[size_t(tk * ldy + o)] != -7.0f;  // padding untouched
    }
    CHECK(bad == 0, "matmul %s %s n_out %" PRId64 " n_in %" PRId64 " n_tok %" PRId64 ": %d bad", p.c_str(), traits(t).name,
          c.n_out, c.n_in, c.n_tok, bad);
    if (p == "scalar") y_scalar = y;

    // accumulate = true adds onto y.
    std::vector<float> y2 = y;
    matmul(t, wq.data(), c.n_out, c.n_in, x.data(), c.n_tok, y2.data(), ldy, pool, true);
    int bad_acc = 0;
    for (int64_t tk = 0; tk < c.n_tok; ++tk)
      for (int64_t o = 0; o < c.n_out; ++o) {
        // Kernels that split n_in into slabs add each slab's part to y separately, so compare
        // against the magnitude of the terms, not of the (possibly cancelling) result.
        const double want = 2.0 * y[size_t(tk * ldy + o)];
        bad_acc += !(std::fabs(y2[size_t(tk * ldy + o)] - want) <= 4e-6 * mag[size_t(tk * c.n_out + o)] + 1e-30);
      }
    CHECK(bad_acc == 0, "matmul accumulate %s %s: %d bad", p.c_str(), traits(t).name, bad_acc);
  }
  set_simd_path("auto");
}

static void test_matmul(bool quick) {
  const std::vector<std::string> paths = available_paths();
  std::printf("matmul paths:");
  for (auto& p : paths) {
    set_simd_path(p);
    std::printf(" %s(%s)", p.c_str(), cpu_features().c_str());
  }
  set_simd_path("auto");
  std::printf("; default %s\n", cpu_features().c_str());
  CHECK(!set_simd_path("bogus"), "unknown path accepted");

  ThreadPool pool2(2), pool1(1);
  std::mt19937 rng(99);
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                            GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};
  for (GgmlType t : types) {
    std::vector<MmCase> cases;
    for (int64_t n_in : {256, 768, 2304})
      for (int64_t n_out : {1, 33, 70})
        for (int64_t n_tok : {1, 3, 17, 64}) {
          if (quick && (n_in > 768 || n_tok == 17)) continue;
          cases.push_back({t, n_out, n_in, n_tok});
        }
    if (!quick) cases.push_back({t, 37, 8192, 40});  // token chunking (chunk < n_tok)
    if (t == GgmlType::Q8_0 || t == GgmlType::Q4_0) {
      cases.push_back({t, 33, 288, 5});     // odd block count
      cases.push_back({t, 33, 288, 1});     // decode: 9 blocks, a last group of 4 with one block
      cases.push_back({t, 17, 352, 1});     // decode: 11 blocks, a last group with three
      cases.push_back({t, 33, 320, 1});     // decode: 10 blocks, two groups of four and a last pair
      cases.push_back({t, 9, 32, 1});       // decode: one block
      cases.push_back({t, 45, 608, 530});   // the integer GEMM: two token chunks, two slabs (the last partial)
    }
    if (t == GgmlType::Q4_K) {
      cases.push_back({t, 45, 768, 530});  // the integer GEMM: two chunks, two slabs
      cases.push_back({t, 33, 512, 1});    // decode: 2 blocks, a last group of four with two
      cases.push_back({t, 8, 1024, 1});    // decode: one full group, no rest
      cases.push_back({t, 17, 1536, 1});   // decode: a full group and a last one with two
    }
    if (traits(t).block_size == 1) {
      cases.push_back({t, 33, 100, 5});   // n_in not a multiple of the vector width
      cases.push_back({t, 33, 100, 20});  // the same in the float GEMM (a slab's last vector partial)
      cases.push_back({t, 33, 100, 1});   // the same in decode
      cases.push_back({t, 33, 108, 1});   // decode: steps of 16, one of 8 and a scalar tail
      cases.push_back({t, 33, 80, 1});    // decode: AVX-512 bf16, a step of 64 and a partial one
      cases.push_back({t, 9, 7, 1});      // decode, n_in odd (no bf16 pairs)
      cases.push_back({t, 9, 7, 3});
      cases.push_back({t, 45, 600, 530});  // the float GEMM: two token chunks, two slabs (the last partial)
      // AVX-512 bf16, 16-64 tokens (bs_fits): one vector of tokens, a block of 12 rows and one of 1, two
      // slabs of pairs (the last partial); two vectors (2 lanes empty), blocks of 8 rows and a last
      // block of 12 pairs (64 and 40 tokens: the shapes above).
      cases.push_back({t, 13, 2304, 16});
      cases.push_back({t, 33, 600, 30});
    }
    double w_act = 0, w_kern = 0, w_path = 0;
    size_t idx = 0;
    for (const MmCase& c : cases) check_matmul(c, paths, (idx++ % 3 == 2) ? pool1 : pool2, rng, w_act, w_kern, w_path);
    std::printf("matmul %-5s: %zu shapes x %zu paths; worst error/activation bound %.3f, "
                "worst |y-ref_q|/sum|w xq| %.2e, worst path-vs-scalar %.2e\n",
                traits(t).name, cases.size(), paths.size(), w_act, w_kern, w_path);
  }
  // n_in = 0: empty sums.
  for (GgmlType t : {GgmlType::F32, GgmlType::Q4_0, GgmlType::Q4_K}) {
    float yy[3 * 5];
    for (float& v : yy) v = 3.0f;
    const float xx[1] = {0};
    const uint8_t ww[1] = {0};
    matmul(t, ww, 5, 0, xx, 3, yy, 5, pool1);
    bool zero = true;
    for (float v : yy) zero &= v == 0.0f;
    CHECK(zero, "n_in = 0 should give zeros (%s)", traits(t).name);
  }
  // Unsupported weight types throw.
  bool threw = false;
  try {
    float xx[32] = {0}, yy[1];
    uint8_t w[20] = {0};
    matmul(GgmlType::Q4_1, w, 1, 32, xx, 1, yy, 1, pool1);
  } catch (const std::exception&) {
    threw = true;
  }
  CHECK(threw, "matmul on q4_1 should throw");
}

// ---------------------------------------------------------------------------------------------
// Benchmark

static void bench() {
  ThreadPool pool(2);
  const int64_t n = 2048;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wsrc(size_t(n * n)), x(size_t(64 * n)), y(size_t(64 * n));
  for (auto& v : wsrc) v = nd(rng) * 0.05f;
  for (auto& v : x) v = nd(rng);
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                            GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};
  const std::vector<std::string> paths = available_paths();
  std::printf("\nbench: %" PRId64 "x%" PRId64 " weight, 2 threads, GFLOP/s (2*n_out*n_in*n_tok / time)\n", n, n);
  std::printf("%-6s", "type");
  for (auto& p : paths) std::printf(" | %-13s tok1  tok64", p.c_str());
  std::printf("\n");
  for (GgmlType t : types) {
    const size_t rs = row_size(t, n);
    std::vector<uint8_t> wq(rs * size_t(n));
    for (int64_t o = 0; o < n; ++o) quantize_row(t, wsrc.data() + o * n, wq.data() + size_t(o) * rs, n);
    std::printf("%-6s", traits(t).name);
    for (auto& p : paths) {
      set_simd_path(p);
      std::printf(" | %-13s", "");
      for (int64_t nt : {int64_t(1), int64_t(64)}) {
        const double flop = 2.0 * double(n) * double(n) * double(nt);
        matmul(t, wq.data(), n, n, x.data(), nt, y.data(), n, pool);  // warm-up
        // Best of 5 rounds of >= 0.1 s: the machine may be shared, the best round is the cleanest.
        double best = 0;
        for (int round = 0; round < 5; ++round) {
          int reps = 0;
          const auto t0 = std::chrono::steady_clock::now();
          double el = 0;
          do {
            matmul(t, wq.data(), n, n, x.data(), nt, y.data(), n, pool);
            ++reps;
            el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          } while (el < 0.1);
          best = std::max(best, flop * reps / el * 1e-9);
        }
        std::printf(" %5.1f", best);
        std::fflush(stdout);
      }
    }
    std::printf("\n");
  }
  set_simd_path("auto");
}

// A non-finite activation (inf, NaN) reaching a quantised product: every path gives a non-finite
// output row, not garbage from an out-of-range int conversion (UBSan found that in the AVX2
// activation quantiser).
static void test_nonfinite_activations() {
  ThreadPool pool(1);
  const int64_t n_in = 256, n_out = 8;
  std::vector<float> w(static_cast<size_t>(n_in * n_out));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.1 * static_cast<double>(i));
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
    std::vector<uint8_t> q(row_size(t, n_in) * n_out);
    for (int64_t r = 0; r < n_out; ++r) quantize_row(t, w.data() + r * n_in, q.data() + row_size(t, n_in) * r, n_in);
    for (float bad : {INFINITY, -INFINITY, NAN}) {
      std::vector<float> x(static_cast<size_t>(2 * n_in), 0.5f), y(static_cast<size_t>(2 * n_out));
      x[3] = bad;  // row 0 holds it, row 1 is clean
      for (const auto& p : available_paths()) {
        set_simd_path(p);
        matmul(t, q.data(), n_out, n_in, x.data(), 2, y.data(), n_out, pool);
        bool row0 = true, row1 = true;
        for (int64_t o = 0; o < n_out; ++o) {
          row0 &= !std::isfinite(y[o]);
          row1 &= std::isfinite(y[n_out + o]);
        }
        CHECK(row0 && row1, "%s %s activation %g: the row with it must be non-finite, the other finite", p.c_str(),
              traits(t).name, bad);
      }
      set_simd_path("auto");
    }
  }
  std::printf("non-finite activations: every path and quantised type gives a non-finite row\n");
}

// first_nonfinite: per type, a clean tensor gives -1; a non-finite scale (quantised: each of its
// f16 scale fields) or value gives the first element of its block.
static void test_first_nonfinite() {
  const int64_t n = 4 * 256;
  std::vector<float> w(static_cast<size_t>(n));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.07 * static_cast<double>(i));
  struct Field { GgmlType t; size_t offset; };  // byte offset of an f16 scale in a block
  for (const Field f : {Field{GgmlType::Q8_0, 0}, Field{GgmlType::Q4_0, 0}, Field{GgmlType::Q4_K, 0}, Field{GgmlType::Q4_K, 2},
                        Field{GgmlType::Q6_K, offsetof(block_q6_K, d)}, Field{GgmlType::F16, 0}, Field{GgmlType::BF16, 0},
                        Field{GgmlType::F32, 0}}) {
    const auto& tr = traits(f.t);
    std::vector<uint8_t> q(row_size(f.t, n));
    quantize_row(f.t, w.data(), q.data(), n);
    CHECK(first_nonfinite(f.t, q.data(), n) == -1, "%s: a clean tensor has no non-finite entry", tr.name);
    const int64_t block = 2;  // the third block (element 2 for plain types)
    uint8_t* at = q.data() + static_cast<size_t>(block) * tr.block_bytes + f.offset;
    if (f.t == GgmlType::F32) {
      const float inf = INFINITY;
      std::memcpy(at, &inf, 4);
    } else {
      const uint16_t nan = f.t == GgmlType::BF16 ? 0x7fc0 : 0x7e00;
      std::memcpy(at, &nan, 2);
    }
    CHECK(first_nonfinite(f.t, q.data(), n) == block * tr.block_size, "%s (scale at byte %zu): found at element %lld, expected %lld", tr.name,
          f.offset, static_cast<long long>(first_nonfinite(f.t, q.data(), n)), static_cast<long long>(block * tr.block_size));
  }
  std::printf("first_nonfinite: every type finds the damaged block\n");
}

// weight_grad_f32 on every path against the double reference: tile and chunk edges (n_out not a
// multiple of 6, n_in not of 16 / 32, more than one 128-token chunk), += onto what dw held, and the
// same bits for 1 and 2 threads.
static void test_weight_grad() {
  ThreadPool pool2(2), pool1(1);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Case {
    int64_t n, n_out, n_in;
  };
  int checked = 0;
  for (const std::string& p : available_paths()) {
    set_simd_path(p);
    for (const Case c : {Case{1, 1, 1}, Case{5, 7, 13}, Case{300, 70, 45}, Case{129, 13, 100}, Case{64, 6, 32}, Case{17, 64, 2048}}) {
      std::vector<float> dy(size_t(c.n * c.n_out)), x(size_t(c.n * c.n_in)), dw0(size_t(c.n_out * c.n_in));
      for (auto& v : dy) v = nd(rng);
      for (auto& v : x) v = nd(rng);
      for (auto& v : dw0) v = nd(rng);
      std::vector<float> dw = dw0, dw1 = dw0;
      weight_grad_f32(dw.data(), dy.data(), x.data(), c.n, c.n_out, c.n_in, pool2);
      weight_grad_f32(dw1.data(), dy.data(), x.data(), c.n, c.n_out, c.n_in, pool1);
      int bad = 0;
      for (int64_t o = 0; o < c.n_out; ++o)
        for (int64_t i = 0; i < c.n_in; ++i) {
          double ref = dw0[size_t(o * c.n_in + i)], mag = std::fabs(ref);
          for (int64_t t = 0; t < c.n; ++t) {
            const double term = double(dy[size_t(t * c.n_out + o)]) * x[size_t(t * c.n_in + i)];
            ref += term, mag += std::fabs(term);
          }
          const float v = dw[size_t(o * c.n_in + i)];
          if (!(std::fabs(v - ref) <= 4e-6 * mag + 1e-30) && ++bad <= 3)
            std::printf("  %s weight_grad [%" PRId64 " x %" PRId64 " x %" PRId64 "] dw[%" PRId64 ",%" PRId64 "] = %.9g ref %.9g\n",
                        p.c_str(), c.n, c.n_out, c.n_in, o, i, v, ref);
        }
      CHECK(bad == 0, "weight_grad_f32 %s n %" PRId64 " n_out %" PRId64 " n_in %" PRId64 ": %d bad", p.c_str(), c.n, c.n_out, c.n_in, bad);
      CHECK(std::memcmp(dw.data(), dw1.data(), dw.size() * sizeof(float)) == 0, "weight_grad_f32 %s: 1 and 2 threads differ", p.c_str());
      ++checked;
    }
  }
  set_simd_path("auto");
  std::printf("weight_grad_f32: %d cases on every path\n", checked);
}

int main(int argc, char** argv) {
  std::string golden_arg;
  bool do_bench = false, quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--golden" && i + 1 < argc) golden_arg = argv[++i];
    else if (a == "--bench") do_bench = true;
    else if (a == "--quick") quick = true;
    else {
      std::fprintf(stderr, "usage: %s [--golden DIR] [--bench] [--quick]\n", argv[0]);
      return 2;
    }
  }
  try {
    test_traits();
    test_conversions();
    const std::string dir = find_golden(golden_arg);
    if (dir.empty()) {
      std::printf("golden: SKIPPED (no golden directory found; pass --golden DIR)\n");
    } else {
      test_golden(dir);
    }
    test_roundtrip();
    test_matmul(quick);
    test_weight_grad();
    test_nonfinite_activations();
    test_first_nonfinite();
    if (do_bench) bench();
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    ++g_failures;
  }
  std::printf("\n%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
