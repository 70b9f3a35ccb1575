#!/usr/bin/env bash
# Drill: thousands of slow request heads answered 408 while the load keeps
# succeeding (tests/drill/src/drills/slow_clients.rs).
#   scripts/drills/slow-clients.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" slow-clients "$@"
