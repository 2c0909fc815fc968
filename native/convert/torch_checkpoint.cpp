#include "convert/torch_checkpoint.h"

#include <map>
#include <set>

namespace lro {
namespace convert {

namespace {

// Pickle opcodes (Python's pickle.py names).
enum Op : uint8_t {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', FLOAT = 'F', INT = 'I', BININT = 'J',
  BININT1 = 'K', LONG = 'L', BININT2 = 'M', NONE = 'N', PERSID = 'P', BINPERSID = 'Q', REDUCE = 'R',
  STRING = 'S', BINSTRING = 'T', SHORT_BINSTRING = 'U', UNICODE = 'V', BINUNICODE = 'X', APPEND = 'a',
  BUILD = 'b', GLOBAL = 'c', DICT = 'd', EMPTY_DICT = '}', APPENDS = 'e', GET = 'g', BINGET = 'h', INST = 'i',
  LONG_BINGET = 'j', LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', PUT = 'p', BINPUT = 'q', LONG_BINPUT = 'r',
  SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G', BINBYTES = 'B',
  SHORT_BINBYTES = 'C', PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
  TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f, ADDITEMS = 0x90,
  FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95, BYTEARRAY8 = 0x96,
  NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
};

const char* kRebuildV2 = "torch._utils._rebuild_tensor_v2";
const char* kRebuildV1 = "torch._utils._rebuild_tensor";
const char* kRebuildParam = "torch._utils._rebuild_parameter";
const char* kRebuildParamState = "torch._utils._rebuild_parameter_with_state";
const char* kRebuildFromType = "torch._tensor._rebuild_from_type_v2";
const char* kOrderedDict = "collections.OrderedDict";

struct StorageType {
  const char* name;
  DType dtype;
};
const StorageType kStorageTypes[] = {
    {"torch.FloatStorage", DType::F32},  {"torch.HalfStorage", DType::F16},  {"torch.BFloat16Storage", DType::BF16},
    {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64},  {"torch.IntStorage", DType::I32},
    {"torch.ShortStorage", DType::I16},  {"torch.CharStorage", DType::I8},   {"torch.ByteStorage", DType::U8},
    {"torch.BoolStorage", DType::BOOL},
};

struct Obj;
using Ref = std::shared_ptr<Obj>;
enum class K { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

const char* kname(K k) {
  switch (k) {
    case K::None: return "None";
    case K::Bool: return "bool";
    case K::Int: return "int";
    case K::Float: return "float";
    case K::Str: return "str";
    case K::Bytes: return "bytes";
    case K::Tuple: return "tuple";
    case K::List: return "list";
    case K::Dict: return "dict";
    case K::Global: return "global";
    case K::Storage: return "storage";
    case K::Tensor: return "tensor";
  }
  return "?";
}

// Inert values only: nothing here can call anything.
struct Obj {
  K k = K::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                           // Str, Bytes, Global ("module.name"), Storage key
  std::vector<Ref> items;                  // Tuple, List
  std::vector<std::pair<Ref, Ref>> dict;   // Dict
  DType dtype = DType::F32;                // Storage
  int64_t numel = 0;                       // Storage
  Ref storage;                             // Tensor
  int64_t offset = 0;                      // Tensor
  std::vector<int64_t> shape, strides;     // Tensor
};

Ref make(K k) {
  auto r = std::make_shared<Obj>();
  r->k = k;
  return r;
}

bool is_allowed(const std::string& g) {
  for (const auto& a : allowed_pickle_globals())
    if (a == g) return true;
  return false;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& label) : d_(d), n_(n), label_(label) {}
  // A pickle can build cycles (a list appended to itself, a dict holding itself): every object
  // made is kept here and its edges dropped at the end, so none outlives the unpickler.
  ~Unpickler() {
    for (auto& o : made_) {
      o->items.clear();
      o->dict.clear();
      o->storage.reset();
    }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  // Walks every opcode without executing any, so a forbidden global or opcode anywhere in the
  // stream is reported before the interpreter touches the first one.
  void prescan() {
    size_t p = 0;
    while (p < n_) {
      size_t at = p;
      uint8_t op = d_[p++];
      auto skip = [&](size_t k) {
        if (n_ - p < k) fail_at(at, "truncated argument of opcode " + opname(op));
        p += k;
      };
      auto skip_len = [&](size_t width) {
        if (n_ - p < width) fail_at(at, "truncated length of opcode " + opname(op));
        uint64_t len = width == 1 ? d_[p] : width == 4 ? load_le<uint32_t>(d_ + p) : load_le<uint64_t>(d_ + p);
        p += width;
        if (len > n_ - p) fail_at(at, "length " + std::to_string(len) + " of opcode " + opname(op) + " runs past the end (truncated?)");
        p += static_cast<size_t>(len);
      };
      auto line = [&]() {
        size_t e = p;
        while (e < n_ && d_[e] != '\n') ++e;
        if (e >= n_) fail_at(at, "unterminated text argument of opcode " + opname(op));
        std::string s(reinterpret_cast<const char*>(d_ + p), e - p);
        p = e + 1;
        return s;
      };
      switch (op) {
        case GLOBAL: case INST: {
          std::string mod = line(), name = line();
          std::string g = mod + "." + name;
          if (op == INST || !is_allowed(g)) refuse(g, at);
          break;
        }
        case PROTO: case BININT1: case BINPUT: case BINGET: skip(1); break;
        case BININT2: skip(2); break;
        case BININT: case LONG_BINPUT: case LONG_BINGET: skip(4); break;
        case BINFLOAT: case FRAME: skip(8); break;
        case LONG1: case SHORT_BINUNICODE: case SHORT_BINSTRING: case SHORT_BINBYTES: skip_len(1); break;
        case LONG4: case BINUNICODE: case BINSTRING: case BINBYTES: skip_len(4); break;
        case BINUNICODE8: case BINBYTES8: skip_len(8); break;
        case INT: case LONG: case FLOAT: case PUT: case GET: line(); break;
        case MARK: case STOP: case POP: case POP_MARK: case DUP: case NONE: case BINPERSID: case REDUCE:
        case APPEND: case BUILD: case DICT: case EMPTY_DICT: case APPENDS: case LIST: case EMPTY_LIST:
        case SETITEM: case TUPLE: case EMPTY_TUPLE: case SETITEMS: case TUPLE1: case TUPLE2: case TUPLE3:
        case NEWTRUE: case NEWFALSE: case STACK_GLOBAL: case MEMOIZE:
          break;
        default:
          fail_at(at, "opcode " + opname(op) + " is not allowed in a state dict checkpoint");
      }
      if (op == STOP) return;
    }
    fail_at(n_, "no STOP opcode (truncated pickle)");
  }

  Ref run() {
    size_t p = 0;
    while (true) {
      if (p >= n_) fail_at(p, "no STOP opcode (truncated pickle)");
      const size_t at = p;
      const uint8_t op = d_[p++];
      auto take = [&](size_t k) -> const uint8_t* {
        if (n_ - p < k) fail_at(at, "truncated argument");
        const uint8_t* q = d_ + p;
        p += k;
        return q;
      };
      auto take_str = [&](size_t width) {
        uint64_t len = width == 1 ? *take(1) : width == 4 ? load_le<uint32_t>(take(4)) : load_le<uint64_t>(take(8));
        if (len > n_ - p) fail_at(at, "string length runs past the end");
        return std::string(reinterpret_cast<const char*>(take(static_cast<size_t>(len))), static_cast<size_t>(len));
      };
      auto line = [&]() {
        size_t e = p;
        while (e < n_ && d_[e] != '\n') ++e;
        if (e >= n_) fail_at(at, "unterminated line");
        std::string s(reinterpret_cast<const char*>(d_ + p), e - p);
        p = e + 1;
        return s;
      };
      switch (op) {
        case PROTO:
          if (*take(1) > 5) fail_at(at, "pickle protocol above 5");
          break;
        case FRAME: take(8); break;
        case STOP:
          if (stack_.size() != 1) fail_at(at, "stack holds " + std::to_string(stack_.size()) + " values at STOP");
          return stack_.back();
        case MARK: marks_.push_back(stack_.size()); break;
        case POP: pop(at); break;
        case POP_MARK: pop_mark(at); break;
        case DUP: push(top(at)); break;
        case NONE: push(make(K::None)); break;
        case NEWTRUE: case NEWFALSE: {
          auto r = make(K::Bool);
          r->b = op == NEWTRUE;
          push(r);
          break;
        }
        case BININT: push_int(load_le<int32_t>(take(4))); break;
        case BININT1: push_int(*take(1)); break;
        case BININT2: push_int(load_le<uint16_t>(take(2))); break;
        case LONG1: case LONG4: {
          uint64_t len = op == LONG1 ? *take(1) : load_le<uint32_t>(take(4));
          if (len > 8) fail_at(at, "integer wider than 64 bits");
          const uint8_t* q = take(static_cast<size_t>(len));
          uint64_t v = 0;
          for (size_t k = 0; k < len; ++k) v |= static_cast<uint64_t>(q[k]) << (8 * k);
          if (len > 0 && len < 8 && (q[len - 1] & 0x80)) v |= ~uint64_t(0) << (8 * len);  // sign-extend
          push_int(static_cast<int64_t>(v));
          break;
        }
        case INT: case LONG: {
          std::string s = line();
          if (!s.empty() && s.back() == 'L') s.pop_back();
          if (s == "00" || s == "01") {  // protocol 0 booleans
            auto r = make(K::Bool);
            r->b = s == "01";
            push(r);
            break;
          }
          char* end = nullptr;
          errno = 0;
          long long v = std::strtoll(s.c_str(), &end, 10);
          if (errno || !end || *end) fail_at(at, "bad integer literal '" + s + "'");
          push_int(v);
          break;
        }
        case BINFLOAT: {
          const uint8_t* q = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | q[k];  // big-endian
          auto r = make(K::Float);
          std::memcpy(&r->f, &bits, 8);
          push(r);
          break;
        }
        case FLOAT: {
          auto r = make(K::Float);
          r->f = std::strtod(line().c_str(), nullptr);
          push(r);
          break;
        }
        case BINUNICODE: push_str(K::Str, take_str(4)); break;
        case SHORT_BINUNICODE: push_str(K::Str, take_str(1)); break;
        case BINUNICODE8: push_str(K::Str, take_str(8)); break;
        case BINSTRING: push_str(K::Str, take_str(4)); break;
        case SHORT_BINSTRING: push_str(K::Str, take_str(1)); break;
        case BINBYTES: push_str(K::Bytes, take_str(4)); break;
        case SHORT_BINBYTES: push_str(K::Bytes, take_str(1)); break;
        case BINBYTES8: push_str(K::Bytes, take_str(8)); break;
        case EMPTY_TUPLE: push(make(K::Tuple)); break;
        case TUPLE: {
          auto r = make(K::Tuple);
          r->items = pop_mark(at);
          push(r);
          break;
        }
        case TUPLE1: case TUPLE2: case TUPLE3: {
          size_t k = op - TUPLE1 + 1;
          if (stack_.size() < k + base()) fail_at(at, "stack underflow");
          auto r = make(K::Tuple);
          r->items.assign(stack_.end() - static_cast<long>(k), stack_.end());
          stack_.resize(stack_.size() - k);
          push(r);
          break;
        }
        case EMPTY_LIST: push(make(K::List)); break;
        case LIST: {
          auto r = make(K::List);
          r->items = pop_mark(at);
          push(r);
          break;
        }
        case APPEND: {
          Ref v = pop(at);
          Ref l = top(at);
          if (l->k != K::List) fail_at(at, std::string("APPEND to a ") + kname(l->k));
          l->items.push_back(v);
          break;
        }
        case APPENDS: {
          auto vs = pop_mark(at);
          Ref l = top(at);
          if (l->k != K::List) fail_at(at, std::string("APPENDS to a ") + kname(l->k));
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case EMPTY_DICT: push(make(K::Dict)); break;
        case DICT: {
          auto vs = pop_mark(at);
          if (vs.size() % 2) fail_at(at, "DICT with an odd number of items");
          auto r = make(K::Dict);
          for (size_t k = 0; k < vs.size(); k += 2) set_item(r, vs[k], vs[k + 1]);
          push(r);
          break;
        }
        case SETITEM: {
          Ref v = pop(at), k = pop(at);
          Ref d = top(at);
          if (d->k != K::Dict) fail_at(at, std::string("SETITEM on a ") + kname(d->k));
          set_item(d, k, v);
          break;
        }
        case SETITEMS: {
          auto vs = pop_mark(at);
          if (vs.size() % 2) fail_at(at, "SETITEMS with an odd number of items");
          Ref d = top(at);
          if (d->k != K::Dict) fail_at(at, std::string("SETITEMS on a ") + kname(d->k));
          for (size_t k = 0; k < vs.size(); k += 2) set_item(d, vs[k], vs[k + 1]);
          break;
        }
        case BINPUT: memo_put(*take(1), at); break;
        case LONG_BINPUT: memo_put(load_le<uint32_t>(take(4)), at); break;
        case PUT: memo_put(static_cast<uint32_t>(std::strtoul(line().c_str(), nullptr, 10)), at); break;
        case MEMOIZE: memo_put(static_cast<uint32_t>(memo_.size()), at); break;
        case BINGET: memo_get(*take(1), at); break;
        case LONG_BINGET: memo_get(load_le<uint32_t>(take(4)), at); break;
        case GET: memo_get(static_cast<uint32_t>(std::strtoul(line().c_str(), nullptr, 10)), at); break;
        case GLOBAL: {
          std::string mod = line(), name = line();
          push_global(mod + "." + name, at);
          break;
        }
        case STACK_GLOBAL: {
          Ref name = pop(at), mod = pop(at);
          if (name->k != K::Str || mod->k != K::Str) fail_at(at, "STACK_GLOBAL needs two strings");
          push_global(mod->s + "." + name->s, at);
          break;
        }
        case BINPERSID: push(persistent_load(pop(at), at)); break;
        case REDUCE: {
          Ref args = pop(at), fn = pop(at);
          push(call(fn, args, at));
          break;
        }
        case BUILD: {
          Ref state = pop(at);
          Ref obj = top(at);
          // State dicts carry a `_metadata` attribute (module versions); tensors may carry an empty
          // state. Neither affects the weights, so the state is dropped.
          if (obj->k != K::Dict && obj->k != K::Tensor) fail_at(at, std::string("BUILD on a ") + kname(obj->k));
          break;
        }
        default:
          fail_at(at, "opcode " + opname(op) + " is not allowed in a state dict checkpoint");
      }
    }
  }

 private:
  const uint8_t* d_;
  size_t n_;
  const std::string& label_;
  std::vector<Ref> stack_;
  std::vector<Ref> made_;
  Ref make(K k) {
    made_.push_back(::lro::convert::make(k));
    return made_.back();
  }
  std::vector<size_t> marks_;
  std::map<uint32_t, Ref> memo_;
  std::map<std::string, Ref> storages_;

  static std::string opname(uint8_t op) {
    char buf[16];
    if (op >= 0x20 && op < 0x7f)
      std::snprintf(buf, sizeof buf, "'%c' (0x%02x)", op, op);
    else
      std::snprintf(buf, sizeof buf, "0x%02x", op);
    return buf;
  }

  [[noreturn]] void fail_at(size_t at, const std::string& what) const {
    throw ConvertError(label_ + ": pickle at offset " + std::to_string(at) + ": " + what);
  }
  [[noreturn]] void refuse(const std::string& g, size_t at) const {
    std::string list;
    for (const auto& a : allowed_pickle_globals()) list += (list.empty() ? "" : ", ") + a;
    throw ConvertError(label_ + ": pickle at offset " + std::to_string(at) + ": refusing global '" + g +
                       "': a checkpoint may only name tensor-rebuilding globals (" + list +
                       "); nothing from this file was executed");
  }

  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Ref r) { stack_.push_back(std::move(r)); }
  void push_int(int64_t v) {
    auto r = make(K::Int);
    r->i = v;
    push(r);
  }
  void push_str(K k, std::string s) {
    auto r = make(k);
    r->s = std::move(s);
    push(r);
  }
  Ref pop(size_t at) {
    if (stack_.size() <= base()) fail_at(at, "stack underflow");
    Ref r = stack_.back();
    stack_.pop_back();
    return r;
  }
  Ref top(size_t at) {
    if (stack_.size() <= base()) fail_at(at, "stack underflow");
    return stack_.back();
  }
  std::vector<Ref> pop_mark(size_t at) {
    if (marks_.empty()) fail_at(at, "no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> out(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  void memo_put(uint32_t k, size_t at) { memo_[k] = top(at); }
  void memo_get(uint32_t k, size_t at) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail_at(at, "memo key " + std::to_string(k) + " was never stored");
    push(it->second);
  }
  void set_item(const Ref& d, const Ref& k, const Ref& v) {
    if (k->k == K::Str)
      for (auto& kv : d->dict)
        if (kv.first->k == K::Str && kv.first->s == k->s) {
          kv.second = v;
          return;
        }
    d->dict.emplace_back(k, v);
  }
  void push_global(const std::string& g, size_t at) {
    if (!is_allowed(g)) refuse(g, at);
    auto r = make(K::Global);
    r->s = g;
    push(r);
  }

  Ref persistent_load(const Ref& pid, size_t at) {
    if (pid->k != K::Tuple || pid->items.size() != 5 || pid->items[0]->k != K::Str || pid->items[0]->s != "storage")
      fail_at(at, "persistent id is not ('storage', type, key, location, numel)");
    const Ref& type = pid->items[1];
    const Ref& key = pid->items[2];
    const Ref& numel = pid->items[4];
    if (type->k != K::Global) fail_at(at, "persistent id: storage type is not a storage class");
    if (key->k != K::Str) fail_at(at, "persistent id: storage key is not a string");
    if (numel->k != K::Int || numel->i < 0) fail_at(at, "persistent id: storage size is not a non-negative integer");
    DType dt{};
    bool found = false;
    for (const auto& st : kStorageTypes)
      if (type->s == st.name) {
        dt = st.dtype;
        found = true;
      }
    if (!found) fail_at(at, "persistent id: '" + type->s + "' is not a storage class");
    auto it = storages_.find(key->s);
    if (it != storages_.end()) {
      if (it->second->dtype != dt || it->second->numel != numel->i)
        fail_at(at, "storage '" + key->s + "' is used with two different types or sizes");
      return it->second;
    }
    auto r = make(K::Storage);
    r->s = key->s;
    r->dtype = dt;
    r->numel = numel->i;
    storages_[key->s] = r;
    return r;
  }

  std::vector<int64_t> int_tuple(const Ref& t, const char* what, size_t at) {
    if (t->k != K::Tuple && t->k != K::List) fail_at(at, std::string(what) + " is not a tuple");
    std::vector<int64_t> v;
    for (const auto& e : t->items) {
      if (e->k != K::Int || e->i < 0) fail_at(at, std::string(what) + " holds a non-integer or negative value");
      v.push_back(e->i);
    }
    return v;
  }

  Ref call(const Ref& fn, const Ref& args, size_t at) {
    if (fn->k != K::Global) fail_at(at, std::string("REDUCE on a ") + kname(fn->k) + ", not a callable global");
    if (args->k != K::Tuple) fail_at(at, "REDUCE arguments are not a tuple");
    const auto& a = args->items;
    const std::string& g = fn->s;
    if (g == kOrderedDict) {
      if (!a.empty()) fail_at(at, "collections.OrderedDict called with arguments");
      return make(K::Dict);
    }
    if (g == kRebuildV2 || g == kRebuildV1) {
      if (a.size() < 4) fail_at(at, g + " needs (storage, offset, size, stride, ...)");
      if (a[0]->k != K::Storage) fail_at(at, g + ": first argument is not a storage");
      if (a[1]->k != K::Int || a[1]->i < 0) fail_at(at, g + ": storage offset is not a non-negative integer");
      auto t = make(K::Tensor);
      t->storage = a[0];
      t->offset = a[1]->i;
      t->shape = int_tuple(a[2], "tensor size", at);
      t->strides = int_tuple(a[3], "tensor stride", at);
      if (t->shape.size() != t->strides.size()) fail_at(at, g + ": size and stride have different lengths");
      return t;
    }
    if (g == kRebuildParam || g == kRebuildParamState) {
      if (a.empty() || a[0]->k != K::Tensor) fail_at(at, g + ": first argument is not a tensor");
      return a[0];
    }
    if (g == kRebuildFromType) {
      if (a.size() < 3 || a[0]->k != K::Global) fail_at(at, g + " needs (func, type, args, state)");
      return call(a[0], a[2], at);
    }
    fail_at(at, "'" + g + "' is not callable");
  }
};

}  // namespace

const std::vector<std::string>& allowed_pickle_globals() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v = {kOrderedDict, kRebuildV2, kRebuildV1, kRebuildParam, kRebuildParamState,
                                  kRebuildFromType, "torch.nn.parameter.Parameter"};
    for (const auto& st : kStorageTypes) v.push_back(st.name);
    return v;
  }();
  return names;
}

std::vector<PickleTensor> unpickle_state_dict(const uint8_t* data, size_t size, const std::string& label) {
  Unpickler u(data, size, label);
  u.prescan();
  Ref root = u.run();
  // Some trainers wrap the weights: {"state_dict": {...}} or {"model": {...}}.
  for (int depth = 0; depth < 3 && root->k == K::Dict; ++depth) {
    bool has_tensor = false;
    for (const auto& kv : root->dict) has_tensor |= kv.second->k == K::Tensor;
    if (has_tensor) break;
    Ref inner;
    for (const auto& kv : root->dict)
      if (kv.first->k == K::Str && (kv.first->s == "state_dict" || kv.first->s == "model" || kv.first->s == "module") &&
          kv.second->k == K::Dict)
        inner = kv.second;
    if (!inner) break;
    root = inner;
  }
  if (root->k != K::Dict) throw ConvertError(label + ": the pickle holds a " + std::string(kname(root->k)) + ", not a state dict");
  std::vector<PickleTensor> out;
  for (const auto& kv : root->dict) {
    if (kv.second->k != K::Tensor) continue;
    if (kv.first->k != K::Str) throw ConvertError(label + ": state dict key is a " + std::string(kname(kv.first->k)) + ", not a string");
    const Obj& t = *kv.second;
    PickleTensor pt;
    pt.name = kv.first->s;
    pt.dtype = t.storage->dtype;
    pt.storage_key = t.storage->s;
    pt.storage_numel = t.storage->numel;
    pt.offset = t.offset;
    pt.shape = t.shape;
    pt.strides = t.strides;
    out.push_back(std::move(pt));
  }
  if (out.empty()) throw ConvertError(label + ": the state dict holds no tensors");
  return out;
}

std::unique_ptr<TorchCheckpoint> TorchCheckpoint::open(const std::string& path) {
  auto map = MappedFile::open(path);
  if (map->size() >= 2 && map->data()[0] == 0x80 && map->data()[1] <= 5)
    throw ConvertError(path + ": legacy (pre-zip) torch.save format is not supported; re-save it with a current "
                       "torch.save or as safetensors");
  if (map->size() < 4 || load_le<uint32_t>(map->data()) != 0x04034b50)
    throw ConvertError(path + ": not a torch.save zip checkpoint (no zip local header at offset 0)");
  auto ck = std::unique_ptr<TorchCheckpoint>(new TorchCheckpoint());
  ck->path_ = path;
  ck->zip_ = ZipReader::from_mapping(map);
  const ZipReader& z = *ck->zip_;
  const ZipEntry* pkl = nullptr;
  for (const auto& e : z.entries()) {
    const std::string suffix = "data.pkl";
    size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash + 1, std::string::npos, suffix) == 0) {
      if (pkl) throw ConvertError(path + ": the archive holds two data.pkl records ('" + pkl->name + "', '" + e.name + "')");
      pkl = &e;
    }
  }
  if (!pkl) throw ConvertError(path + ": no <archive>/data.pkl entry (not a torch.save checkpoint)");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::string("data.pkl").size());
  z.verify_crc(*pkl);
  if (const ZipEntry* bo = z.find(prefix + "byteorder")) {
    z.verify_crc(*bo);
    std::string order(reinterpret_cast<const char*>(bo->data), static_cast<size_t>(bo->size));
    if (order != "little") throw ConvertError(path + ": byteorder is '" + order + "'; only little-endian checkpoints are supported");
  }
  const std::string label = path + ":" + pkl->name;
  auto pts = unpickle_state_dict(pkl->data, static_cast<size_t>(pkl->size), label);

  std::set<std::string> checked;
  for (const auto& pt : pts) {
    const std::string what = path + ": tensor '" + pt.name + "'";
    const std::string ename = prefix + "data/" + pt.storage_key;
    const ZipEntry* e = z.find(ename);
    if (!e) throw ConvertError(what + ": storage entry '" + ename + "' is missing from the archive");
    if (!checked.count(ename)) {
      z.verify_crc(*e);
      checked.insert(ename);
    }
    const uint64_t es = dtype_size(pt.dtype);
    const uint64_t need = static_cast<uint64_t>(checked_mul(pt.storage_numel, static_cast<int64_t>(es), what));
    if (e->size < need)
      throw ConvertError(what + ": storage '" + ename + "' has " + std::to_string(e->size) + " bytes, its header says " +
                         std::to_string(need));
    int64_t numel = 1;
    int64_t last = pt.offset;
    for (size_t d = 0; d < pt.shape.size(); ++d) {
      numel = checked_mul(numel, pt.shape[d], what);
      if (pt.shape[d] > 0) last += checked_mul(pt.shape[d] - 1, pt.strides[d], what);
    }
    if (numel > 0 && last >= pt.storage_numel)
      throw ConvertError(what + ": offset " + std::to_string(pt.offset) + " with size/stride reaches element " +
                         std::to_string(last) + " of a " + std::to_string(pt.storage_numel) + "-element storage");
    TensorRef t;
    t.name = pt.name;
    t.dtype = pt.dtype;
    t.shape = pt.shape;
    t.strides = pt.strides;
    t.base = e->data + static_cast<size_t>(pt.offset) * es;
    t.keep = map;
    t.origin = path + ":" + ename;
    t.storage_key = pt.storage_key;
    ck->tensors_.push_back(std::move(t));
  }
  return ck;
}

}  // namespace convert
}  // namespace lro
