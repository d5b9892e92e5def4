#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo fuzz, libFuzzer, nightly Rust) for a bounded time
# each, starting from its kept corpus in fuzz/corpus/<target>, and prints what each did.
# A crash stops the run with the input that caused it (fuzz/artifacts/<target>/); fix it
# with a regression test, and keep the input in the corpus.
#   infra/fuzz.sh [seconds per target, default 60] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
# Without AddressSanitizer: the targets are safe Rust, and the C libraries the crates build
# (zstd for librdkafka) come instrumented, which librdkafka's configure cannot link against.
cargo +nightly fuzz build --fuzz-dir fuzz --sanitizer none
for target in "${targets[@]}"; do
  # New inputs go to a scratch copy: the kept corpus changes only by hand.
  scratch=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$scratch/"
  log=$(mktemp)
  if ! cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none "$target" "$scratch" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "fuzz $target: $runs executions in ${seconds} s, $coverage, corpus $(ls "$scratch" | wc -l) inputs, no crash"
  rm -rf "$scratch" "$log"
done
