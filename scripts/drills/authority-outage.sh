#!/usr/bin/env bash
# Drill: Authority down, flip to Hybrid, gateway restart, past max-stale (503),
# Authority back, under constant mixed load (tests/drill/src/drills/authority_outage.rs).
#   scripts/drills/authority-outage.sh [--short] [--rate N] [--step-seconds N]
exec "$(dirname "$0")/stella-drill.sh" authority-outage "$@"
