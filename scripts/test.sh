#!/usr/bin/env bash
# Runs every test: the Authority harness's own tests (node), then the Rust
# workspace (unit, property, loopback and end-to-end tests) with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d tests/authority/node_modules ]; then
  (cd tests/authority && npm ci --no-audit --no-fund)
fi
(cd tests/authority && node --test)
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
