#include "train/checkpoint_file.h"

#include <cstring>

namespace lro {

GgufValue i64_bits(uint64_t v) {
  GgufValue g;
  g.type = GgufValueType::I64;
  g.num.i64 = static_cast<int64_t>(v);
  return g;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

GgufWriter checkpoint_writer(const std::string& type, uint32_t version, int64_t step, int64_t data_position) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", type);
  w.set_u32("lro.train.version", version);
  w.set_value("lro.train.step", i64_bits(static_cast<uint64_t>(step)));
  w.set_value("lro.train.data_position", i64_bits(static_cast<uint64_t>(data_position)));
  return w;
}

CheckpointHeader open_checkpoint(const std::string& path, const std::string& type, uint32_t version,
                                 const std::string& what) {
  CheckpointHeader h;
  h.file = GgufFile::open(path);
  const std::string got = h.file->get_string("general.type", "");
  if (got != type) throw GgufError(path + ": not an lro " + what + " checkpoint (general.type '" + got + "')");
  const int64_t v = h.file->get_int("lro.train.version", 0);
  if (v != version)
    throw GgufError(path + ": checkpoint version " + std::to_string(v) + " is not " + std::to_string(version));
  h.step = h.file->get("lro.train.step").as_int("lro.train.step");
  h.data_position = h.file->get("lro.train.data_position").as_int("lro.train.data_position");
  return h;
}

}  // namespace lro
