#!/usr/bin/env bash
# Drill: the DPoP replay store (memory, one node) under load.
#   1. sustained: DPoP requests only, at the drill's rate, for longer than
#      the proof window, with the default replay settings: zero failed
#      requests, no replay store error (no 503), no share refusal.
#   2. flood: one DPoP key (client svc-dpop) sends most of the traffic
#      against a store sized so that its share (10 % of
#      replay_max_entries) runs out within the step; it gets 429 beyond its
#      share, while another DPoP key (client svc-dpop2) and Bearer callers
#      see no failure at all.
#   scripts/drills/replay-capacity.sh [--short] [--rate N]
# --short (CI): a 10 s proof window (proof_max_age_seconds) and 25 s of
# sustained load, so the window still passes within the step; full: the
# default 60 s window and 90 s of load.
source "$(dirname "$0")/lib.sh"
DRILL_FULL_STEP=90
DRILL_SHORT_STEP=25
drill_init replay-capacity "$@"

# A second DPoP client, so two proof keys can be told apart.
cat >"$CONF/clients.json" <<'JSON'
[{"client_id": "svc-dpop2", "client_secret": "svc-dpop2-secret",
  "scope": "echo.read echo.write admin", "tenant": "acme",
  "dpop_bound_access_tokens": true}]
JSON
export AUTHORITY_CLIENTS_FILE="$CONF/clients.json"
if [ "$DRILL_SHORT" = 1 ]; then
  export Gateway__Auth__Dpop__ProofMaxAgeSeconds=10
  WINDOW=16
else
  WINDOW=66
fi

stack_up
capacity=$("$BIN/stella-gateway" check --config "$CONF/gateway.yaml" 2>/dev/null |
  sed -n 's/^ *replay_max_entries: *//p' | head -n 1)
ok "default replay_max_entries: ${capacity:-?} (proof window ${WINDOW}s, $(nproc) cores)"

replay_metric() { metric "$1" "$2"; }

# --- 1. sustained load at the drill's rate, longer than the window.
load_start "kinds:
  - {name: dpop-get,  method: GET,  url: '$GW/dpop/1?x=1', credential: 'dpop:svc-dpop',  weight: 3}
  - {name: dpop-post, method: POST, url: '$GW/items/7',    credential: 'dpop:svc-dpop2', weight: 1, body: '{\"n\":1}'}"
step sustained
hold
errors=$(replay_metric stella_gateway_replay_store_errors_total "")
refusals=$(replay_metric stella_gateway_replay_share_refusals_total "")
load_end
[ "${errors%.*}" = 0 ] && ok "replay store errors (503): 0" || fail "replay store errors (503): $errors"
[ "${refusals%.*}" = 0 ] && ok "share refusals (429): 0" || fail "share refusals (429) under even load: $refusals"
sustained_requests=$(sed -n 's/^stella-load: \([0-9]*\) requests, \([0-9]*\) failed.*/\1 requests, \2 failed/p' "$LOGS/load.err")
[ "$STEP_SECONDS" -gt "$WINDOW" ] || fail "the step (${STEP_SECONDS}s) is not longer than the proof window (${WINDOW}s)"

# --- 2. one key floods a store sized for the step.
stop gateway TERM
# Room for ten seconds of the whole rate; one key may hold a tenth: the
# flooding key (4/5 of the rate) runs out of its share within 2 s, the
# other DPoP key (1/20 of the rate, 0.6 s worth in 12 s) never does.
export Gateway__Auth__Dpop__ReplayMaxEntries=$((RATE * 10))
export Gateway__Auth__Dpop__ReplayMaxSharePercent=10
start_gateway
share=$RATE
load_start "kinds:
  - {name: flood,       method: GET, url: '$GW/dpop/flood', credential: 'dpop:svc-dpop',  expect: '2xx,429', weight: 16}
  - {name: other-dpop,  method: GET, url: '$GW/dpop/other', credential: 'dpop:svc-dpop2', weight: 1}
  - {name: bearer,      method: GET, url: '$GW/items/1',    credential: 'bearer:svc-bearer', weight: 3}"
step flood
hold 12
refusals=$(replay_metric stella_gateway_replay_share_refusals_total "")
errors=$(replay_metric stella_gateway_replay_store_errors_total "")
load_end
[ "${refusals%.*}" -gt 0 ] && ok "flooding key refused with 429 beyond its share of $share entries: $refusals times" ||
  fail "the flooding key was never refused (share $share entries)"
[ "${errors%.*}" = 0 ] && ok "replay store errors (503): 0" || fail "replay store errors (503): $errors"
flood_requests=$(sed -n 's/^stella-load: \([0-9]*\) requests, \([0-9]*\) failed.*/\1 requests, \2 failed/p' "$LOGS/load.err")

say ""
printf '%-10s | %-8s | %-7s | %-26s | %s\n' run seconds rate replay_max_entries result
printf -- '-----------|----------|---------|----------------------------|------------------------------\n'
printf '%-10s | %-8s | %-7s | %-26s | %s\n' sustained "$STEP_SECONDS" "$RATE" "${capacity:-?} (default)" "${sustained_requests:-?}"
printf '%-10s | %-8s | %-7s | %-26s | %s\n' flood 12 "$RATE" "$((RATE * 10)) (share $share)" "${flood_requests:-?}; 429s: ${refusals%.*}"
say "machine: $(nproc) cores; proof window ${WINDOW}s"
drill_finish
