// safetensors: the header, then every tensor's values read through the view it validated.
#include "convert/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lro_fuzz::input_file(data, size, "model.safetensors");
  lro_fuzz::expect_clean([&] {
    auto f = lro::convert::SafetensorsFile::open(path);
    for (const auto& t : f->tensors())
      lro_fuzz::expect_clean([&] {
        if (t.numel() <= (1 << 20)) (void)t.to_f32();
      });
  });
  return 0;
}
