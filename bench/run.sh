#!/usr/bin/env bash
# Benchmark (not a test): requests/s, latency and CPU per request of the
# gateway's routes against HAProxy and a bare Pingora proxy, the target
# ratios, RSS and cold start; or one of the other modes
# (tests/drill/src/bench/; docs/performance.md).
#   bench/run.sh [DURATION_SECONDS] [ROUNDS] [CONNECTIONS]
#   bench/run.sh coldstart [STARTS] | tokens [N] | connections [N] | soak [MINUTES] [RATE]
# BENCH_TRACES=1: traces on, exported to a local sink; BENCH_LOG_LEVEL=warn:
# no decision lines.
exec "$(dirname "$0")/stella-drill.sh" bench run "$@"
