// The restricted unpickler alone: mutated pickles reach it here without failing a zip CRC first.
#include "convert/torch_checkpoint.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lro_fuzz::expect_clean([&] { (void)lro::convert::unpickle_state_dict(data, size, "fuzz/data.pkl"); });
  return 0;
}
