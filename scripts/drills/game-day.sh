#!/usr/bin/env bash
# Drill: 10 minutes of overlapping faults (Authority down twice, a redis
# restart, an upstream killed, reloads, a binary upgrade, slow clients, an
# unknown-kid burst) under constant mixed load on two replicas sharing redis
# (tests/drill/src/drills/game_day/). --short: about 45 s.
#   scripts/drills/game-day.sh [--short] [--rate N]
exec "$(dirname "$0")/stella-drill.sh" game-day "$@"
