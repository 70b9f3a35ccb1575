#!/usr/bin/env bash
# Drill: flip a Rust and a Python service GatewayEnforced -> Hybrid ->
# GatewayEnforced under constant load, no restart (tests/drill/src/drills/trust_flip.rs).
#   scripts/drills/trust-flip.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" trust-flip "$@"
