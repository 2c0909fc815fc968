#!/usr/bin/env bash
# Builds the libFuzzer harnesses of native/fuzz/ (clang, ASan + UBSan, any report fatal), seeds
# each from the golden files, the shipped models and native/fuzz/seeds/, replays its regression
# inputs (native/fuzz/regressions/<name>/), then fuzzes
# each for SECONDS. Findings land in <build>/findings/ and fail the run.
# Usage: tools/fuzz.sh [SECONDS per harness, default 30] [shared-dir]
#   A longer campaign: tools/fuzz.sh 3600   (the corpus in <build>/corpus grows between runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-30}"
shared="${2:-${LRO_SHARED:-$(cd .. && pwd)/shared}}"
build="${LRO_FUZZ_BUILD:-build-fuzz}"
command -v clang++ >/dev/null || { echo "tools/fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
CXX=clang++ cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
  -DLRO_FUZZ=ON -DLRO_NATIVE_TESTS=ON >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"

corpus="$build/corpus"
findings="$build/findings"
mkdir -p "$findings"
seed() {  # seed NAME FILE...: copies the files that exist (and are under 16 MiB) into the corpus
  local dir="$corpus/$1"
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 16777216 ]; then cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; fi
  done
}
g="$shared/golden"
seed gguf "$g"/gguf/*.gguf models/*.gguf
seed safetensors $(find "$g" -name '*.safetensors' -size -4M)
seed torch_zip $(find "$g" -name '*.bin')
seed json $(find "$g" -name '*.json' -size -1M | head -n 40)
seed hf_config $(find "$g" -name 'config.json' -o -name 'base_config.json' -o -name 'adapter_config.json')
seed hf_vocab $(find "$g" -name 'tokenizer.json' -size -4M)
# Small seeds of our own (native/fuzz/seeds/<name>/: a torch.save zip, its zip64 rewrite, its pickle).
for d in native/fuzz/seeds/*/; do seed "$(basename "$d")" "$d"*; done
mkdir -p "$corpus/unpickle"
for z in $(find "$g" -name '*.bin'); do
  if command -v unzip >/dev/null; then unzip -p "$z" '*/data.pkl' > "$corpus/unpickle/$(basename "$z").pkl" 2>/dev/null || true; fi
done

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LRO_FUZZ_MODEL="$g/gguf/tiny-l3.f32.gguf"
fail=0
for bin in "$build"/fuzz_*; do
  name="$(basename "$bin")"
  name="${name#fuzz_}"
  max_len=65536
  [ "$name" = gguf ] || [ "$name" = torch_zip ] || [ "$name" = safetensors ] && max_len=1048576
  regress="native/fuzz/regressions/$name"
  if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
    echo "== fuzz_$name: regression inputs"
    "$bin" "$regress"/* >"$findings/$name.regress.log" 2>&1 || { echo "FAILED: fuzz_$name on its regression inputs (see $findings/$name.regress.log)" >&2; fail=1; }
  fi
  echo "== fuzz_$name: ${secs}s"
  # A fixed seed (LRO_FUZZ_SEED, default 1) makes a CI run repeatable; set another for a campaign.
  if ! "$bin" "$corpus/$name" -seed="${LRO_FUZZ_SEED:-1}" -max_total_time="$secs" -max_len="$max_len" -timeout=20 -rss_limit_mb=3072 \
      -artifact_prefix="$findings/$name-" -print_final_stats=1 >"$findings/$name.log" 2>&1; then
    echo "FAILED: fuzz_$name found something (see $findings/$name.log and $findings/$name-*)" >&2
    tail -n 30 "$findings/$name.log" >&2
    fail=1
  fi
  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$findings/$name.log" | tail -n 2 || true
done
exit "$fail"
