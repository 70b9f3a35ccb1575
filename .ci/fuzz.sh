#!/usr/bin/env bash
# Brief fuzzing of stella-envelope (envelope/fuzz, see its README.md).
#
# Builds the cargo-fuzz targets on the stable toolchain (RUSTC_BOOTSTRAP=1
# unlocks the -Z flags cargo-fuzz passes), then runs verify_envelope for
# FUZZ_SECONDS and json_object for FUZZ_JSON_SECONDS, each from a temporary
# corpus seeded with the committed seeds (the seeds are never written to).
# Exits non-zero if a target crashes, panics, leaks, times out or runs out of
# memory; the failing input is printed in hex and kept under
# envelope/fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS=30        verify_envelope run time
#   FUZZ_JSON_SECONDS=10   json_object run time (0 skips it)
#   CARGO_FUZZ_VERSION     cargo-fuzz version installed when missing
set -euo pipefail
cd "$(dirname "$0")/../envelope"

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_JSON_SECONDS=${FUZZ_JSON_SECONDS:-10}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
export RUSTC_BOOTSTRAP=1
# cargo-fuzz looks for its binaries in envelope/fuzz/target; a target dir
# from the environment would send the build elsewhere (and share it with the
# uninstrumented main build).
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cargo fuzz --version

# Both targets share one build of the crate and its dependencies.
cargo fuzz build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
  local target=$1 seconds=$2
  shift 2
  [ "$seconds" -gt 0 ] || return 0
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  cp fuzz/seeds/"$target"/* "$work/$target/"
  local before=$work/$target.before
  touch "$before"
  echo "fuzzing $target for ${seconds}s ($(ls "$work/$target" | wc -l) seeds)"
  # libFuzzer's per-input lines go to a log; its summary and any failure are
  # shown below. -timeout: one input running 10 s is reported as a hang.
  if cargo fuzz run "$target" "$work/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@" \
    >"$work/$target.log" 2>&1; then
    grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE))|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
      "$work/$target.log" || true
    echo "ok $target"
    return 0
  fi
  # From the first sign of failure (a panic, a sanitizer report, a libFuzzer
  # error such as a timeout or out-of-memory), then the closing lines.
  local log=$work/$target.log first
  first=$(grep -n -m1 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|ALARM: working on the last Unit" "$log" | cut -d: -f1 || true)
  echo "FAILED $target; fuzzer output from line ${first:-?}:"
  if [ -n "$first" ]; then sed -n "${first},$((first + 40))p" "$log"; echo "..."; fi
  tail -n 40 "$log"
  local found=0 artifact
  while IFS= read -r artifact; do
    found=1
    echo "input $artifact ($(wc -c <"$artifact") bytes), hex:"
    od -An -v -tx1 "$artifact" | tr -d ' \n' | head -c 8192
    echo
  done < <(find "fuzz/artifacts/$target" -type f -newer "$before")
  [ "$found" = 1 ] || echo "(no artifact written)"
  echo "reproduce: cd envelope && RUSTC_BOOTSTRAP=1 cargo fuzz run $target <artifact>"
  return 1
}

status=0
run verify_envelope "$FUZZ_SECONDS" || status=1
# Its seeds are small payloads; let it grow inputs past them.
run json_object "$FUZZ_JSON_SECONDS" -max_len=4096 || status=1
exit "$status"
