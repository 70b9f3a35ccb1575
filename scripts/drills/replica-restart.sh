#!/usr/bin/env bash
# Drill: stop and restart each of two replicas of a service under constant load
# (tests/drill/src/drills/replica_restart.rs).
#   scripts/drills/replica-restart.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" replica-restart "$@"
