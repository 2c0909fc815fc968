// Tensor element types as GGUF numbers them, with their block layouts.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lro {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};

struct GgmlTypeTraits {
  const char* name;      // "f32", "q4_K", ... (ggml spelling)
  int64_t block_size;    // elements per block (1 for plain types)
  size_t block_bytes;    // bytes per block
  bool supported;        // we can dequantize / compute with it
};

// Traits for a raw type id; nullptr if GGUF defines no such type.
const GgmlTypeTraits* ggml_type_traits(uint32_t type_id);
inline const GgmlTypeTraits& traits(GgmlType t) { return *ggml_type_traits(static_cast<uint32_t>(t)); }
// Bytes of one row of n elements; n must be a multiple of the block size.
inline size_t row_size(GgmlType t, int64_t n) {
  const auto& tr = traits(t);
  return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

// Block layouts (little-endian, packed exactly as GGUF stores them).
constexpr int QK4_0 = 32;
constexpr int QK8_0 = 32;
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

#pragma pack(push, 1)
struct block_q4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };                    // 18 bytes
struct block_q8_0 { uint16_t d; int8_t qs[QK8_0]; };                         // 34 bytes
struct block_q4_K { uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };  // 144
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; }; // 210
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };   // 292 (activations only)
#pragma pack(pop)
static_assert(sizeof(block_q4_0) == 18, "q4_0");
static_assert(sizeof(block_q8_0) == 34, "q8_0");
static_assert(sizeof(block_q4_K) == 144, "q4_K");
static_assert(sizeof(block_q6_K) == 210, "q6_K");

}  // namespace lro
