#!/usr/bin/env bash
# Drill: revoke a DPoP key, a client, a SPIFFE ID and a subject (a CAEP event) on one of two
# replicas sharing redis, under load; time until each replica refuses, then
# restart a replica (tests/drill/src/drills/revocation.rs).
#   scripts/drills/revocation.sh [--short] [--runs N]
exec "$(dirname "$0")/stella-drill.sh" revocation "$@"
