// PyTorch zip checkpoints (the default torch.save format) read without Python and without running
// anything from the file: data.pkl is interpreted by a restricted unpickler that knows only the
// opcodes a state dict uses and only the globals that rebuild tensors. Any other global
// (os.system, builtins.eval, ...) is refused before a single opcode is executed.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "convert/tensor_ref.h"
#include "convert/zip_reader.h"

namespace lro {
namespace convert {

// The globals a state dict may name; everything else is refused.
const std::vector<std::string>& allowed_pickle_globals();

struct PickleTensor {
  std::string name;
  DType dtype = DType::F32;
  std::string storage_key;
  int64_t storage_numel = 0;
  int64_t offset = 0;  // in elements
  std::vector<int64_t> shape, strides;
};

// Reads a state dict out of a pickle (protocol 2-5). `label` names the source in errors.
// Throws ConvertError naming a refused global ("... refuses global 'os.system' ...") or a bad opcode.
std::vector<PickleTensor> unpickle_state_dict(const uint8_t* data, size_t size, const std::string& label);

// Opens a torch.save zip checkpoint: unpickles <archive>/data.pkl and maps each tensor onto its
// <archive>/data/<key> entry (storage offset, strides; tensors sharing a storage share bytes).
class TorchCheckpoint {
 public:
  static std::unique_ptr<TorchCheckpoint> open(const std::string& path);
  const std::vector<TensorRef>& tensors() const { return tensors_; }  // pickle order
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<ZipReader> zip_;
  std::vector<TensorRef> tensors_;
};

}  // namespace convert
}  // namespace lro
