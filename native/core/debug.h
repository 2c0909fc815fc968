// LRO_DEBUG=1: native stacks for bug reports. Errors the engine raises for a file (GgufError,
// ConvertError) carry the stack where they were thrown, and a crash prints one before the
// process dies. Without LRO_DEBUG nothing changes.
#pragma once
#include <string>

namespace lro {

bool debug_enabled();  // LRO_DEBUG set to anything but "" or "0"
// The calling thread's native stack, one frame a line, the innermost `skip` frames left out.
std::string native_backtrace(int skip = 1);
// With LRO_DEBUG: "<message>\nnative stack:\n<frames>"; else the message.
std::string with_native_stack(const std::string& message);
// With LRO_DEBUG: SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT print the native stack to stderr,
// then the signal does what it did before. Idempotent.
void install_crash_handlers();

}  // namespace lro
