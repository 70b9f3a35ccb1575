#!/usr/bin/env bash
# Runs the benchmark driver, `stella-drill bench ...` (tests/drill/src/bench),
# after building every release binary the benchmarks use with one cargo
# command: a build with another set of packages unifies dependency features
# differently and rebuilds the gateway. The binaries are taken from the
# folder of stella-drill (${CARGO_TARGET_DIR:-target}/release); `bench
# callgrind --gateway BIN` counts another gateway binary. Every bench/*.sh
# but envelope-verify.sh is a one-line wrapper around this.
#   bench/stella-drill.sh bench run|coldstart|tokens|connections|soak|callgrind [ARGS...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build -q --release --manifest-path "$root/Cargo.toml" \
  -p stella-gateway -p stella-drill -p stella-load \
  --bin stella-gateway --bin stella-drill --bin stella-load --example bare_proxy
exec "${CARGO_TARGET_DIR:-$root/target}/release/stella-drill" "$@"
