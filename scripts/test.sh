#!/usr/bin/env bash
# Runs every test: the Authority harness's own tests (node), the Rust
# workspace (unit, property, loopback and end-to-end tests) with nextest,
# then the operations drills (scripts/drills/) at CI length.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need (system packages, the Authority's npm packages).
./scripts/install-deps.sh
(cd tests/authority && node --test)
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
# The operations drills at CI length: each change under load, zero failed
# requests (README, Drills).
./scripts/drills/run-all.sh --short
