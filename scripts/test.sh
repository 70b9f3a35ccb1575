#!/usr/bin/env bash
# Runs every test: the Authority harness's own tests (node), the envelope
# SDKs (sdk/: Python, Node, Go) and their sample services (samples/), the
# operations drills (scripts/drills/, stella-drill) at CI length, then the Rust workspace (unit,
# property, loopback and end-to-end tests) with nextest, whose summary is the
# last line. Arguments go to nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need (system packages, the Authority's npm packages).
./scripts/install-deps.sh
# Alerting rules and their unit tests; metric names against docs/metrics.md.
./scripts/check-metrics.sh
(cd tests/authority && node --test)
# The envelope SDKs for services in other languages (sdk/), each against
# envelope/testdata/vectors.json; each script installs what it needs.
for sdk in sdk/*/test.sh; do
  echo "== $sdk"
  bash "$sdk"
done
# The sample services in Python, Node and Go (samples/), run by
# gateway/tests/e2e_samples.rs behind the real gateway.
samples/prepare.sh
# PyJWT and jose verifying the gateway's Transaction Tokens
# (gateway/tests/e2e_txn_token.rs).
samples/txn-token/prepare.sh
# The drills use the binaries of the test build; build it once here.
cargo build -q --workspace --all-targets
# Each change under load, zero failed requests (README, Drills).
DRILL_NO_BUILD=1 ./scripts/drills/run-all.sh --short
# The README's first command: the local stack comes up and the smoke
# command it prints passes every route, the mTLS and SPIFFE ones included.
DEV_UP_NO_BUILD=1 ./scripts/dev-up-check.sh
# Requests generated from the gateway's OpenAPI document: no 5xx.
DRILL_NO_BUILD=1 ./scripts/schemathesis.sh --short
# Doc tests (nextest does not run them): the compile_fail examples prove
# that an envelope cannot be signed for a caller that skipped a check.
cargo test -q --workspace --doc
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
