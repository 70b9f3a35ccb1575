#!/usr/bin/env bash
# Every drill but replay-capacity, one after another, and a summary table;
# exits non-zero if any failed.
#   scripts/drills/run-all.sh [--short] [--rate N] [--step-seconds N]
exec "$(dirname "$0")/stella-drill.sh" all "$@"
