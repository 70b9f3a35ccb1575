#!/usr/bin/env bash
# Property-based requests from the gateway's own OpenAPI document against a
# private copy of the local stack; fails on any 5xx answer. Needs tests/.venv
# (scripts/install-deps.sh). tests/drill/src/drills/schemathesis.rs.
#   scripts/schemathesis.sh [--short]
exec "$(dirname "$0")/drills/stella-drill.sh" schemathesis "$@"
