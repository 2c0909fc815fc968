#!/usr/bin/env bash
# Builds and runs the C++ test binaries (no Node needed: they also run on a device image).
# Usage: tools/native-tests.sh [shared-dir]   (default: $LRO_SHARED or ../shared)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="${1:-${LRO_SHARED:-$(cd .. && pwd)/shared}}"
build="${LRO_NATIVE_TEST_BUILD:-build-tests}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# LRO_NATIVE_TEST_CONFIGURED=1: the build folder is configured already (the sanitizer build of
# tools/fuzz.sh); only build and run.
if [ -z "${LRO_NATIVE_TEST_CONFIGURED:-}" ]; then
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLRO_NATIVE_TESTS=ON >/dev/null
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
fail=0
run() {
  echo "== $*"
  if ! "$@"; then
    echo "FAILED: $*" >&2
    fail=1
  fi
}
# The SIMD kernel files are compiled for AVX2 / AVX-512 and none may hold code that runs at load:
# a static initialiser there would run on every CPU, one without those instructions too.
simd_objs=("$build"/CMakeFiles/lro_engine.dir/native/quant/quants_avx*.o)
if command -v nm >/dev/null && [ -e "${simd_objs[0]}" ]; then
  echo "== no static initialisers in ${#simd_objs[@]} SIMD kernel objects"
  if nm "${simd_objs[@]}" | grep '_GLOBAL__sub_I'; then
    echo "FAILED: a SIMD kernel file runs code at load (make its tables constexpr)" >&2
    fail=1
  fi
else
  echo "== SIMD kernel objects not found or no nm: static-initialiser check SKIPPED"
fi
run "$build/test_ops"
run "$build/test_forward" "$shared"
run "$build/test_tokenizer" "$shared/golden"
run "$build/test_quants" --quick --golden "$shared/golden"
run "$build/test_convert" "$shared"
run "$build/test_train" "$shared"
run "$build/test_latent_train" "$shared"
exit "$fail"
