// GGUF tokenizer metadata (tokenizer.ggml.*) from a Hugging Face byte-level BPE tokenizer.json and
// tokenizer_config.json, laid out as llama.cpp's converter writes it: one entry per embedding row,
// added tokens typed CONTROL / USER_DEFINED, missing rows padded, then merges, special ids and the
// add-bos/eos/sep flags in the converter's order.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "convert/hf_config.h"

namespace lro {
namespace convert {

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Names given to the three model-only rows after the tokenizer's last id (pad = V, bot = V+1,
// eot = V+2) in the CODI convention; further padding rows are "[PAD<id>]" UNUSED as in llama.cpp.
extern const char* const kCodiPadNames[3];

// Naming of the rows after the tokenizer's last id: Codi always, Llama never ("[PAD<id>]" only),
// Auto when exactly three rows are missing (the CODI layout V+3).
enum class PadNames { Auto, Codi, Llama };

struct VocabOptions {
  int64_t n_vocab = 0;         // embedding rows: the vocabulary gets exactly this many entries;
                               // < 0: the tokenizer's own size (vocab-only files of a folder without weights)
  PadNames pad_names = PadNames::Auto;
  std::string pre_override;    // tokenizer.ggml.pre; "" = detect
};

struct GgufVocab {
  std::string model = "gpt2";
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int64_t>> special_ids;  // ("bos", 1997), ... in write order
  std::vector<std::pair<std::string, bool>> add_flags;       // ("bos", true), ... in write order
  bool has_chat_template = false;
  std::string chat_template;
  int64_t tokenizer_size = 0;  // 1 + the highest id the tokenizer defines (V)
  bool codi_names = false;     // rows V..V+2 were named <|pad|>, <|bot|>, <|eot_latent|>
  std::vector<std::string> warnings;
  int64_t find(const std::string& token) const;  // -1 if absent
};

// Reads <dir>/tokenizer.json and <dir>/tokenizer_config.json (optional); `cfg` supplies
// bos/eos ids the tokenizer files leave unset. Throws ConvertError naming the file and field.
GgufVocab read_hf_vocab(const std::string& dir, const LlamaConfig& cfg, const VocabOptions& opt);

}  // namespace convert
}  // namespace lro
