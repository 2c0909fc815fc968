// tokenizer.json (with tokenizer_config.json absent) into the GGUF vocabulary the converter writes.
#include <sys/stat.h>

#include "convert/hf_config.h"
#include "convert/hf_vocab.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = lro_fuzz::scratch() + "/hf";
  mkdir(dir.c_str(), 0700);
  const std::string path = lro_fuzz::input_file(data, size, "hf/tokenizer.json");
  (void)path;
  lro::convert::LlamaConfig cfg;
  cfg.n_embd = 64;
  cfg.n_layer = 1;
  cfg.n_head = cfg.n_head_kv = 4;
  cfg.n_ff = 128;
  lro::convert::VocabOptions opt;
  opt.n_vocab = -1;
  lro_fuzz::expect_clean([&] { (void)lro::convert::read_hf_vocab(dir, cfg, opt); });
  return 0;
}
