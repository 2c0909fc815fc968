// JSON: the parser, a dump of what it parsed, and that the dump parses again to the same dump.
#include <string>

#include "convert/json.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lro_fuzz::expect_clean([&] {
    const auto v = lro::convert::json::parse(text, "fuzz.json");
    const std::string once = lro::convert::json::dump(v);
    const std::string twice = lro::convert::json::dump(lro::convert::json::parse(once, "fuzz.json (dumped)"));
    if (once != twice) __builtin_trap();  // a dump must read back as itself
  });
  return 0;
}
