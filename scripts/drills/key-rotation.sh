#!/usr/bin/env bash
# Drill: rotate the envelope signing key from k1 to k2 in three waves under
# constant load, with zero failed requests (runbooks/envelope-key-rotation.md):
#   1. services accept k1 and k2 (their Router__ file, SIGHUP);
#   2. the gateway signs with k2 (keyring k1+k2, active k2; `stella-gateway reload`);
#   3. services drop k1 (their Router__ file, SIGHUP);
#   4. the gateway drops k1 (keyring k2 only; SIGHUP);
# then an envelope signed with k1 is refused by a service (401) and one
# signed with k2 is accepted.
#   scripts/drills/key-rotation.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init key-rotation "$@"

new_key k1
new_key k2
DRILL_KIDS=(k1)
gateway_envelope_ring k1 k1
# Short envelope lifetime and service clock skew, so that "no envelope
# signed with k1 can still arrive" (lifetime + skew after wave 2) is 15 s.
GW_ENVELOPE_LIFETIME=10
SVC_SKEW=5
stack_up
INSTANCES=(echo echo-hybrid echo-legacy)

config=$(gateway_get /config)
[ "$(jget "$config" envelope.active_kid)" = k1 ] || abort "gateway /config before the rotation: $config (wanted active_kid k1)"
ok "gateway signs with k1: $(jget "$config" envelope)"
applied_before=$(metric stella_gateway_config_reloads_total 'result="applied"')

# The kid a service saw on a request through the gateway.
seen_kid() { # path
  local body
  body=$(curl -s --max-time 5 "$GW$1" -H "Authorization: Bearer $BEARER_TOKEN")
  printf '%s' "$body" | sed -n 's/.*"envelope":{[^}]*"kid":"\([^"]*\)".*/\1/p'
}
kid_is() { [ "$(seen_kid "$1")" = "$2" ]; }

load_start
step baseline
hold

step wave1-services-accept-k2
for s in "${INSTANCES[@]}"; do
  SVC_KEYS[$s]=$(accepted k1 k2)
  reconfigure_service "$s" hup
done
hold

step wave2-gateway-signs-k2
gateway_envelope_ring k2 k1 k2:file
gateway_config
out=$("$BIN/stella-gateway" reload --admin "$ADMIN" 2>&1) || abort "stella-gateway reload: $out"
ok "stella-gateway reload: $out"
config=$(gateway_get /config)
[ "$(jget "$config" envelope.active_kid)" = k2 ] || abort "gateway /config after wave 2: $config (wanted active_kid k2)"
ok "gateway /config: $(jget "$config" envelope)"
wave2_at=$SECONDS
for path in /items/1 /hybrid/1; do
  ms=$(wait_for 5 "kid k2 at $path" kid_is "$path" k2) || abort "a request to $path carries kid '$(seen_kid "$path")', not k2"
  ok "requests to $path carry kid k2 (after ${ms} ms)"
done
hold

# Wave 3 waits until envelopes signed with k1 have expired: the envelope
# lifetime plus the services' clock skew (15 s) after wave 2. (With --short
# the step is shorter; nothing here holds an envelope past its request.)
step wave3-services-drop-k1
if [ "$DRILL_SHORT" = 0 ] && [ $((SECONDS - wave2_at)) -lt 15 ]; then
  sleep $((15 - (SECONDS - wave2_at)))
fi
for s in "${INSTANCES[@]}"; do
  SVC_KEYS[$s]=$(accepted k2)
  reconfigure_service "$s" hup
done
hold

step retire-k1-at-gateway
gateway_envelope_ring k2 k2:file
gateway_config
kill -HUP "${PIDS[gateway]}"
gateway_kids() { jkids "$(gateway_get /config)" kids; }
only_k2() { [ "$(gateway_kids)" = k2 ]; }
ms=$(wait_for 5 "gateway keyring k2 only" only_k2) || abort "gateway /config after SIGHUP: $(gateway_get /config)"
ok "SIGHUP: gateway keyring is k2 only after ${ms} ms: $(jget "$(gateway_get /config)" envelope)"

# An envelope signed with the retired key, sent straight to a service.
minted() { # kid service
  local secret=${KEY[$1]}
  Router__IdentityEnvelopeSigningKey=$secret "$BIN/stella-gateway" envelope mint \
    --kid "$1" --audience "$2" --path /items/1 --subject drill-user --tenant acme \
    --client-id drill --scope echo.read | sed -n "s/^-H '\(.*\)'$/\1/p"
}
direct_status() { # kid instance
  local headers=() line
  while IFS= read -r line; do headers+=(-H "$line"); done < <(minted "$1" "${SVC_AUDIENCE[$2]}")
  [ ${#headers[@]} -ge 6 ] || abort "envelope mint printed ${#headers[@]} headers"
  status "http://${SVC_ADDR[$2]}/items/1" "${headers[@]}"
}
for s in echo echo-hybrid; do
  got=$(direct_status k1 "$s")
  [ "$got" = 401 ] && ok "$s refuses an envelope signed with k1: 401" ||
    fail "$s answered $got to an envelope signed with the retired k1 (wanted 401)"
  got=$(direct_status k2 "$s")
  [ "$got" = 200 ] && ok "$s accepts an envelope signed with k2: 200" ||
    fail "$s answered $got to an envelope signed with k2 (wanted 200)"
done
applied=$(metric stella_gateway_config_reloads_total 'result="applied"')
[ "${applied%.*}" -ge $((${applied_before%.*} + 2)) ] &&
  ok "stella_gateway_config_reloads_total{result=\"applied\"}: $applied_before -> $applied" ||
  fail "stella_gateway_config_reloads_total{result=\"applied\"} went $applied_before -> $applied (wanted +2)"
hold

drill_finish
