// The weights of a Hugging Face folder: model.safetensors, sharded model-*.safetensors with
// model.safetensors.index.json, or pytorch_model*.bin (torch.save zip), chosen as llama.cpp's
// converter chooses (safetensors first), in its tensor order (parts sorted, header order inside).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/tensor_ref.h"

namespace lro {
namespace convert {

struct Checkpoint {
  std::string format;                // "safetensors" | "pytorch"
  std::vector<std::string> files;    // parts read, in order
  std::vector<TensorRef> tensors;
  std::map<std::string, size_t> index;
  const TensorRef* find(const std::string& name) const;
};

// `weights`: "" to pick automatically, else a file (absolute or relative to dir): a .safetensors
// file, a .bin/.pt/.pth checkpoint, or a *.index.json for sharded weights.
Checkpoint load_checkpoint(const std::string& dir, const std::string& weights = "");

// Loads one weights file (safetensors or torch zip) by its content, not its name.
std::vector<TensorRef> load_weights_file(const std::string& path, std::string* format = nullptr);

}  // namespace convert
}  // namespace lro
