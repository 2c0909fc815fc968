#include "model/unicode.h"

#include <array>

#include "model/unicode_tables.h"

namespace lro {
namespace unicode {

namespace {

// One flat array (2.2 MB) instead of a binary search per codepoint: the splitters look
// flags up several times per character.
const std::vector<uint16_t>& flag_table() {
  static const std::vector<uint16_t> table = [] {
    using namespace unicode_tables;
    std::vector<uint16_t> t(0x110000, kUndefined);
    for (uint32_t i = 0; i < kNumFlagRanges; ++i) {
      const uint32_t lo = kFlagRanges[i].first;
      const uint32_t hi = i + 1 < kNumFlagRanges ? kFlagRanges[i + 1].first : 0x110000;
      for (uint32_t cp = lo; cp < hi && cp < 0x110000; ++cp) t[cp] = kFlagRanges[i].flags;
    }
    return t;
  }();
  return table;
}

struct ByteMaps {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 324> from_cp;  // the alphabet lies within U+0000..U+0143
};

const ByteMaps& byte_maps() {
  static const ByteMaps maps = [] {
    ByteMaps m;
    m.from_cp.fill(-1);
    std::array<uint32_t, 256> cp_of{};
    std::array<bool, 256> direct{};
    for (int b = 0; b < 256; ++b)
      direct[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) cp_of[b] = direct[b] ? static_cast<uint32_t>(b) : next++;
    for (int b = 0; b < 256; ++b) {
      append_utf8(m.to_char[b], cp_of[b]);
      m.from_cp[cp_of[b]] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return maps;
}

constexpr uint32_t kOutOfRange = 0xFFFFFFFFu;

// Emits pieces while walking one span; `prev` is where the next piece starts.
struct PieceSink {
  std::vector<size_t>& out;
  size_t prev;
  size_t emit(size_t end) {
    const size_t len = end - prev;
    if (len > 0) out.push_back(len);
    prev = end;
    return len;
  }
};

inline bool is_rn(uint32_t c) { return c == '\r' || c == '\n'; }

// The length of the contraction ('s 't 'm 'd 're 've 'll) at pos, 0 when there is none;
// any_case: llama3's (?i:...) also takes 'S, 'RE, ...
size_t contraction_length(const uint32_t* cps, size_t pos, size_t end, bool any_case) {
  if (cps[pos] != '\'' || pos + 1 >= end) return 0;
  auto at = [&](size_t p) { return any_case ? to_lower_ascii_target(cps[p]) : cps[p]; };
  const uint32_t n1 = at(pos + 1);
  if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
  if (pos + 2 >= end) return 0;
  const uint32_t n2 = at(pos + 2);
  return (n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l') ? 3 : 0;
}

}  // namespace

uint16_t flags(uint32_t cp) { return cp < 0x110000 ? flag_table()[cp] : static_cast<uint16_t>(kUndefined); }

uint32_t to_lower_ascii_target(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp < 0x80) return cp;
  using namespace unicode_tables;
  for (uint32_t i = 0; i < kNumLowerToAscii; ++i)
    if (kLowerToAscii[i].cp == cp) return kLowerToAscii[i].lower;
  return cp;
}

std::vector<uint32_t> decode_utf8(const char* s, size_t n) {
  std::vector<uint32_t> out;
  out.reserve(n);
  const auto* u = reinterpret_cast<const uint8_t*>(s);
  auto cont = [&](size_t i) { return (u[i] & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < n) {
    const uint8_t b0 = u[i];
    if (b0 < 0x80) {
      out.push_back(b0);
      i += 1;
      continue;
    }
    uint32_t cp = kReplacementChar;
    size_t len = 0;
    if ((b0 & 0x40) == 0) {
      len = 0;
    } else if ((b0 & 0x20) == 0) {
      if (i + 1 < n && cont(i + 1)) {
        cp = ((b0 & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu);
        len = 2;
      }
    } else if ((b0 & 0x10) == 0) {
      if (i + 2 < n && cont(i + 1) && cont(i + 2)) {
        cp = ((b0 & 0x0Fu) << 12) | ((u[i + 1] & 0x3Fu) << 6) | (u[i + 2] & 0x3Fu);
        len = 3;
      }
    } else if ((b0 & 0x08) == 0) {
      if (i + 3 < n && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        cp = ((b0 & 0x07u) << 18) | ((u[i + 1] & 0x3Fu) << 12) | ((u[i + 2] & 0x3Fu) << 6) |
             (u[i + 3] & 0x3Fu);
        len = 4;
        // llama.cpp throws later on these; treating them as malformed keeps us total.
        if (cp > 0x10FFFF) len = 0;
      }
    }
    if (len == 0) {
      out.push_back(kReplacementChar);
      i += 1;
    } else {
      out.push_back(cp);
      i += len;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp <= 0x7F) {
    out.push_back(static_cast<char>(cp));
  } else if (cp <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    append_utf8(out, kReplacementChar);
  }
}

const std::string& byte_to_bpe_char(uint8_t b) { return byte_maps().to_char[b]; }

int bpe_char_to_byte(uint32_t cp) {
  const auto& m = byte_maps();
  return cp < m.from_cp.size() ? m.from_cp[cp] : -1;
}

// The splitters below reproduce llama.cpp's hand-written matchers rather than a textbook
// regex engine: the ids must match theirs, including corner cases such as how a lone space
// before an unassigned codepoint is grouped. Positions outside [begin, end) read as
// flags 0 / kOutOfRange, which is what ends every run at the span boundary.

// \s+(?!\S)|\s+ for n_ws whitespace codepoints at pos (none: the one codepoint there); a run
// followed by more text leaves its last space to the next piece.
size_t whitespace_end(size_t pos, size_t n_ws, bool followed) {
  if (n_ws > 1 && followed) return pos + n_ws - 1;
  return pos + (n_ws > 0 ? n_ws : 1);
}

// Runs one splitter over [begin, end): contractions first, then body(pos, cp_at, fl_at, sink), which
// emits the piece starting at pos and returns the position after it.
template <class Body>
void split_span(const uint32_t* cps, const uint16_t* fl, size_t begin, size_t end, std::vector<size_t>& out,
                bool any_case_contractions, Body body) {
  auto cp_at = [&](size_t p) { return p >= begin && p < end ? cps[p] : kOutOfRange; };
  auto fl_at = [&](size_t p) -> uint16_t { return p >= begin && p < end ? fl[p] : 0; };
  PieceSink sink{out, begin};
  size_t pos = begin;
  while (pos < end) {
    if (const size_t n = contraction_length(cps, pos, end, any_case_contractions)) pos += sink.emit(pos + n);
    else pos = body(pos, cp_at, fl_at, sink);
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const uint32_t* cps, const uint16_t* fl, size_t begin, size_t end,
                  std::vector<size_t>& out) {
  split_span(cps, fl, begin, end, out, true, [&](size_t pos, auto cp_at, auto fl_at, PieceSink& sink) -> size_t {
    const uint32_t c = cps[pos];
    const uint16_t f = fl[pos];
    if (!is_rn(c) && !(f & kNumber) && ((f & kLetter) || (fl_at(pos + 1) & kLetter))) {
      ++pos;
      while (fl_at(pos) & kLetter) ++pos;
      sink.emit(pos);
      return pos;
    }

    if (f & kNumber) {
      size_t run_start = pos;
      while (fl_at(pos) & kNumber) {
        ++pos;
        if (pos - run_start >= 3) {
          sink.emit(pos);
          run_start = pos;
        }
      }
      sink.emit(pos);
      return pos;
    }

    {
      uint16_t f2 = c == ' ' ? fl_at(pos + 1) : f;
      // llama.cpp tests the current character's flags (not f2) for "non-zero" here.
      if (!(f2 & (kWhitespace | kLetter | kNumber)) && f != 0) {
        if (c == ' ') ++pos;
        while (!(f2 & (kWhitespace | kLetter | kNumber)) && f2 != 0) f2 = fl_at(++pos);
        while (is_rn(cp_at(pos))) ++pos;
        sink.emit(pos);
        return pos;
      }
    }

    size_t n_ws = 0, last_rn_end = 0;
    while (fl_at(pos + n_ws) & kWhitespace) {
      if (is_rn(cps[pos + n_ws])) last_rn_end = pos + n_ws + 1;
      ++n_ws;
    }
    if (last_rn_end > 0) {
      pos = last_rn_end;
      sink.emit(pos);
      return pos;
    }
    pos = whitespace_end(pos, n_ws, cp_at(pos + n_ws) != kOutOfRange);
    sink.emit(pos);
    return pos;
  });
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const uint32_t* cps, const uint16_t* fl, size_t begin, size_t end,
                std::vector<size_t>& out) {
  split_span(cps, fl, begin, end, out, false, [&](size_t pos, auto cp_at, auto fl_at, PieceSink& sink) -> size_t {
    const uint32_t c = cps[pos];
    const uint16_t f = fl[pos];
    uint16_t f2 = c == ' ' ? fl_at(pos + 1) : f;
    if (f2 & kLetter) {
      if (c == ' ') ++pos;
      while (fl_at(pos) & kLetter) ++pos;
      sink.emit(pos);
      return pos;
    }
    if (f2 & kNumber) {
      if (c == ' ') ++pos;
      while (fl_at(pos) & kNumber) ++pos;
      sink.emit(pos);
      return pos;
    }
    if (!(f2 & (kWhitespace | kLetter | kNumber)) && f2 != 0) {
      if (c == ' ') ++pos;
      while (!(f2 & (kWhitespace | kLetter | kNumber)) && f2 != 0) f2 = fl_at(++pos);
      sink.emit(pos);
      return pos;
    }

    size_t n_ws = 0;
    while (fl_at(pos + n_ws) & kWhitespace) ++n_ws;
    pos = whitespace_end(pos, n_ws, cp_at(pos + n_ws) != kOutOfRange);
    sink.emit(pos);
    return pos;
  });
}

namespace {

// Splits every piece into maximal runs where `in_class` holds and the gaps between them,
// i.e. what a regex split with "[class]+" keeps (matches and non-matches both).
template <typename Pred>
std::vector<size_t> split_runs(const std::vector<size_t>& pieces, Pred in_class) {
  std::vector<size_t> out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (size_t len : pieces) {
    const size_t end = start + len;
    size_t run_begin = start;
    while (run_begin < end) {
      const bool cls = in_class(run_begin);
      size_t p = run_begin + 1;
      while (p < end && in_class(p) == cls) ++p;
      out.push_back(p - run_begin);
      run_begin = p;
    }
    start = end;
  }
  return out;
}

}  // namespace

void split_default(const uint32_t* cps, const uint16_t* fl, size_t n, std::vector<size_t>& out) {
  if (n == 0) return;
  // llama.cpp runs these through std::regex on a "collapsed" text where every non-ASCII
  // codepoint stands for its category, so ASCII characters are judged by the literal
  // class members and others by category (whitespace never matches).
  auto punct_class = [&](size_t p) {
    const uint32_t c = cps[p];
    if (c < 0x80) {
      switch (c) {
        case '!': case '"': case '#': case '%': case '&': case '\'': case '(': case ')':
        case '*': case ',': case '-': case '.': case '/': case ':': case ';': case '?':
        case '@': case '[': case '\\': case ']': case '_': case '{': case '}':
        case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|':
          return true;
        default:
          return false;
      }
    }
    return !(fl[p] & kWhitespace) && (fl[p] & kCategoryMask) == kPunctuation;
  };
  auto number_class = [&](size_t p) {
    const uint32_t c = cps[p];
    if (c < 0x80) return c >= '0' && c <= '9';
    return !(fl[p] & kWhitespace) && (fl[p] & kCategoryMask) == kNumber;
  };

  std::vector<size_t> pieces = split_runs(std::vector<size_t>{n}, punct_class);

  std::vector<size_t> gpt2;
  gpt2.reserve(pieces.size() * 2);
  size_t start = 0;
  for (size_t len : pieces) {
    split_gpt2(cps, fl, start, start + len, gpt2);
    start += len;
  }

  pieces = split_runs(gpt2, number_class);

  // [0-9][0-9][0-9], matched left to right without overlap.
  auto digit = [&](size_t p) { return cps[p] >= '0' && cps[p] <= '9'; };
  start = 0;
  for (size_t len : pieces) {
    const size_t end = start + len;
    size_t gap = start, p = start;
    while (p + 3 <= end) {
      if (digit(p) && digit(p + 1) && digit(p + 2)) {
        if (p > gap) out.push_back(p - gap);
        out.push_back(3);
        p += 3;
        gap = p;
      } else {
        ++p;
      }
    }
    if (end > gap) out.push_back(end - gap);
    start = end;
  }
}

}  // namespace unicode
}  // namespace lro
