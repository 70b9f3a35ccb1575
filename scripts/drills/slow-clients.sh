#!/usr/bin/env bash
# Drill: slow clients cannot hold the gateway. Under constant load, N
# connections (3000; 300 with --short) trickle a request head one header
# line every 2 s and never finish it. With the default
# gateway.limits.request_head_timeout_ms (10 s) every one of them must be
# answered 408 and closed within the timeout plus a margin, while the load's
# requests keep succeeding (0 failed).
#   scripts/drills/slow-clients.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init slow-clients "$@"
command -v python3 >/dev/null || abort "python3 is required"

stack_up
load_start
step baseline
hold

n=3000
[ "$DRILL_SHORT" = 1 ] && n=300
step "slowloris-$n"
result=$(python3 "$DRILL_ROOT/scripts/drills/slowloris.py" 127.0.0.1 "$GW_HTTP_PORT" "$n" 2 30)
say "  $result"
still_open=$(jfield "$result" still_open)
answered=$(jfield "$result" answered_408)
last=$(jfield "$result" last_closed_after_seconds)
if [ "$still_open" = 0 ] && [ "$answered" = "$n" ]; then
  ok "all $n slow heads answered 408 and closed; the last after ${last}s"
else
  fail "slow heads: $still_open of $n still open after 30 s, $answered answered 408"
fi
closed=$(curl -fsS "$ADMIN/metrics" | awk '/^stella_gateway_connections_closed_total\{.*request_head_timeout/ {print $2}')
say "  stella_gateway_connections_closed_total{reason=request_head_timeout} $closed"
hold 2

step after
hold
drill_finish
