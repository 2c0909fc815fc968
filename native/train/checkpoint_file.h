// The resume file both trainers write: a GGUF holding the trainer's kind and version, its step and
// data position; each trainer adds its own settings and tensors (weights and AdamW moments).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"

namespace lro {

// GGUF has no u64-safe signed reading for values >= 2^63: 64-bit state is stored as an I64 bit pattern.
GgufValue i64_bits(uint64_t v);
std::vector<uint8_t> f32_bytes(const std::vector<float>& v);

// A writer with the header set: general.type = type, lro.train.version, step and data position.
GgufWriter checkpoint_writer(const std::string& type, uint32_t version, int64_t step, int64_t data_position);

struct CheckpointHeader {
  std::unique_ptr<GgufFile> file;
  int64_t step = 0, data_position = 0;
};
// Opens path and checks its type and version; what names the kind in the error ("training").
CheckpointHeader open_checkpoint(const std::string& path, const std::string& type, uint32_t version,
                                 const std::string& what);

}  // namespace lro
