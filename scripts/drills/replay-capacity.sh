#!/usr/bin/env bash
# Drill: DPoP load longer than the proof window, then one key flooding the
# replay store (tests/drill/src/drills/replay_capacity.rs).
#   scripts/drills/replay-capacity.sh [--short] [--rate N]
exec "$(dirname "$0")/stella-drill.sh" replay-capacity "$@"
