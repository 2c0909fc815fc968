// Unicode helpers for the tokenizer: UTF-8 decoding with llama.cpp's error handling,
// codepoint flags, GPT-2 byte-level mapping, and the hand-written pre-tokenizer splitters.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lro {
namespace unicode {

enum : uint16_t {
  kUndefined = 0x01,   // unassigned (Cn); non-zero on purpose, see tools/gen_unicode_tables.py
  kNumber = 0x02,      // \p{N}
  kLetter = 0x04,      // \p{L}
  kSeparator = 0x08,   // \p{Z}
  kMark = 0x10,        // \p{M}
  kPunctuation = 0x20, // \p{P}
  kSymbol = 0x40,      // \p{S}
  kControl = 0x80,     // \p{C}
  kCategoryMask = 0xFF,
  kWhitespace = 0x100, // \s (White_Space)
};

constexpr uint32_t kReplacementChar = 0xFFFD;

uint16_t flags(uint32_t cp);
// Simple lowercase mapping, exact for every codepoint that maps into ASCII (all the
// case-insensitive contraction check needs); other codepoints are returned unchanged
// unless they are ASCII upper case.
uint32_t to_lower_ascii_target(uint32_t cp);

// Bytes of a UTF-8 sequence judged from its lead byte alone (1 for stray continuation bytes).
inline size_t utf8_seq_len(uint8_t lead) {
  static const uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes UTF-8; each malformed sequence becomes U+FFFD and consumes one byte
// (llama.cpp's behaviour, so pre-tokenization of broken input matches too).
std::vector<uint32_t> decode_utf8(const char* s, size_t n);
void append_utf8(std::string& out, uint32_t cp);

// GPT-2 byte-level alphabet: byte -> its stand-in character (UTF-8), and back.
const std::string& byte_to_bpe_char(uint8_t b);
int bpe_char_to_byte(uint32_t cp);  // -1 if cp is not in the byte-level alphabet

// Pre-tokenizer splitters. Each takes codepoints and their flags and appends the lengths
// (in codepoints) of consecutive pieces covering [begin, end).
void split_llama3(const uint32_t* cps, const uint16_t* fl, size_t begin, size_t end,
                  std::vector<size_t>& out);
void split_gpt2(const uint32_t* cps, const uint16_t* fl, size_t begin, size_t end,
                std::vector<size_t>& out);
// llama.cpp's fallback chain for pre-tokenizer "default": punctuation runs, then GPT-2,
// then digit runs, then ASCII digit triples.
void split_default(const uint32_t* cps, const uint16_t* fl, size_t n, std::vector<size_t>& out);

}  // namespace unicode
}  // namespace lro
