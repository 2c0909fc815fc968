// A small strict JSON reader/writer for the converter's inputs (config.json, tokenizer.json,
// tokenizer_config.json, adapter_config.json, safetensors headers). Objects keep their key order
// (the safetensors header order decides the tensor order, as in llama.cpp's converter).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lro {
namespace convert {
namespace json {

enum class Kind { Null, Bool, Number, String, Array, Object };

class Value {
 public:
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  bool is_int = false;     // the literal had no fraction/exponent and fits int64
  int64_t integer = 0;
  std::string str;         // String, or the literal text of a Number
  std::vector<Value> items;                            // Array
  std::vector<std::pair<std::string, Value>> members;  // Object, in file order

  bool is_null() const { return kind == Kind::Null; }
  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Number; }
  bool is_bool() const { return kind == Kind::Bool; }

  // Object member or nullptr (also nullptr when this is not an object). Last duplicate wins, as Python.
  const Value* find(const std::string& key) const;
  // Builds a lookup index for large objects (tokenizer vocab); find() uses it afterwards.
  void index() const;

  static Value make_null() { return Value(); }
  static Value make_bool(bool b);
  static Value make_int(int64_t i);
  static Value make_number(double d);
  static Value make_string(std::string s);
  static Value make_array();
  static Value make_object();
  Value& push(Value v);                                // Array
  Value& set(const std::string& key, Value v);         // Object: replaces or appends

 private:
  mutable std::shared_ptr<std::map<std::string, size_t>> index_;
};

const char* kind_name(Kind k);

// Throws ConvertError("<label>: line L column C: ..."). Depth is limited (hostile files).
Value parse(const std::string& text, const std::string& label);
Value parse_file(const std::string& path);

// Compact (indent < 0, separators "," and ":") or pretty-printed. Non-ASCII is written as UTF-8.
std::string dump(const Value& v, int indent = -1);

// Typed access with errors naming the file and the key path ("config.json: 'hidden_size' ...").
int64_t get_int(const Value& obj, const std::string& key, const std::string& label);
int64_t get_int_or(const Value& obj, const std::string& key, int64_t fallback, const std::string& label);
double get_number_or(const Value& obj, const std::string& key, double fallback, const std::string& label);
std::string get_string_or(const Value& obj, const std::string& key, const std::string& fallback, const std::string& label);
bool get_bool_or(const Value& obj, const std::string& key, bool fallback, const std::string& label);

}  // namespace json
}  // namespace convert
}  // namespace lro
