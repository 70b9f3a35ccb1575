#!/usr/bin/env bash
# Drill: flip the `echo` service from GatewayEnforced to Hybrid and back
# under constant load, without restarting anything, with zero failed
# requests (runbooks/trust-mode-flip.md):
#   1. to Hybrid: the service's Router__ file changes (the service notices by
#      itself), then the gateway's record of the mode (POST /reload);
#   2. back to GatewayEnforced: the file again, this time with SIGHUP, then
#      the gateway (`stella-gateway reload`).
# After each flip: /__echo/config shows the mode, and a request straight to
# the service with no envelope behaves as the mode says (Hybrid: the
# service's own authentication decides; GatewayEnforced: 401).
#   scripts/drills/trust-flip.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init trust-flip "$@"

stack_up
pid_before=${PIDS[echo]}

# Straight to the service, no envelope: with the service's own token, and
# with nothing.
direct() { status "http://${SVC_ADDR[echo]}/items/1" "$@"; }
expect_direct() { # own-token-status no-credential-status
  local own none
  own=$(direct -H "Authorization: Bearer $LEGACY_SERVICE_TOKEN")
  none=$(direct)
  if [ "$own" = "$1" ] && [ "$none" = "$2" ]; then
    ok "straight to echo without an envelope: own token $own, nothing $none"
  else
    fail "straight to echo without an envelope: own token $own (wanted $1), nothing $none (wanted $2)"
  fi
}
# The gateway's config records each service's mode (it reports it; the
# service enforces it), so the flip updates it too.
set_gateway_mode() { # mode
  SERVICES[0]="echo=echo:$1"
  gateway_config
}

expect_direct 401 401
load_start
step baseline
hold

step flip-to-hybrid
SVC_MODE[echo]=Hybrid
reconfigure_service echo file
expect_direct 200 401
set_gateway_mode Hybrid
gateway_reload
hold

step flip-back-to-gateway-enforced
SVC_MODE[echo]=GatewayEnforced
reconfigure_service echo hup
expect_direct 401 401
set_gateway_mode GatewayEnforced
out=$("$BIN/stella-gateway" reload --admin "$ADMIN" 2>&1) || abort "stella-gateway reload: $out"
ok "stella-gateway reload: $out"
hold

[ "${PIDS[echo]}" = "$pid_before" ] && alive echo && ok "echo was never restarted (pid $pid_before)" ||
  fail "echo is not the process it was at the start"
drill_finish
