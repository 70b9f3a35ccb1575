#!/usr/bin/env bash
# Drill: rotate the envelope signing key in three waves under constant load,
# then the old kid is refused (tests/drill/src/drills/key_rotation.rs).
#   scripts/drills/key-rotation.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" key-rotation "$@"
