#!/usr/bin/env bash
# Benchmark (not a test): instructions per request of the gateway's routes
# and of a bare Pingora proxy under valgrind's callgrind, the top functions
# and the Ir ratios (tests/drill/src/bench/callgrind.rs;
# docs/performance.md).
#   bench/callgrind.sh [--gateway BIN] [--requests N] [--warmup N]
#                      [--threads N] [--work-stealing] [--top K]
#                      [--inclusive] [--keep DIR] [--check [FILE]]
#                      [--write-baseline FILE] [ROUTE...]
# --check compares with bench/baseline.json (CI: .ci/run) and exits 1 when
# a route grew more than 3 %.
exec "$(dirname "$0")/stella-drill.sh" bench callgrind "$@"
