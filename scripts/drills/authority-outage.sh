#!/usr/bin/env bash
# Drill: Authority down, flip to Hybrid, gateway upgraded (persisted keys,
# introspection results and claims), past max-stale (503), Authority back,
# under constant mixed load (tests/drill/src/drills/authority_outage/).
#   scripts/drills/authority-outage.sh [--short] [--rate N] [--step-seconds N]
exec "$(dirname "$0")/stella-drill.sh" authority-outage "$@"
