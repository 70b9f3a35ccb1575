#!/usr/bin/env bash
# Drill: the `echo` service runs as two replicas behind the gateway. Under
# constant load, stop one (SIGTERM: it drains and exits), start it again on
# the same address, then the same with the other: zero failed requests, and
# each restarted replica takes traffic again (once the gateway's passive
# health lets it back: after the ejection period, 10 s by default,
# services[].eject_seconds).
#   scripts/drills/replica-restart.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init replica-restart "$@"

DRILL_ECHO_REPLICAS=2
stack_up

served() { # instance: requests it has served
  jfield "$(curl -s --max-time 2 "http://${SVC_ADDR[$1]}/__echo/requests")" requests
}
serves_more_than() { # instance count
  local n
  n=$(served "$1")
  [ -n "$n" ] && [ "$n" -gt "$2" ]
}

load_start
step baseline
hold
for r in echo-1 echo-2; do
  [ "$(served "$r")" -gt 0 ] && ok "$r serves ($(served "$r") requests)" || fail "$r served nothing"
done

restart() { # instance
  local r=$1 addr=${SVC_ADDR[$1]}
  step "stop-$r"
  stop "$r" TERM
  ok "$r stopped (SIGTERM)"
  hold
  step "start-$r"
  start_service "$r" echo GatewayEnforced "${addr##*:}"
  [ "${SVC_ADDR[$r]}" = "$addr" ] || abort "$r came back on ${SVC_ADDR[$r]}, not $addr"
  local ms
  ms=$(wait_for 20 "$r takes traffic" serves_more_than "$r" 0) || abort "$r took no traffic within 20 s of its restart"
  ok "$r is back on $addr and took traffic within ${ms} ms"
  hold
}
restart echo-2
restart echo-1

drill_finish
