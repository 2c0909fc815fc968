// A read-only view of one checkpoint tensor (safetensors or PyTorch zip), with its element type,
// numpy-order shape and element strides, pointing into a mapped file that it keeps alive.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lro {
namespace convert {

enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

const char* dtype_name(DType t);  // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType t);
bool dtype_from_name(const std::string& name, DType& out);  // safetensors spelling
bool is_float_dtype(DType t);     // F16, BF16, F32, F64: the ones the converter reads

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;    // numpy order: shape.back() is the contiguous dimension
  std::vector<int64_t> strides;  // in elements, one per dim; empty means row-major contiguous
  const uint8_t* base = nullptr; // the element at index [0, ..., 0]
  std::shared_ptr<const void> keep;  // owner of the bytes (a mapping)
  std::string origin;            // "model.safetensors" or "pytorch_model.bin:archive/data/3", for messages
  std::string storage_key;       // PyTorch storage id; tensors that share it share bytes (tied weights)

  int64_t numel() const;
  bool contiguous() const;
  // Values widened to float: F32/F16/BF16 exactly, F64 rounded. Non-float dtypes throw a
  // ConvertError naming the tensor and file. Non-contiguous views are gathered element by element.
  std::vector<float> to_f32() const;
  std::string describe() const;  // "'name' in origin"
};

}  // namespace convert
}  // namespace lro
