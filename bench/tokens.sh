#!/usr/bin/env bash
# Benchmark (not a test): the gateway's RSS holding N distinct cached tokens
# (tests/drill/src/bench/tokens.rs). Also `bench/run.sh tokens`.
#   bench/tokens.sh [N]
exec "$(dirname "$0")/stella-drill.sh" bench tokens "$@"
