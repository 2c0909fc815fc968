// torch.save zips (with zip64): the archive, every entry's CRC, the state dict and its tensors.
#include "convert/checkpoint.h"
#include "convert/zip_reader.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lro_fuzz::input_file(data, size, "pytorch_model.bin");
  lro_fuzz::expect_clean([&] {
    auto z = lro::convert::ZipReader::open(path);
    for (const auto& e : z->entries()) lro_fuzz::expect_clean([&] { z->verify_crc(e); });
  });
  lro_fuzz::expect_clean([&] {
    for (const auto& t : lro::convert::load_weights_file(path))
      lro_fuzz::expect_clean([&] {
        if (t.numel() <= (1 << 20)) (void)t.to_f32();
      });
  });
  return 0;
}
