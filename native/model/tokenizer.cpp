// Tokenizer matching llama.cpp's llama_tokenize / token_to_piece (see tokenizer.h).
//
// The algorithms follow llama.cpp's observable behaviour, including its quirks, because the
// ids must be identical: special-token partitioning one token at a time (longest first),
// SentencePiece-style score merging with a dummy-prefix space after every special token,
// byte-level BPE with rank merging over pre-tokenized words, and its fallbacks.
#include "model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <queue>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "core/gguf.h"
#include "model/unicode.h"

namespace lro {

namespace {

// llama.cpp keeps token attributes as bit flags (a token may gain CONTROL on top of its
// GGUF type when its text marks it as end-of-turn, etc.).
enum Attr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

uint32_t attr_of_type(TokenType t) {
  switch (t) {
    case TokenType::NORMAL: return kAttrNormal;
    case TokenType::UNKNOWN: return kAttrUnknown;
    case TokenType::CONTROL: return kAttrControl;
    case TokenType::USER_DEFINED: return kAttrUserDefined;
    case TokenType::UNUSED: return kAttrUnused;
    case TokenType::BYTE: return kAttrByte;
    default: return kAttrUndefined;
  }
}

enum class PreSplit { kLlama3, kGpt2, kDefault };

const char* const kKeyModel = "tokenizer.ggml.model";
const char* const kKeyPre = "tokenizer.ggml.pre";
const char* const kKeyTokens = "tokenizer.ggml.tokens";
const char* const kKeyScores = "tokenizer.ggml.scores";
const char* const kKeyTypes = "tokenizer.ggml.token_type";
const char* const kKeyMerges = "tokenizer.ggml.merges";
const char* const kKeyAddBos = "tokenizer.ggml.add_bos_token";
const char* const kKeyAddEos = "tokenizer.ggml.add_eos_token";
const char* const kKeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix";

bool in_list(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (s == n) return true;
  return false;
}

const std::string kSpaceEscape = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string escape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  for (char c : s) {
    if (c == ' ')
      out += kSpaceEscape;
    else
      out.push_back(c);
  }
  return out;
}

std::string unescape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpaceEscape.size(), kSpaceEscape) == 0) {
      out.push_back(' ');
      i += kSpaceEscape.size();
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Byte-level text back to bytes. Characters outside the alphabet are kept visible the
// way llama.cpp does, so a malformed vocab entry cannot silently vanish.
std::string bpe_text_to_bytes(const std::string& text) {
  std::string out;
  const auto cps = unicode::decode_utf8(text.data(), text.size());
  for (uint32_t cp : cps) {
    const int b = unicode::bpe_char_to_byte(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    std::string utf8;
    unicode::append_utf8(utf8, cp);
    static const char* hex = "0123456789abcdef";
    out += "[UNK_BYTE_0x";
    for (unsigned char c : utf8) {
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
    out += text + "]";
  }
  return out;
}

// A run of the input: either raw text [off, off+len) or an already-resolved special token.
struct Fragment {
  int32_t token;  // -1 for text
  size_t off, len;
};

class GgufTokenizer final : public Tokenizer {
 public:
  explicit GgufTokenizer(const GgufFile& file);

  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool render_special) const override;
  std::string token_to_piece(int32_t id, bool render_special) const override;

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw GgufError(path_ + ": metadata '" + key + "': " + what);
  }
  void load_vocab(const GgufFile& file);
  void load_merges(const GgufFile& file);
  void load_special_ids(const GgufFile& file);
  void detect_special_tokens();
  void build_caches();

  std::vector<Fragment> partition(const std::string& text, bool parse_special) const;
  void encode_spm(const std::string& text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& raw, std::vector<int32_t>& out) const;
  const std::string& piece_text(int32_t id) const;

  std::string path_;
  int32_t eom_ = -1;
  bool spm_ = false;
  PreSplit split_ = PreSplit::kDefault;
  bool ignore_merges_ = false;
  bool add_space_prefix_ = false;
  std::vector<uint32_t> attrs_;
  std::vector<int32_t> special_cache_;   // CONTROL / USER_DEFINED / UNKNOWN, longest first
  std::vector<std::string> pieces_;      // token_to_piece with special = true
  std::array<int32_t, 256> byte_tok_{};  // SPM byte fallback, -1 if none

  // BPE: every string that can appear as a symbol gets an id. Ids below n_tokens are vocab
  // ids; the rest (merge operands / results missing from the vocab) live in extra_strings_.
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::vector<std::string> extra_strings_;
  std::array<int32_t, 256> byte_sym_{};
  std::unordered_map<uint64_t, Merge> merges_;
};

GgufTokenizer::GgufTokenizer(const GgufFile& file) : path_(file.path()) {
  const GgufValue& model = file.get(kKeyModel);
  model_ = model.as_string(kKeyModel);
  if (model_ == "llama") {
    spm_ = true;
  } else if (model_ != "gpt2") {
    fail(kKeyModel, "unsupported tokenizer model '" + model_ + "' (supported: llama, gpt2)");
  }

  const GgufValue* pre = file.find(kKeyPre);
  pre_ = pre ? pre->as_string(kKeyPre) : std::string();

  // Defaults as llama.cpp sets them before reading the GGUF overrides.
  if (spm_) {
    bos_ = 1;
    eos_ = 2;
    unk_ = 0;
    add_space_prefix_ = true;
    add_bos_ = true;
    add_eos_ = false;
  } else {
    bos_ = 11;
    eos_ = 11;
    unk_ = -1;
    add_space_prefix_ = false;
    if (pre_.empty() || pre_ == "default") {
      split_ = PreSplit::kDefault;
      if (pre_.empty()) pre_ = "default";
    } else if (in_list(pre_, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                              "midm-2.0", "lfm2", "jina-v5-nano"})) {
      split_ = PreSplit::kLlama3;
      ignore_merges_ = true;
      add_bos_ = true;
    } else if (in_list(pre_, {"dbrx", "smaug-bpe"})) {
      split_ = PreSplit::kLlama3;
    } else if (in_list(pre_, {"gpt-2", "phi-2", "gigachat", "a.x-4.0", "mellum", "exaone4", "mpt",
                              "olmo", "jais", "trillion", "granite-docling"})) {
      // GPT-2 regex only; the BERT-style vocabularies llama.cpp also maps here need extra
      // separator / strip rules and are rejected below instead.
      split_ = PreSplit::kGpt2;
    } else {
      fail(kKeyPre, "unsupported pre-tokenizer '" + pre_ +
                        "' (supported: llama-bpe and its aliases, gpt-2 family, default)");
    }
  }
  if (const GgufValue* v = file.find(kKeyAddSpacePrefix)) add_space_prefix_ = v->as_bool(kKeyAddSpacePrefix);

  load_vocab(file);
  if (!spm_) load_merges(file);
  load_special_ids(file);
  detect_special_tokens();
  build_caches();
}

void GgufTokenizer::load_vocab(const GgufFile& file) {
  const GgufValue& tv = file.get(kKeyTokens);
  const auto& toks = tv.as_array(kKeyTokens);
  if (tv.elem_type != GgufValueType::STRING) fail(kKeyTokens, "must be an array of strings");
  if (toks.empty()) fail(kKeyTokens, "is empty");
  if (toks.size() > static_cast<size_t>(INT32_MAX)) fail(kKeyTokens, "has too many entries");
  const size_t n = toks.size();

  const GgufValue* sv = file.find(kKeyScores);
  if (sv) {
    const auto& arr = sv->as_array(kKeyScores);
    if (sv->elem_type != GgufValueType::F32 && sv->elem_type != GgufValueType::I32)
      fail(kKeyScores, "must be an array of f32 or i32");
    if (arr.size() < n)
      fail(kKeyScores, "has " + std::to_string(arr.size()) + " entries for " + std::to_string(n) + " tokens");
  }
  const GgufValue* tyv = file.find(kKeyTypes);
  if (tyv) {
    const auto& arr = tyv->as_array(kKeyTypes);
    if (arr.size() < n)
      fail(kKeyTypes, "has " + std::to_string(arr.size()) + " entries for " + std::to_string(n) + " tokens");
  }

  tokens_.resize(n);
  types_.assign(n, TokenType::NORMAL);
  scores_.assign(n, 0.0f);
  attrs_.assign(n, kAttrNormal);
  // No reserve(): llama.cpp fills an identically-typed map in the same order without one,
  // and its end-of-turn detection depends on that map's iteration order (see
  // detect_special_tokens).
  for (size_t i = 0; i < n; ++i) {
    std::string word = toks[i].as_string(kKeyTokens);
    if (word.empty()) word = "[EMPTY_" + std::to_string(i) + "]";
    auto ins = token_to_id_.emplace(word, static_cast<int32_t>(i));
    if (!ins.second)
      fail(kKeyTokens, "duplicate token '" + word + "' at ids " + std::to_string(ins.first->second) +
                           " and " + std::to_string(i));
    tokens_[i] = std::move(word);
    if (sv) scores_[i] = static_cast<float>(sv->arr[i].as_float(kKeyScores));
    if (tyv) {
      const int64_t t = tyv->arr[i].as_int(kKeyTypes);
      if (t < 0 || t > 6)
        fail(kKeyTypes, "entry " + std::to_string(i) + " has invalid token type " + std::to_string(t));
      types_[i] = static_cast<TokenType>(t);
      attrs_[i] = attr_of_type(types_[i]);
    }
  }
}

void GgufTokenizer::load_merges(const GgufFile& file) {
  const GgufValue& mv = file.get(kKeyMerges);
  const auto& merges = mv.as_array(kKeyMerges);
  if (!merges.empty() && mv.elem_type != GgufValueType::STRING) fail(kKeyMerges, "must be an array of strings");
  if (merges.size() > static_cast<size_t>(INT32_MAX)) fail(kKeyMerges, "has too many entries");

  const int32_t n_tokens = static_cast<int32_t>(tokens_.size());
  std::unordered_map<std::string, int32_t> extra_ids;
  auto intern = [&](const std::string& s) -> int32_t {
    auto it = token_to_id_.find(s);
    if (it != token_to_id_.end()) return it->second;
    auto ins = extra_ids.emplace(s, n_tokens + static_cast<int32_t>(extra_strings_.size()));
    if (ins.second) extra_strings_.push_back(s);
    return ins.first->second;
  };
  for (int b = 0; b < 256; ++b) byte_sym_[b] = intern(unicode::byte_to_bpe_char(static_cast<uint8_t>(b)));

  merges_.reserve(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& line = merges[i].as_string(kKeyMerges);
    // Searching from 1 lets a merge's left operand be a lone space, as llama.cpp allows.
    const size_t sp = line.find(' ', 1);
    if (sp == std::string::npos)
      fail(kKeyMerges, "entry " + std::to_string(i) + " ('" + line + "') has no space separating two tokens");
    const std::string left = line.substr(0, sp), right = line.substr(sp + 1);
    if (right.empty() || right.find(' ') != std::string::npos)
      fail(kKeyMerges, "entry " + std::to_string(i) + " ('" + line + "') is not 'left right'");
    const int32_t l = intern(left), r = intern(right);
    joined = left;
    joined += right;
    const int32_t res = intern(joined);
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    merges_.emplace(key, Merge{static_cast<int32_t>(i), res});  // first occurrence wins
  }
}

void GgufTokenizer::load_special_ids(const GgufFile& file) {
  const int64_t n = static_cast<int64_t>(tokens_.size());
  auto read_id = [&](const char* key, int32_t& id) {
    if (id >= n) id = -1;  // a default that does not fit this vocab means "none"
    const GgufValue* v = file.find(key);
    if (!v) return;
    const int64_t x = v->as_int(key);
    if (x < 0 || x >= n) fail(key, "token id " + std::to_string(x) + " is out of range [0, " + std::to_string(n) + ")");
    id = static_cast<int32_t>(x);
  };
  read_id("tokenizer.ggml.bos_token_id", bos_);
  read_id("tokenizer.ggml.eos_token_id", eos_);
  read_id("tokenizer.ggml.eot_token_id", eot_);
  read_id("tokenizer.ggml.unknown_token_id", unk_);
  read_id("tokenizer.ggml.eom_token_id", eom_);

  if (const GgufValue* v = file.find(kKeyAddBos)) add_bos_ = v->as_bool(kKeyAddBos);
  if (const GgufValue* v = file.find(kKeyAddEos)) add_eos_ = v->as_bool(kKeyAddEos);
  if (add_bos_ && bos_ < 0) fail(kKeyAddBos, "is true but there is no BOS token");
  if (add_eos_ && eos_ < 0) fail(kKeyAddEos, "is true but there is no EOS token");
}

// llama.cpp recognises end-of-turn / FIM / end-of-generation tokens by their text, forces
// them to CONTROL (which decides whether plain-text encoding may split them), and picks
// the EOT token as the first match in its token map's iteration order.
void GgufTokenizer::detect_special_tokens() {
  const std::vector<uint32_t> gguf_attrs = attrs_;
  auto mark_control = [&](int32_t id) { attrs_[id] |= kAttrControl; };
  int32_t& eom = eom_;
  int32_t fim_pad = -1, fim_rep = -1, fim_sep = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1;
  // End of turn by name, in this order of preference: a vocabulary with both <|eot_id|> and
  // <|end_of_text|> (Llama 3) ends turns with <|eot_id|>, whatever order the map iterates in.
  if (eot_ < 0)
    for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                             "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
                             "<end_of_utterance>"}) {
      auto it = token_to_id_.find(name);
      if (it == token_to_id_.end()) continue;
      eot_ = it->second;
      mark_control(eot_);
      break;
    }
  for (const auto& kv : token_to_id_) {
    const std::string& t = kv.first;
    const int32_t id = kv.second;
    if (eom < 0 && t == "<|eom_id|>") {
      eom = id;
      mark_control(id);
    }
    if (fim_pre < 0 && in_list(t, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>",
                                   "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
                                   "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>"})) {
      fim_pre = id;
      mark_control(id);
    }
    if (fim_suf < 0 && in_list(t, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>",
                                   "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
                                   "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>"})) {
      fim_suf = id;
      mark_control(id);
    }
    if (fim_mid < 0 && in_list(t, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>",
                                   "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
                                   "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>"})) {
      fim_mid = id;
      mark_control(id);
    }
    if (fim_pad < 0 && in_list(t, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"})) {
      fim_pad = id;
      mark_control(id);
    }
    if (fim_rep < 0 && in_list(t, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"})) {
      fim_rep = id;
      mark_control(id);
    }
    if (fim_sep < 0 && t == "<|file_sep|>") {
      fim_sep = id;
      mark_control(id);
    }
  }

  std::vector<int32_t> eog;
  for (int32_t id : {fim_pad, fim_rep, fim_sep})
    if (id >= 0) eog.push_back(id);
  for (const auto& kv : token_to_id_) {
    if (in_list(kv.first, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                           "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                           "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                           "<turn|>", "<|tool_response>",
                           "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["})) {
      eog.push_back(kv.second);
      mark_control(kv.second);
    }
  }
  // gpt-oss style vocabularies render these as text.
  for (const char* t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    auto it = token_to_id_.find(t);
    if (it != token_to_id_.end()) attrs_[it->second] = kAttrUserDefined;
  }
  for (int32_t id : {eos_, eot_, eom})
    if (id >= 0) eog.push_back(id);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

  auto has = [&](const char* t) -> int32_t {
    auto it = token_to_id_.find(t);
    if (it == token_to_id_.end()) return -1;
    return std::binary_search(eog.begin(), eog.end(), it->second) ? it->second : -1;
  };
  auto drop = [&](int32_t id) { eog.erase(std::remove(eog.begin(), eog.end(), id), eog.end()); };
  // Harmony / solar-open vocabularies: "<|end|>" ends a message, not the generation.
  const int32_t end_id = has("<|end|>");
  if (end_id >= 0 && ((has("<|return|>") >= 0 && (has("<|call|>") >= 0 || has("<|calls|>") >= 0)) ||
                      ((has("<|call|>") >= 0 || has("<|calls|>") >= 0) && has("<|flush|>") >= 0))) {
    drop(end_id);
    attrs_[end_id] = kAttrUserDefined;
  }
  const int32_t s_id = has("</s>");
  if (s_id >= 0 && has("<|tool_response>") >= 0) {
    drop(s_id);
    attrs_[s_id] = kAttrNormal;
  }
  eog_ids_ = std::move(eog);

  // token_type() reports the effective type, so callers see what encode/decode act on.
  for (size_t id = 0; id < attrs_.size(); ++id) {
    if (attrs_[id] == gguf_attrs[id]) continue;
    const uint32_t a = attrs_[id];
    types_[id] = (a & kAttrControl)       ? TokenType::CONTROL
                 : (a & kAttrUserDefined) ? TokenType::USER_DEFINED
                 : (a & kAttrUnknown)     ? TokenType::UNKNOWN
                 : (a & kAttrByte)        ? TokenType::BYTE
                 : (a & kAttrNormal)      ? TokenType::NORMAL
                 : (a & kAttrUnused)      ? TokenType::UNUSED
                                          : TokenType::UNDEFINED;
  }
}

void GgufTokenizer::build_caches() {
  const int32_t n = static_cast<int32_t>(tokens_.size());
  for (int32_t id = 0; id < n; ++id)
    if (attrs_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_cache_.push_back(id);
  // llama.cpp's order among equal lengths is unspecified (std::sort); ids break ties here.
  std::stable_sort(special_cache_.begin(), special_cache_.end(),
                   [&](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });

  pieces_.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const uint32_t a = attrs_[id];
    const std::string& text = tokens_[id];
    if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
      pieces_[id] = text;
    } else if (a & kAttrNormal) {
      pieces_[id] = spm_ ? unescape_spaces(text) : bpe_text_to_bytes(text);
    } else if (a & kAttrByte) {
      // "<0xAB>" -> byte 0xAB, parsed as leniently as llama.cpp's strtol.
      if (text.size() >= 4) {
        const std::string hex = text.substr(3, 2);
        pieces_[id] = std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
      }
    }
  }

  if (spm_) {
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
      auto it = token_to_id_.find(name);
      if (it == token_to_id_.end()) it = token_to_id_.find(std::string(1, static_cast<char>(b)));
      byte_tok_[b] = it != token_to_id_.end() ? it->second : -1;
    }
  }
}

std::vector<Fragment> GgufTokenizer::partition(const std::string& text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : special_cache_) {
    // Without parse_special, USER_DEFINED tokens are still split out (as in HF tokenizers).
    if (!parse_special && (attrs_[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string& tok = tokens_[id];
    if (text.find(tok) == std::string::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.off + f.len;
      const std::string_view window(text.data(), end);
      size_t cur = f.off;
      while (cur < end) {
        const size_t m = window.find(tok, cur);
        if (m == std::string_view::npos) break;
        if (m > cur) next.push_back({-1, cur, m - cur});
        next.push_back({id, 0, 0});
        cur = m + tok.size();
      }
      if (cur < end) next.push_back({-1, cur, end - cur});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> GgufTokenizer::encode(const std::string& text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  const std::vector<Fragment> frags = partition(text, parse_special);
  if (add_bos && add_bos_) out.push_back(bos_);
  if (spm_) {
    // SentencePiece's dummy prefix: llama.cpp adds it to the first text and to every text
    // that follows a special token.
    bool prev_special = true;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string piece;
      if (add_space_prefix_ && prev_special) piece = " ";
      piece.append(text, f.off, f.len);
      encode_spm(escape_spaces(piece), out);
      prev_special = false;
    }
  } else {
    for (const Fragment& f : frags) {
      if (f.token >= 0)
        out.push_back(f.token);
      else
        encode_bpe(std::string_view(text).substr(f.off, f.len), out);
    }
  }
  if (add_bos && add_eos_) out.push_back(eos_);
  return out;
}

// ---- SentencePiece (llama.cpp "llm_tokenizer_spm") ----

void GgufTokenizer::encode_spm(const std::string& text, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t prev, next;
    size_t off, n;
  };
  struct Bigram {
    int32_t left, right;
    float score;
    size_t size;
  };
  // Highest score first; equal scores resolve to the leftmost pair.
  auto lower_priority = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Sym> syms;
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min(unicode::utf8_seq_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, off, len});
    off += len;
  }
  if (syms.empty()) return;

  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower_priority)> queue(lower_priority);
  // Which two symbols formed each merged text; consulted only for symbols that end up
  // outside the vocabulary.
  std::unordered_map<std::string, std::pair<int32_t, int32_t>> rev_merge;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    std::string s = text.substr(syms[l].off, syms[l].n + syms[r].n);
    auto it = token_to_id_.find(s);
    if (it == token_to_id_.end()) return;
    queue.push({l, r, scores_[it->second], s.size()});
    rev_merge[std::move(s)] = {l, r};
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = syms[bg.left];
    Sym& r = syms[bg.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }

  auto emit_bytes = [&](size_t off, size_t n) {
    for (size_t j = 0; j < n; ++j) {
      const int32_t t = byte_tok_[static_cast<uint8_t>(text[off + j])];
      if (t >= 0)
        out.push_back(t);
      else if (unk_ >= 0)
        out.push_back(unk_);
    }
  };
  // Recursion depth is bounded by the merge tree; the cap only guards malformed vocabs.
  auto resegment = [&](auto& self, int32_t i, int depth) -> void {
    const Sym& s = syms[i];
    const std::string piece = text.substr(s.off, s.n);
    auto it = token_to_id_.find(piece);
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
    auto rm = rev_merge.find(piece);
    if (rm == rev_merge.end() || depth > 256) {
      emit_bytes(s.off, s.n);
      return;
    }
    const auto lr = rm->second;
    self(self, lr.first, depth + 1);
    self(self, lr.second, depth + 1);
  };
  for (int32_t i = 0; i != -1; i = syms[i].next) resegment(resegment, i, 0);
}

// ---- Byte-level BPE (llama.cpp "llm_tokenizer_bpe") ----

void GgufTokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  const std::vector<uint32_t> cps = unicode::decode_utf8(text.data(), text.size());
  std::vector<uint16_t> fl(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) fl[i] = unicode::flags(cps[i]);

  std::vector<size_t> lens;
  lens.reserve(cps.size() / 3 + 4);
  switch (split_) {
    case PreSplit::kLlama3: unicode::split_llama3(cps.data(), fl.data(), 0, cps.size(), lens); break;
    case PreSplit::kGpt2: unicode::split_gpt2(cps.data(), fl.data(), 0, cps.size(), lens); break;
    case PreSplit::kDefault: unicode::split_default(cps.data(), fl.data(), cps.size(), lens); break;
  }

  // Words are re-encoded from codepoints, so malformed input bytes become U+FFFD exactly
  // as in llama.cpp.
  std::string raw;
  size_t start = 0;
  for (size_t len : lens) {
    raw.clear();
    for (size_t i = start; i < start + len; ++i) unicode::append_utf8(raw, cps[i]);
    start += len;
    bpe_word(raw, out);
  }
}

void GgufTokenizer::bpe_word(const std::string& raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  if (ignore_merges_) {
    // Llama 3 (HF ignore_merges): a word that is itself a token is emitted whole, even when
    // the merges would have split it differently.
    std::string enc;
    enc.reserve(raw.size() * 2);
    for (unsigned char b : raw) enc += unicode::byte_to_bpe_char(b);
    auto it = token_to_id_.find(enc);
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  struct Sym {
    int32_t id, prev, next;
    bool alive;
  };
  struct Bigram {
    int32_t rank, left, right, left_id, right_id, result;
  };
  // Lowest rank first; equal ranks resolve to the leftmost pair.
  auto lower_priority = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  const int32_t n = static_cast<int32_t>(raw.size());
  std::vector<Sym> syms(n);
  for (int32_t i = 0; i < n; ++i)
    syms[i] = {byte_sym_[static_cast<unsigned char>(raw[i])], i - 1, i + 1 < n ? i + 1 : -1, true};

  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower_priority)> queue(lower_priority);
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(syms[l].id)) << 32) |
                         static_cast<uint32_t>(syms[r].id);
    auto it = merges_.find(key);
    if (it == merges_.end()) return;
    queue.push({it->second.rank, l, r, syms[l].id, syms[r].id, it->second.result});
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = syms[bg.left];
    Sym& r = syms[bg.right];
    // Symbols only grow, so unchanged ids mean the pair is still adjacent and current.
    if (!l.alive || !r.alive || l.id != bg.left_id || r.id != bg.right_id) continue;
    l.id = bg.result;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }

  const int32_t n_tokens = static_cast<int32_t>(tokens_.size());
  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const int32_t id = syms[i].id;
    if (id < n_tokens) {
      out.push_back(id);
      continue;
    }
    // A symbol outside the vocab: llama.cpp looks up each byte of its byte-level text as a
    // one-byte token (which rarely exists) and drops the rest.
    for (char c : extra_strings_[id - n_tokens]) {
      auto it = token_to_id_.find(std::string(1, c));
      if (it != token_to_id_.end()) out.push_back(it->second);
    }
  }
}

// ---- Decoding ----

const std::string& GgufTokenizer::piece_text(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(pieces_.size()))
    throw std::out_of_range("token id " + std::to_string(id) + " out of range [0, " +
                            std::to_string(pieces_.size()) + ")");
  return pieces_[id];
}

std::string GgufTokenizer::token_to_piece(int32_t id, bool render_special) const {
  const std::string& p = piece_text(id);
  if (!render_special && (attrs_[id] & (kAttrControl | kAttrUnknown))) return std::string();
  return p;
}

std::string GgufTokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  // llama_detokenize drops the dummy-prefix space of the first piece (SentencePiece); the
  // "clean up tokenization spaces" pass is left out so that decode(encode(s)) == s.
  bool strip_space = add_space_prefix_;
  for (int32_t id : ids) {
    const std::string& p = piece_text(id);
    const bool strip = strip_space;
    strip_space = false;
    if (!render_special && (attrs_[id] & (kAttrControl | kAttrUnknown))) continue;
    if (strip && !p.empty() && p[0] == ' ')
      out.append(p, 1, std::string::npos);
    else
      out += p;
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  return std::make_unique<GgufTokenizer>(file);
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

int32_t Tokenizer::find_token(const std::string& text) const {
  auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? -1 : it->second;
}

}  // namespace lro
