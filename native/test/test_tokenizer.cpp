// Standalone tokenizer check against the llama.cpp goldens (README §6) plus error and
// robustness cases. Build (from the repository root):
//   g++ -O2 -std=c++17 -Inative native/test/test_tokenizer.cpp native/tokenizer.cpp
//       native/unicode.cpp native/gguf.cpp native/ggml_types.cpp -o /tmp/test_tokenizer
// Run: /tmp/test_tokenizer [golden_dir]   (default ../shared/golden, then /work/shared/golden)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "core/gguf.h"
#include "model/tokenizer.h"

namespace {

using lro::GgufFile;
using lro::Tokenizer;

// ---- Minimal JSON reader: just enough for one golden line ----

struct JsonLine {
  std::string src, text;
  bool add_bos = false, parse_special = false;
  std::vector<int32_t> ids;
};

struct Parser {
  const std::string& s;
  size_t i = 0;
  bool ok = true;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  static void put_utf8(std::string& o, uint32_t cp) {
    if (cp < 0x80) {
      o.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      o.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      o.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      o.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      o.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  uint32_t hex4() {
    if (i + 4 > s.size()) {
      ok = false;
      return 0;
    }
    uint32_t v = static_cast<uint32_t>(std::strtoul(s.substr(i, 4).c_str(), nullptr, 16));
    i += 4;
    return v;
  }
  std::string str() {
    std::string o;
    if (!eat('"')) {
      ok = false;
      return o;
    }
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c != '\\') {
        o.push_back(c);
        continue;
      }
      if (i >= s.size()) break;
      char e = s[i++];
      switch (e) {
        case 'n': o.push_back('\n'); break;
        case 't': o.push_back('\t'); break;
        case 'r': o.push_back('\r'); break;
        case 'b': o.push_back('\b'); break;
        case 'f': o.push_back('\f'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            i += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(o, cp);
          break;
        }
        default: o.push_back(e);
      }
    }
    if (!eat('"')) ok = false;
    return o;
  }
  bool boolean() {
    ws();
    if (s.compare(i, 4, "true") == 0) {
      i += 4;
      return true;
    }
    if (s.compare(i, 5, "false") == 0) {
      i += 5;
      return false;
    }
    ok = false;
    return false;
  }
  std::vector<int32_t> int_array() {
    std::vector<int32_t> v;
    if (!eat('[')) {
      ok = false;
      return v;
    }
    if (eat(']')) return v;
    do {
      ws();
      size_t j = i;
      while (j < s.size() && (s[j] == '-' || (s[j] >= '0' && s[j] <= '9'))) ++j;
      if (j == i) {
        ok = false;
        return v;
      }
      v.push_back(static_cast<int32_t>(std::strtol(s.substr(i, j - i).c_str(), nullptr, 10)));
      i = j;
    } while (eat(','));
    if (!eat(']')) ok = false;
    return v;
  }
};

bool parse_line(const std::string& line, JsonLine& out) {
  Parser p{line};
  if (!p.eat('{')) return false;
  do {
    std::string key = p.str();
    if (!p.eat(':')) return false;
    if (key == "src") out.src = p.str();
    else if (key == "text") out.text = p.str();
    else if (key == "add_bos") out.add_bos = p.boolean();
    else if (key == "parse_special") out.parse_special = p.boolean();
    else if (key == "ids") out.ids = p.int_array();
    else return false;
  } while (p.ok && p.eat(','));
  return p.ok && p.eat('}');
}

std::string ids_str(const std::vector<int32_t>& v, size_t max = 40) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  if (v.size() > max) s += ",...(" + std::to_string(v.size()) + ")";
  return s + "]";
}

std::string shown(const std::string& t, size_t max = 70) {
  std::string o;
  for (unsigned char c : t.substr(0, max)) {
    if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else if (c == '\t') o += "\\t";
    else o.push_back(static_cast<char>(c));
  }
  return o + (t.size() > max ? "..." : "");
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int g_failures = 0;
void check(bool cond, const std::string& what) {
  if (!cond) {
    ++g_failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

bool has_special_text(const Tokenizer& tok, const std::string& text) {
  for (int32_t id = 0; id < tok.n_tokens(); ++id) {
    const auto t = tok.token_type(id);
    if ((t == lro::TokenType::CONTROL || t == lro::TokenType::USER_DEFINED || t == lro::TokenType::UNKNOWN) &&
        text.find(tok.token_text(id)) != std::string::npos)
      return true;
  }
  return false;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Golden file: exact ids for every line, plus decode round trips.
void run_golden(const std::string& jsonl, const std::string& gguf, bool bpe) {
  std::printf("== %s (vocab %s)\n", jsonl.c_str(), gguf.c_str());
  double t0 = now_s();
  auto file = GgufFile::open(gguf);
  auto tok = Tokenizer::from_gguf(*file);
  double t_load = now_s() - t0;

  std::ifstream in(jsonl);
  if (!in) {
    check(false, "cannot open " + jsonl);
    return;
  }
  std::vector<JsonLine> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    JsonLine jl;
    if (!parse_line(line, jl)) {
      check(false, "cannot parse a line of " + jsonl);
      continue;
    }
    lines.push_back(std::move(jl));
  }

  int exact = 0, shown_n = 0;
  t0 = now_s();
  std::vector<std::vector<int32_t>> got(lines.size());
  for (size_t k = 0; k < lines.size(); ++k) got[k] = tok->encode(lines[k].text, lines[k].add_bos, lines[k].parse_special);
  double t_enc = now_s() - t0;
  for (size_t k = 0; k < lines.size(); ++k) {
    const JsonLine& jl = lines[k];
    if (got[k] == jl.ids) {
      ++exact;
    } else if (shown_n++ < 15) {
      std::printf("  MISMATCH %s bos=%d special=%d \"%s\"\n    got  %s\n    want %s\n", jl.src.c_str(),
                  jl.add_bos, jl.parse_special, shown(jl.text).c_str(), ids_str(got[k]).c_str(),
                  ids_str(jl.ids).c_str());
    }
  }
  std::printf("  exact %d/%zu   load %.3f s, %zu encodes %.3f s\n", exact, lines.size(), t_load, lines.size(), t_enc);
  check(exact == static_cast<int>(lines.size()), jsonl + ": " + std::to_string(lines.size() - exact) + " mismatches");

  // Round trips, once per distinct text.
  int rt_ok = 0, rt_n = 0, rt_special_ok = 0, rt_special_n = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    const JsonLine& jl = lines[k];
    if (jl.add_bos || jl.parse_special) continue;
    ++rt_n;
    // Plain-text encoding must decode back to the input (special spellings included).
    const std::string back = tok->decode(tok->encode(jl.text, false, false), false);
    if (back == jl.text) {
      ++rt_ok;
    } else {
      std::printf("  ROUNDTRIP %s \"%s\" -> \"%s\"\n", jl.src.c_str(), shown(jl.text).c_str(), shown(back).c_str());
    }
    // With special parsing, rendering special tokens restores the text.
    if (!has_special_text(*tok, jl.text)) continue;
    ++rt_special_n;
    const std::string back2 = tok->decode(tok->encode(jl.text, false, true), true);
    if (back2 == jl.text) ++rt_special_ok;
    else if (bpe) std::printf("  ROUNDTRIP(special) %s \"%s\" -> \"%s\"\n", jl.src.c_str(), shown(jl.text).c_str(), shown(back2).c_str());
  }
  std::printf("  decode(encode(text)) == text: %d/%d; with special tokens rendered: %d/%d%s\n", rt_ok, rt_n,
              rt_special_ok, rt_special_n,
              bpe ? "" : " (SPM: llama.cpp inserts a dummy-prefix space after each special token)");
  if (bpe) check(rt_ok == rt_n && rt_special_ok == rt_special_n, jsonl + ": round trip");

  // Arbitrary bytes must never crash; valid UTF-8 must round-trip through the BPE vocab.
  std::mt19937 rng(1234);
  int fuzz_rt_bad = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int j = 0; j < len; ++j) {
      switch (rng() % 6) {
        case 0: s.push_back(static_cast<char>(rng() % 256)); break;
        case 1: s.push_back(" \t\r\n'"[rng() % 5]); break;
        case 2: s += "\xC3\xA9"; break;                        // é
        case 3: s += "\xF0\x9F\x98\x80"; break;                // emoji
        case 4: s += (rng() % 2) ? "<|eot_id|>" : "<s>"; break;
        default: s.push_back(static_cast<char>('a' + rng() % 26)); break;
      }
    }
    const bool special = rng() % 2;
    const auto ids = tok->encode(s, rng() % 2, special);
    for (int32_t id : ids) check(id >= 0 && id < tok->n_tokens(), "fuzz id out of range");
    const std::string back = tok->decode(ids, special);
    if (bpe && valid_utf8(s) && !special && back != s) ++fuzz_rt_bad;
  }
  std::printf("  fuzz: 3000 random inputs encoded; valid-UTF-8 round-trip failures: %d\n", fuzz_rt_bad);
  if (bpe) check(fuzz_rt_bad == 0, jsonl + ": fuzz round trip");
}

// ---- Error cases: each malformed field must raise GgufError naming its key ----

struct VocabSpec {
  std::string model = "gpt2", pre = "llama-bpe";
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  bool with_merges = true;
  std::function<void(lro::GgufWriter&)> extra;
};

std::vector<std::string> byte_alphabet() {
  std::vector<std::string> out;
  std::vector<bool> direct(256);
  for (int b = 0; b < 256; ++b) direct[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = direct[b] ? b : next++;
    std::string s;
    Parser::put_utf8(s, cp);
    out.push_back(s);
  }
  return out;
}

void expect_error(const std::string& name, const VocabSpec& spec, const std::string& must_mention) {
  const std::string path = "/tmp/test_tokenizer_" + name + ".gguf";
  lro::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", spec.model);
  w.set_string("tokenizer.ggml.pre", spec.pre);
  w.set_string_array("tokenizer.ggml.tokens", spec.tokens);
  if (!spec.types.empty()) w.set_i32_array("tokenizer.ggml.token_type", spec.types);
  if (spec.with_merges) w.set_string_array("tokenizer.ggml.merges", spec.merges);
  if (spec.extra) spec.extra(w);
  w.write(path);
  try {
    auto f = GgufFile::open(path);
    auto t = Tokenizer::from_gguf(*f);
    (void)t->encode("hello world", true, true);
    check(false, name + ": no error raised");
  } catch (const lro::GgufError& e) {
    const std::string msg = e.what();
    check(msg.find(must_mention) != std::string::npos, name + ": message does not name '" + must_mention + "': " + msg);
    std::printf("  ok %-22s %s\n", name.c_str(), msg.c_str());
  } catch (const std::exception& e) {
    check(false, name + ": wrong exception type: " + e.what());
  }
  std::remove(path.c_str());
}

void run_error_cases() {
  std::printf("== malformed vocabularies\n");
  VocabSpec base;
  base.tokens = byte_alphabet();
  base.tokens.push_back("he");
  base.tokens.push_back("<|begin_of_text|>");
  base.types.assign(base.tokens.size(), 1);
  base.types.back() = 3;
  base.merges = {"h e"};
  base.extra = [](lro::GgufWriter& w) { w.set_u32("tokenizer.ggml.bos_token_id", 257); };

  {  // the base itself must load and work
    const std::string path = "/tmp/test_tokenizer_ok.gguf";
    lro::GgufWriter w;
    w.set_string("tokenizer.ggml.model", base.model);
    w.set_string("tokenizer.ggml.pre", base.pre);
    w.set_string_array("tokenizer.ggml.tokens", base.tokens);
    w.set_i32_array("tokenizer.ggml.token_type", base.types);
    w.set_string_array("tokenizer.ggml.merges", base.merges);
    base.extra(w);
    w.write(path);
    auto f = GgufFile::open(path);
    auto t = Tokenizer::from_gguf(*f);
    auto ids = t->encode("<|begin_of_text|>hehe", true, true);
    check(ids == std::vector<int32_t>({257, 257, 256, 256}), "tiny synthetic vocab: got " + ids_str(ids));
    check(t->decode(ids, false) == "hehe", "tiny synthetic vocab decode");
    std::remove(path.c_str());
  }

  VocabSpec s = base;
  s.merges = {"h e", "xy"};
  expect_error("merge_without_space", s, "tokenizer.ggml.merges");

  s = base;
  s.extra = [](lro::GgufWriter& w) { w.set_u32("tokenizer.ggml.bos_token_id", 99999); };
  expect_error("bos_out_of_range", s, "tokenizer.ggml.bos_token_id");

  s = base;
  s.extra = [](lro::GgufWriter& w) {
    w.set_u32("tokenizer.ggml.bos_token_id", 257);
    w.set_u32("tokenizer.ggml.eos_token_id", 5000);
  };
  expect_error("eos_out_of_range", s, "tokenizer.ggml.eos_token_id");

  s = base;
  s.types.pop_back();
  expect_error("types_too_short", s, "tokenizer.ggml.token_type");

  s = base;
  s.types[3] = 9;
  expect_error("bad_token_type", s, "tokenizer.ggml.token_type");

  s = base;
  s.tokens[300 % s.tokens.size()] = s.tokens[0];
  expect_error("duplicate_token", s, "tokenizer.ggml.tokens");

  s = base;
  s.with_merges = false;
  expect_error("missing_merges", s, "tokenizer.ggml.merges");

  s = base;
  s.pre = "no-such-pre";
  expect_error("unknown_pre", s, "tokenizer.ggml.pre");

  s = base;
  s.model = "bert";
  expect_error("unknown_model", s, "tokenizer.ggml.model");

  s = base;
  s.tokens.clear();
  s.types.clear();
  expect_error("empty_tokens", s, "tokenizer.ggml.tokens");

  s = base;
  s.extra = [](lro::GgufWriter& w) {
    w.set_u32("tokenizer.ggml.bos_token_id", 257);
    w.set_f32_array("tokenizer.ggml.scores", {0.0f, 1.0f});
  };
  expect_error("scores_too_short", s, "tokenizer.ggml.scores");

  s = base;
  s.extra = [](lro::GgufWriter& w) { w.set_string("tokenizer.ggml.bos_token_id", "x"); };
  expect_error("bos_wrong_type", s, "tokenizer.ggml.bos_token_id");

  s = base;
  s.extra = [](lro::GgufWriter& w) {
    w.set_u32("tokenizer.ggml.bos_token_id", 257);
    w.set_string("tokenizer.ggml.add_eos_token", "yes");
  };
  expect_error("add_eos_wrong_type", s, "tokenizer.ggml.add_eos_token");

  s = base;
  s.extra = nullptr;  // default BOS id 11 exists, so use a vocab too small for it
  s.tokens = {"a", "b"};
  s.types = {1, 1};
  s.merges = {"a b"};
  expect_error("add_bos_without_bos", s, "tokenizer.ggml.add_bos_token");
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "../shared/golden";
  if (!exists(dir + "/tokenizer")) dir = "/work/shared/golden";
  try {
    run_golden(dir + "/tokenizer/llama3.jsonl", dir + "/tokenizer/ggml-vocab-llama-bpe-rebuilt.gguf", true);
    run_golden(dir + "/tokenizer/llama-spm.jsonl", dir + "/tokenizer/ggml-vocab-llama-spm.gguf", false);
    run_golden(dir + "/tokenizer/tiny.jsonl", dir + "/gguf/tiny-l3.f32.gguf", true);

    std::printf("== special token facts\n");
    {
      auto f = GgufFile::open(dir + "/tokenizer/ggml-vocab-llama-bpe-rebuilt.gguf");
      auto t = Tokenizer::from_gguf(*f);
      check(t->bos() == 128000 && t->eos() == 128001 && t->eot() == 128009, "llama3 bos/eos/eot");
      check(t->is_eog(128001) && t->is_eog(128009) && t->is_eog(128008) == false, "llama3 eog");
      check(t->find_token("<|eot_id|>") == 128009 && t->find_token("no such token") == -1, "llama3 find_token");
      check(t->token_to_piece(128009, false).empty() && t->token_to_piece(128009, true) == "<|eot_id|>", "piece of control");
      std::printf("  llama3: bos %d eos %d eot %d\n", t->bos(), t->eos(), t->eot());
    }
    {
      auto f = GgufFile::open(dir + "/gguf/tiny-l3.f32.gguf");
      auto t = Tokenizer::from_gguf(*f);
      check(t->bos() == 1997 && t->eos() == 1998, "tiny bos/eos");
      check(t->is_eog(1998) && t->is_eog(1999) && !t->is_eog(1997), "tiny eog");
      std::printf("  tiny: bos %d eos %d eot %d (llama.cpp reports 1998)\n", t->bos(), t->eos(), t->eot());
    }
    {
      auto f = GgufFile::open(dir + "/tokenizer/ggml-vocab-llama-spm.gguf");
      auto t = Tokenizer::from_gguf(*f);
      check(t->bos() == 1 && t->eos() == 2 && t->is_eog(2), "spm bos/eos");
      check(t->decode(t->encode("Hello world", false, false), false) == "Hello world", "spm decode strips dummy prefix");
      std::printf("  spm: bos %d eos %d eot %d\n", t->bos(), t->eos(), t->eot());
    }
    run_error_cases();
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 1;
  }
  std::printf(g_failures ? "\n%d FAILURES\n" : "\nALL PASSED\n", g_failures);
  return g_failures ? 1 : 0;
}
