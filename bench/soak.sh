#!/usr/bin/env bash
# Benchmark (not a test): mixed load at ~70% of the maximum for MINUTES, a
# row per 30 s window (tests/drill/src/bench/soak.rs). Also `bench/run.sh
# soak`.
#   bench/soak.sh [MINUTES] [RATE]    (environment: PROBE, MAX_IN_FLIGHT)
exec "$(dirname "$0")/stella-drill.sh" bench soak "$@"
