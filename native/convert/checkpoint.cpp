#include "convert/checkpoint.h"

#include <algorithm>
#include <set>

#include "convert/common.h"
#include "convert/json.h"
#include "convert/safetensors.h"
#include "convert/torch_checkpoint.h"

namespace lro {
namespace convert {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
bool starts_with(const std::string& s, const std::string& pre) { return s.compare(0, pre.size(), pre) == 0; }

void add_tensors(Checkpoint& ck, std::vector<TensorRef> ts, const std::string& file) {
  for (auto& t : ts) {
    auto it = ck.index.find(t.name);
    if (it != ck.index.end())
      throw ConvertError(file + ": tensor '" + t.name + "' also appears in " + ck.tensors[it->second].origin);
    ck.index[t.name] = ck.tensors.size();
    ck.tensors.push_back(std::move(t));
  }
  ck.files.push_back(file);
}

Checkpoint load_sharded(const std::string& dir, const std::string& index_path) {
  json::Value idx = json::parse_file(index_path);
  const json::Value* wm = idx.find("weight_map");
  if (!wm || !wm->is_object()) throw ConvertError(index_path + ": 'weight_map' is missing or not an object");
  std::set<std::string> parts;
  std::map<std::string, std::string> where;
  for (const auto& m : wm->members) {
    if (!m.second.is_string()) throw ConvertError(index_path + ": weight_map['" + m.first + "'] is not a file name");
    if (m.second.str.find('/') != std::string::npos || m.second.str == "..")
      throw ConvertError(index_path + ": weight_map['" + m.first + "'] names a file outside the folder ('" + m.second.str + "')");
    parts.insert(m.second.str);
    where[m.first] = m.second.str;
  }
  if (parts.empty()) throw ConvertError(index_path + ": weight_map is empty");
  Checkpoint ck;
  for (const auto& part : parts) {  // std::set: sorted, as the reference converter reads them
    const std::string p = path_join(dir, part);
    if (!file_exists(p)) throw ConvertError(index_path + ": part '" + part + "' is missing (incomplete download?)");
    std::string fmt;
    auto ts = load_weights_file(p, &fmt);
    if (!ck.format.empty() && ck.format != fmt) throw ConvertError(index_path + ": parts mix safetensors and PyTorch files");
    ck.format = fmt;
    add_tensors(ck, std::move(ts), p);
  }
  for (const auto& w : where) {
    auto it = ck.index.find(w.first);
    if (it == ck.index.end()) throw ConvertError(index_path + ": tensor '" + w.first + "' is listed for '" + w.second + "' but that file lacks it");
    if (path_basename(ck.tensors[it->second].origin.substr(0, ck.tensors[it->second].origin.find(':'))) != w.second)
      throw ConvertError(index_path + ": tensor '" + w.first + "' is listed for '" + w.second + "' but found in " + ck.tensors[it->second].origin);
  }
  for (const auto& t : ck.tensors)
    if (!where.count(t.name)) throw ConvertError(index_path + ": tensor '" + t.name + "' in " + t.origin + " is not in the weight_map");
  return ck;
}

}  // namespace

const TensorRef* Checkpoint::find(const std::string& name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

std::vector<TensorRef> load_weights_file(const std::string& path, std::string* format) {
  auto map = MappedFile::open(path);
  if (map->size() >= 4 && load_le<uint32_t>(map->data()) == 0x04034b50) {
    if (format) *format = "pytorch";
    auto ck = TorchCheckpoint::open(path);
    return ck->tensors();
  }
  if (map->size() >= 2 && map->data()[0] == 0x80 && map->data()[1] <= 5) {
    TorchCheckpoint::open(path);  // throws the legacy-format message
  }
  if (format) *format = "safetensors";
  return SafetensorsFile::from_mapping(map)->tensors();
}

Checkpoint load_checkpoint(const std::string& dir, const std::string& weights) {
  if (!is_directory(dir)) throw ConvertError(dir + ": not a directory");
  if (!weights.empty()) {
    std::string p = weights[0] == '/' ? weights : path_join(dir, weights);
    if (!file_exists(p)) throw ConvertError(p + ": weights file not found");
    if (ends_with(p, ".index.json")) return load_sharded(path_dirname(p), p);
    Checkpoint ck;
    std::string fmt;
    auto ts = load_weights_file(p, &fmt);
    ck.format = fmt;
    add_tensors(ck, std::move(ts), p);
    return ck;
  }
  const auto names = list_directory(dir);
  std::vector<std::string> st, pt;
  for (const auto& n : names) {
    if (starts_with(n, "model") && ends_with(n, ".safetensors")) st.push_back(n);
    if (starts_with(n, "pytorch_model") && ends_with(n, ".bin")) pt.push_back(n);
  }
  const bool use_st = !st.empty();
  const std::string index = path_join(dir, use_st ? "model.safetensors.index.json" : "pytorch_model.bin.index.json");
  if (file_exists(index)) return load_sharded(dir, index);
  const auto& parts = use_st ? st : pt;
  if (parts.empty())
    throw ConvertError(dir + ": no weights found (expected model.safetensors, model-*.safetensors with an index, or pytorch_model.bin)");
  Checkpoint ck;
  for (const auto& n : parts) {
    std::string fmt;
    const std::string p = path_join(dir, n);
    auto ts = load_weights_file(p, &fmt);
    ck.format = fmt;
    add_tensors(ck, std::move(ts), p);
  }
  return ck;
}

}  // namespace convert
}  // namespace lro
