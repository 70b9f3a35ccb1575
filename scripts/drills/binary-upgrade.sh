#!/usr/bin/env bash
# Drill: replace the gateway process three times (stella-gateway upgrade) under
# constant load, zero failed requests (tests/drill/src/drills/binary_upgrade.rs).
#   scripts/drills/binary-upgrade.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" binary-upgrade "$@"
