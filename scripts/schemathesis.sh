#!/usr/bin/env bash
# Property-based requests from the gateway's own OpenAPI document
# (`stella-gateway openapi`) against a private copy of the local stack
# (Authority, the three sample services, the gateway; scripts/drills/lib.sh):
# schemathesis generates requests for every operation, with a Bearer token
# that holds every scope, and fails on any 5xx answer.
#   scripts/schemathesis.sh [--short]
# Needs tests/.venv (scripts/install-deps.sh).
source "$(dirname "$0")/drills/lib.sh"
drill_init schemathesis "$@"
[ -x tests/.venv/bin/schemathesis ] || abort "tests/.venv/bin/schemathesis missing: run scripts/install-deps.sh"

stack_up
"$BIN/stella-gateway" openapi --config "$CONF/gateway.yaml" >"$RUN/openapi.json" \
  || abort "stella-gateway openapi failed"
ok "openapi: $(grep -c '"operationId"' "$RUN/openapi.json") operations"

examples=25
[ "$DRILL_SHORT" = 1 ] && examples=10
set +e
tests/.venv/bin/schemathesis run "$RUN/openapi.json" \
  --url "$GW" \
  --checks not_a_server_error \
  --header "Authorization: Bearer $BEARER_TOKEN" \
  --max-examples "$examples" \
  --request-timeout 10 \
  --no-color >"$LOGS/schemathesis.out" 2>&1
code=$?
set -e
tail -n 25 "$LOGS/schemathesis.out"
if [ "$code" = 0 ]; then
  ok "schemathesis: no 5xx ($examples examples per operation)"
else
  fail "schemathesis exit $code (logs/schemathesis.out)"
fi
drill_finish
