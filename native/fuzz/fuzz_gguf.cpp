// GGUF, then everything built on it: the tokenizer from its metadata, the model validation, the
// latent head and the LoRA adapter (checked against a reference model: LRO_FUZZ_MODEL, default
// the golden tiny-l3.f32.gguf).
#include <cstdlib>
#include <memory>

#include "core/gguf.h"
#include "fuzz_common.h"
#include "model/latent_head.h"
#include "model/llama_model.h"
#include "model/lora_adapter.h"
#include "model/tokenizer.h"

namespace {
std::shared_ptr<lro::LlamaModel> reference() {
  static std::shared_ptr<lro::LlamaModel> m = [] {
    const char* p = std::getenv("LRO_FUZZ_MODEL");
    return lro::LlamaModel::load(p ? p : "../shared/golden/gguf/tiny-l3.f32.gguf");
  }();
  return m;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lro_fuzz::expect_clean([&] {
    auto f = lro::GgufFile::from_memory(data, size, "fuzz.gguf");
    lro_fuzz::expect_clean([&] {
      auto tok = lro::Tokenizer::from_gguf(*f);
      auto ids = tok->encode("Mia has 12 shells. <|bot|> caf\xc3\xa9", true, true);
      (void)tok->decode(ids, true);
    });
  });
  const std::string path = lro_fuzz::input_file(data, size, "input.gguf");
  lro_fuzz::expect_clean([&] { lro::LlamaModel::load(path, false); });
  auto ref = reference();
  lro_fuzz::expect_clean([&] { lro::LatentHead::load(path, ref->hparams().n_embd); });
  lro_fuzz::expect_clean([&] { lro::LoraAdapter::load(path, *ref); });
  return 0;
}
