#!/usr/bin/env bash
# The one fuzz driver: builds a cargo-fuzz project's targets and fuzzes each
# for SECONDS (default 10), one after the other, from a temporary corpus
# seeded with <project>/fuzz/seeds/<target>/ (the seeds are never written
# to). Projects: `.` (default: the gateway's parsers, fuzz/, see
# fuzz/README.md) and `envelope` (stella-envelope, envelope/fuzz).
#
#   scripts/fuzz.sh [--project DIR] [SECONDS] [TARGET...]   all targets when none is named
#
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 unlocks them on the
# stable toolchain. scripts/install-deps.sh installs cargo-fuzz.
# Exits non-zero if a target crashes, panics, fails an assertion, times out
# or runs out of memory; the failing input is printed in hex and kept under
# <project>/fuzz/artifacts/<target>/. One summary line per target:
#   fuzz <target>: <executions> execs in <s>s (<n>/s), 0 crashes
set -euo pipefail
cd "$(dirname "$0")/.."

project=.
if [ "${1:-}" = --project ]; then
  project=$2
  shift 2
fi
cd "$project"
seconds=${1:-10}
shift || true
export RUSTC_BOOTSTRAP=1
# cargo-fuzz looks for its binaries in fuzz/target; a target dir from the
# environment would send the build elsewhere (and share it with the
# uninstrumented main build).
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

# The [[bin]] names of the project's fuzz/Cargo.toml (not its package name).
all=$(sed -n '/^\[\[bin\]\]/,/^name/s/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -d '' -a targets <<<"$all" || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: run scripts/install-deps.sh" >&2
  exit 2
fi

# FUZZ_BUILD="--dev -s none" (what CI uses): an unoptimized build without
# AddressSanitizer, several times quicker to build on a fresh machine, for
# runs of a few seconds. Default: cargo-fuzz's own (optimized, ASan).
read -r -a build_flags <<<"${FUZZ_BUILD:-}" || true
# All targets share one build of the gateway and its dependencies.
cargo fuzz build "${build_flags[@]}"

# The dictionary of each target (libFuzzer -dict), and extra options.
dict() {
  case $1 in
    jws_compact | jwk_thumbprint | dpop_proof) echo fuzz/dicts/jose.dict ;;
    config_file | policy_file) echo fuzz/dicts/yaml.dict ;;
    path_normalize | route_lookup) echo fuzz/dicts/path.dict ;;
  esac
}
options() {
  case $1 in
    # Longer than MAX_PATH_LEN (8 KiB), so the length cap is reached.
    path_normalize) echo -max_len=9000 ;;
    config_file | policy_file) echo -max_len=16384 ;;
    # envelope: its seeds are small payloads; let it grow inputs past them.
    json_object) echo -max_len=4096 ;;
    # Past the envelope's 16 KiB header cap.
    verify_envelope) echo -max_len=20000 ;;
    *) echo -max_len=8192 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
  local target=$1
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  cp fuzz/seeds/"$target"/* "$work/$target/"
  local before=$work/$target.before log=$work/$target.log
  touch "$before"
  local args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1 $(options "$target"))
  local d
  d=$(dict "$target")
  [ -z "$d" ] || args+=(-dict="$d")
  if cargo fuzz run "${build_flags[@]}" "$target" "$work/$target" -- "${args[@]}" >"$log" 2>&1; then
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz $target: ${execs:-?} execs in ${seconds}s (${rate:-?}/s), 0 crashes"
    return 0
  fi
  # From the first sign of failure (a panic, a sanitizer report, a libFuzzer
  # error such as a timeout or out-of-memory), then the closing lines.
  local first
  first=$(grep -n -m1 -E "panicked at|ParseDictionaryFile|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|ALARM: working on the last Unit" "$log" | cut -d: -f1 || true)
  echo "FAILED fuzz $target; fuzzer output from line ${first:-?}:"
  if [ -n "$first" ]; then sed -n "${first},$((first + 40))p" "$log"; echo "..."; fi
  tail -n 30 "$log"
  local found=0 artifact
  while IFS= read -r artifact; do
    found=1
    echo "input $artifact ($(wc -c <"$artifact") bytes), hex:"
    od -An -v -tx1 "$artifact" | tr -d ' \n' | head -c 8192
    echo
  done < <(find "fuzz/artifacts/$target" -type f -newer "$before")
  [ "$found" = 1 ] || echo "(no artifact written)"
  echo "reproduce: (cd $project && RUSTC_BOOTSTRAP=1 cargo fuzz run $target <artifact>)"
  return 1
}

status=0
for target in "${targets[@]}"; do
  run "$target" || status=1
done
exit "$status"
