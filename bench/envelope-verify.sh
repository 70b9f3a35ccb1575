#!/usr/bin/env bash
# Benchmark (not a test): one envelope verification in each language, in one
# sitting, so the figures can be compared: the Rust crate (release build),
# then the Python, Node and Go SDKs (sdk/), each verifying the hs256_bearer
# and eddsa_dpop vectors of envelope/testdata/vectors.json with every check
# of SPEC.md section 5. Each prints microseconds per verification (median of
# its runs). The SDKs' test environments must exist (scripts/test.sh, or
# each sdk/*/test.sh, makes them).
#
# Usage: bench/envelope-verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rust (stella-envelope)"
cargo run -q --release -p stella-envelope --example bench_verify
echo "== python (sdk/python)"
sdk/python/.venv/bin/python sdk/python/bench.py
echo "== node (sdk/node)"
node sdk/node/bench.mjs
echo "== go (sdk/go)"
sh sdk/go/bench.sh | grep -E '^(Benchmark|goos|cpu)'
