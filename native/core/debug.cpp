#include "core/debug.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>
#include <unistd.h>

namespace lro {

bool debug_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LRO_DEBUG");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

std::string native_backtrace(int skip) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  char** names = backtrace_symbols(frames, n);
  std::string out;
  for (int i = skip; i < n; ++i) {
    out += "    at ";
    out += names ? names[i] : "?";
    out += '\n';
  }
  std::free(names);
  return out;
}

std::string with_native_stack(const std::string& message) {
  return debug_enabled() ? message + "\nnative stack:\n" + native_backtrace(2) : message;
}

namespace {
void on_crash(int sig) {
  // Only async-signal-safe calls: write and backtrace_symbols_fd.
  const char head[] = "lro-native: native crash; native stack:\n";
  (void)!write(STDERR_FILENO, head, sizeof head - 1);
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

void install_crash_handlers() {
  static bool done = false;
  if (done || !debug_enabled()) return;
  done = true;
  void* warm[1];
  backtrace(warm, 1);  // loads libgcc's unwinder now, not inside a signal handler
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, on_crash);
}

}  // namespace lro
