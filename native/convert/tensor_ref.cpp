#include "convert/tensor_ref.h"

#include <cstring>

#include "convert/common.h"
#include "quant/quants.h"

namespace lro {
namespace convert {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::BOOL: return "BOOL";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::I16: return "I16";
    case DType::U16: return "U16";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::U32: return "U32";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::U64: return "U64";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::BOOL: case DType::U8: case DType::I8: case DType::F8_E5M2: case DType::F8_E4M3: return 1;
    case DType::I16: case DType::U16: case DType::F16: case DType::BF16: return 2;
    case DType::I32: case DType::U32: case DType::F32: return 4;
    case DType::F64: case DType::I64: case DType::U64: return 8;
  }
  return 0;
}

bool dtype_from_name(const std::string& name, DType& out) {
  static const DType all[] = {DType::BOOL, DType::U8,   DType::I8,  DType::F8_E5M2, DType::F8_E4M3,
                              DType::I16,  DType::U16,  DType::F16, DType::BF16,    DType::I32,
                              DType::U32,  DType::F32,  DType::F64, DType::I64,     DType::U64};
  for (DType t : all)
    if (name == dtype_name(t)) {
      out = t;
      return true;
    }
  return false;
}

bool is_float_dtype(DType t) { return t == DType::F16 || t == DType::BF16 || t == DType::F32 || t == DType::F64; }

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool TensorRef::contiguous() const {
  if (strides.empty()) return true;
  int64_t expect = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

std::string TensorRef::describe() const { return "tensor '" + name + "' in " + origin; }

namespace {

inline float element_to_f32(DType t, const uint8_t* p) {
  switch (t) {
    case DType::F32: return load_le<float>(p);
    case DType::F16: return fp16_to_fp32(load_le<uint16_t>(p));
    case DType::BF16: return bf16_to_fp32(load_le<uint16_t>(p));
    case DType::F64: return static_cast<float>(load_le<double>(p));
    default: return 0;
  }
}

}  // namespace

std::vector<float> TensorRef::to_f32() const {
  if (!is_float_dtype(dtype))
    throw ConvertError(describe() + ": dtype " + dtype_name(dtype) +
                       " is not supported for conversion (only F32, F16, BF16 and F64 weights)");
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 0) return out;
  const size_t es = dtype_size(dtype);
  if (contiguous()) {
    if (dtype == DType::F32) {
      std::memcpy(out.data(), base, static_cast<size_t>(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = element_to_f32(dtype, base + static_cast<size_t>(i) * es);
    }
    return out;
  }
  // Strided gather: walk the index like an odometer, innermost dimension fastest.
  const size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)] = element_to_f32(dtype, base + off * static_cast<int64_t>(es));
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace convert
}  // namespace lro
