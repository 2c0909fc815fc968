// A Hugging Face config.json, then the llama3 rope factors it implies.
#include "convert/hf_config.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lro_fuzz::input_file(data, size, "config.json");
  lro_fuzz::expect_clean([&] {
    const auto c = lro::convert::read_llama_config(path);
    (void)lro::convert::llama3_rope_factors(c);
  });
  return 0;
}
