#!/usr/bin/env bash
# Runs the drill driver, stella-drill (tests/drill), after building the
# workspace the way the test suite does (--all-targets, so after the tests it
# is a no-op). Every drill script here is a one-line wrapper around this.
#   scripts/drills/stella-drill.sh DRILL... [--short] [--rate N] [--step-seconds N]
# Environment: DRILL_NO_BUILD=1 skips the build; DRILL_PROFILE=release runs
# the release binaries (build them first: cargo build --release --workspace
# --bins), for rates a debug gateway cannot reach.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null || { echo "drills: node (20+) is required" >&2; exit 2; }
[ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund >/dev/null)
if [ "${DRILL_NO_BUILD:-0}" != 1 ]; then
  cargo build -q --workspace --all-targets
fi
exec "${CARGO_TARGET_DIR:-target}/${DRILL_PROFILE:-debug}/stella-drill" "$@"
