#include "convert/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "convert/common.h"

namespace lro {
namespace convert {
namespace json {

namespace {

constexpr int kMaxDepth = 256;  // real configs nest < 10 deep; deeper input is an attack or garbage

class Parser {
 public:
  Parser(const std::string& text, const std::string& label) : s_(text), label_(label) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  const std::string& s_;
  const std::string& label_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw ConvertError(label_ + ": invalid JSON at line " + std::to_string(line) + " column " + std::to_string(col) +
                       ": " + what);
  }

  void skip_ws() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        ++pos_;
      else
        break;
    }
  }

  bool consume_literal(const char* lit) {
    size_t n = std::strlen(lit);
    if (s_.compare(pos_, n, lit) == 0) {
      pos_ += n;
      return true;
    }
    return false;
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    if (pos_ >= s_.size()) fail("unexpected end of input (truncated file?)");
    char c = s_[pos_];
    Value v;
    switch (c) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"':
        v.kind = Kind::String;
        v.str = parse_string();
        return v;
      case 't':
        if (consume_literal("true")) return Value::make_bool(true);
        break;
      case 'f':
        if (consume_literal("false")) return Value::make_bool(false);
        break;
      case 'n':
        if (consume_literal("null")) return v;
        break;
      // Python's json writes these for non-finite floats; accept them so such configs still load.
      case 'N':
        if (consume_literal("NaN")) return Value::make_number(std::numeric_limits<double>::quiet_NaN());
        break;
      case 'I':
        if (consume_literal("Infinity")) return Value::make_number(std::numeric_limits<double>::infinity());
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  Value parse_object(int depth) {
    Value v = Value::make_object();
    ++pos_;  // {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size()) fail("unexpected end of input inside an object (truncated file?)");
      if (s_[pos_] != '"') fail("expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':' after key \"" + key + "\"");
      ++pos_;
      skip_ws();
      Value member = parse_value(depth + 1);
      v.members.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (pos_ >= s_.size()) fail("unexpected end of input inside an object (truncated file?)");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      fail("expected ',' or '}' in an object");
    }
  }

  Value parse_array(int depth) {
    Value v = Value::make_array();
    ++pos_;  // [
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_ws();
      v.items.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ >= s_.size()) fail("unexpected end of input inside an array (truncated file?)");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      fail("expected ',' or ']' in an array");
    }
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<uint32_t>(c - 'A' + 10);
      else
        fail("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string (truncated file?)");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {
            size_t save = pos_;
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo >= 0xDC00 && lo < 0xE000)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else
              pos_ = save;  // lone high surrogate: kept as is (Python accepts it too)
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  Value parse_number() {
    size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == 'I') {  // -Infinity
      if (consume_literal("Infinity")) return Value::make_number(-std::numeric_limits<double>::infinity());
      fail("bad number");
    }
    if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number: digits expected after '.'");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number: digits expected in exponent");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    Value v;
    v.kind = Kind::Number;
    v.str = s_.substr(start, pos_ - start);
    // strtod follows the C locale; Node never calls setlocale, so '.' is the decimal point.
    v.number = std::strtod(v.str.c_str(), nullptr);
    if (integral) {
      errno = 0;
      long long x = std::strtoll(v.str.c_str(), nullptr, 10);
      if (errno == 0) {
        v.is_int = true;
        v.integer = x;
      }
    }
    return v;
  }
};

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void dump_value(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lv) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lv), ' ');
  };
  switch (v.kind) {
    case Kind::Null: out += "null"; break;
    case Kind::Bool: out += v.boolean ? "true" : "false"; break;
    case Kind::Number:
      if (!v.str.empty()) {
        out += v.str;
      } else if (v.is_int) {
        out += std::to_string(v.integer);
      } else if (std::isnan(v.number)) {
        out += "NaN";
      } else if (std::isinf(v.number)) {
        out += v.number > 0 ? "Infinity" : "-Infinity";
      } else {
        // Shortest form that reads back to the same double, as Python's repr.
        char buf[40];
        for (int p = 1; p <= 17; ++p) {
          std::snprintf(buf, sizeof buf, "%.*g", p, v.number);
          if (std::strtod(buf, nullptr) == v.number) break;
        }
        std::string t = buf;
        if (t.find_first_of(".e") == std::string::npos) t += ".0";
        out += t;
      }
      break;
    case Kind::String: dump_string(out, v.str); break;
    case Kind::Array:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += indent < 0 ? "," : ",";
        newline(level + 1);
        dump_value(out, v.items[i], indent, level + 1);
      }
      if (!v.items.empty()) newline(level);
      out += ']';
      break;
    case Kind::Object:
      out += '{';
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ",";
        newline(level + 1);
        dump_string(out, v.members[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_value(out, v.members[i].second, indent, level + 1);
      }
      if (!v.members.empty()) newline(level);
      out += '}';
      break;
  }
}

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Number: return "number";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::Object) return nullptr;
  if (index_) {
    auto it = index_->find(key);
    return it == index_->end() ? nullptr : &members[it->second].second;
  }
  for (size_t i = members.size(); i-- > 0;)
    if (members[i].first == key) return &members[i].second;
  return nullptr;
}

void Value::index() const {
  if (kind != Kind::Object || index_) return;
  auto m = std::make_shared<std::map<std::string, size_t>>();
  for (size_t i = 0; i < members.size(); ++i) (*m)[members[i].first] = i;
  index_ = m;
}

Value Value::make_bool(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.boolean = b;
  return v;
}
Value Value::make_int(int64_t i) {
  Value v;
  v.kind = Kind::Number;
  v.is_int = true;
  v.integer = i;
  v.number = static_cast<double>(i);
  return v;
}
Value Value::make_number(double d) {
  Value v;
  v.kind = Kind::Number;
  v.number = d;
  return v;
}
Value Value::make_string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.str = std::move(s);
  return v;
}
Value Value::make_array() {
  Value v;
  v.kind = Kind::Array;
  return v;
}
Value Value::make_object() {
  Value v;
  v.kind = Kind::Object;
  return v;
}
Value& Value::push(Value v) {
  items.push_back(std::move(v));
  return items.back();
}
Value& Value::set(const std::string& key, Value v) {
  index_.reset();
  for (auto& m : members)
    if (m.first == key) {
      m.second = std::move(v);
      return m.second;
    }
  members.emplace_back(key, std::move(v));
  return members.back().second;
}

Value parse(const std::string& text, const std::string& label) { return Parser(text, label).parse_document(); }

Value parse_file(const std::string& path) { return parse(read_text_file(path), path); }

std::string dump(const Value& v, int indent) {
  std::string out;
  dump_value(out, v, indent, 0);
  return out;
}

int64_t get_int(const Value& obj, const std::string& key, const std::string& label) {
  const Value* v = obj.find(key);
  if (!v || v->is_null()) throw ConvertError(label + ": '" + key + "' is missing");
  if (!v->is_number() || !v->is_int)
    throw ConvertError(label + ": '" + key + "' must be an integer, got " +
                       (v->is_number() ? v->str : std::string(kind_name(v->kind))));
  return v->integer;
}

int64_t get_int_or(const Value& obj, const std::string& key, int64_t fallback, const std::string& label) {
  const Value* v = obj.find(key);
  if (!v || v->is_null()) return fallback;
  return get_int(obj, key, label);
}

double get_number_or(const Value& obj, const std::string& key, double fallback, const std::string& label) {
  const Value* v = obj.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_number()) throw ConvertError(label + ": '" + key + "' must be a number, got " + kind_name(v->kind));
  return v->number;
}

std::string get_string_or(const Value& obj, const std::string& key, const std::string& fallback, const std::string& label) {
  const Value* v = obj.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_string()) throw ConvertError(label + ": '" + key + "' must be a string, got " + kind_name(v->kind));
  return v->str;
}

bool get_bool_or(const Value& obj, const std::string& key, bool fallback, const std::string& label) {
  const Value* v = obj.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_bool()) throw ConvertError(label + ": '" + key + "' must be true or false, got " + kind_name(v->kind));
  return v->boolean;
}

}  // namespace json
}  // namespace convert
}  // namespace lro
