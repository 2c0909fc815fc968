// What every libFuzzer harness shares: the input as a file (for the loaders that take a path),
// and the one kind of failure that is allowed, an exception naming the problem. Anything else
// (a crash, a sanitizer report, an escaped non-std exception) is a finding.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace lro_fuzz {

// A per-process scratch folder (tmpfs when there is one), made once.
inline const std::string& scratch() {
  static const std::string dir = [] {
    const char* base = std::getenv("LRO_FUZZ_TMP");
    std::string b = base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    std::string tmpl = b + "/lro-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("lro-fuzz: cannot make a scratch folder in " + b);
    return tmpl;
  }();
  return dir;
}

// Writes the input to <scratch>/<name> (replacing it) and returns the path.
inline std::string input_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = scratch() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("lro-fuzz: cannot write " + path);
  if (size && std::fwrite(data, 1, size, f) != size) {
    std::fclose(f);
    throw std::runtime_error("lro-fuzz: short write to " + path);
  }
  std::fclose(f);
  return path;
}

// Runs f; a std::exception (the parsers' way to refuse a file) is fine.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::exception&) {
  }
}

}  // namespace lro_fuzz
