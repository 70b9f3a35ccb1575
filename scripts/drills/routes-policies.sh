#!/usr/bin/env bash
# Drill: add a route, tighten a scope, a refused bad change, remove the route,
# each seen within 1 s, under constant load (tests/drill/src/drills/routes_policies.rs).
#   scripts/drills/routes-policies.sh [--short]
exec "$(dirname "$0")/stella-drill.sh" routes-policies "$@"
