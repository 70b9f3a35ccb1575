#!/usr/bin/env bash
# Runs every test: the Authority harness's own tests (node), then the Rust
# workspace (unit, property, loopback and end-to-end tests) with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need (system packages, the Authority's npm packages).
./scripts/install-deps.sh
(cd tests/authority && node --test)
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
