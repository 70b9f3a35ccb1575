#!/usr/bin/env bash
# Drill: the Authority goes away and comes back, under constant mixed load
# (runbooks/authority-outage.md). Stages:
#   1. authority-down    the Authority is stopped: requests with known keys
#                        keep succeeding, the gateway's staleness rises;
#   2. flip-hybrid       the operator flips `echo` GatewayEnforced -> Hybrid
#                        (its Router__ file, then POST /reload), no restart;
#   3. gateway-restart   the gateway is restarted during the outage and
#                        serves from its state folder (last-known-good JWKS);
#   4. past-max-stale    the keys' age passes jwks_refresh + jwks_max_stale:
#                        a token the gateway has not verified yet gets 503
#                        with Retry-After, never 401; anonymous and
#                        SPIFFE-only requests keep working;
#   5. authority-back    the Authority returns on the same port with the same
#                        keys: staleness back to ~0 without a gateway
#                        restart (at the gateway's next retry, at most
#                        jwks_refresh_seconds later), new tokens served
#                        again (5-recovered); then `echo` is flipped back to
#                        GatewayEnforced (5-flip-back).
# Load, each class its own stella-load (so each has its own table per stage),
# all started before the outage with long-lived tokens:
#   bearer   Bearer tokens to GatewayEnforced (/items), Hybrid and
#            ServiceEnforced routes;
#   dpop     DPoP-bound tokens (/dpop, POST /items, /hybrid);
#   anon     anonymous requests (/public);
#   refused  requests that must stay refused (401 without a token, 403
#            without the scope);
# and two probes (curl, a few per second): `fresh`, each request with a
# token the gateway has never seen (minted before the outage, so its
# verification needs the Authority's keys), and `spiffe`, a SPIFFE client
# certificate alone on the TLS listener (/svc).
# The requests refused while the gateway itself restarts (stage 3: one
# process, nothing in front of it) are counted separately, as the restart
# window; they must be connection failures, never a status.
#   scripts/drills/authority-outage.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init authority-outage "$@"
command -v openssl >/dev/null || abort "openssl is required (the SPIFFE client certificate)"

# Keys are fresh for jwks_refresh_seconds (10, the smallest allowed) after
# the last fetch and then served stale for MAX_STALE more. Stages 1-3 must
# fit in that; stage 4 starts when it has passed.
REFRESH=10
MAX_STALE=$((3 * STEP_SECONDS + 15))
MAX_AGE=$((REFRESH + MAX_STALE))

# The Authority keeps its signing keys in a file, so it comes back with the
# same kids; /__test/mint makes the fresh tokens of the `fresh` probe.
AUTHORITY_ENV=(AUTHORITY_KEYS_FILE="$RUN/authority-keys.json" AUTHORITY_TEST_MINT=1)
mkdir -p "$RUN/state" "$RUN/pki"
GW_AUTHORITY_EXTRA="      jwks_refresh_seconds: $REFRESH
      jwks_cooldown_seconds: 2
      jwks_max_stale_seconds: $MAX_STALE
      http_timeout_ms: 500
      state_dir: \"$RUN/state\""

# TLS listener with client certificates: a CA, the gateway's certificate and
# the SPIFFE X.509-SVID of the workload /svc/** admits.
(
  cd "$RUN/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=drill-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
  for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
      -keyout "$who.key" -out "$who.csr" 2>/dev/null
  done
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
  printf 'subjectAltName=URI:spiffe://stella.test/ns/default/sa/orders\nextendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext \
    -out server.pem 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext \
    -out client.pem 2>/dev/null
) || abort "openssl could not make the TLS material"
read -r GW_TLS_PORT <<<"$(free_ports 1)"
GW_LISTENERS_EXTRA="    tls:
      addr: 127.0.0.1:$GW_TLS_PORT
      cert_file: \"$RUN/pki/server.pem\"
      key_file: \"$RUN/pki/server.key\"
      client_certificates: optional
      client_ca_file: \"$RUN/pki/ca.pem\"
      http2: false"

stack_up
GW_TLS="https://127.0.0.1:$GW_TLS_PORT"
ok "keys fresh for ${REFRESH}s after a fetch, then stale for at most ${MAX_STALE}s (max age ${MAX_AGE}s); state folder ${RUN#"$DRILL_ROOT"/}/state"

# ---------------------------------------------------------------------------
# What the operator reads

# authority_staleness: seconds since the gateway's last successful JWKS
# fetch, from /metrics: stella_gateway_authority_staleness_seconds{what="jwks"}
# where the gateway has it, else stella_gateway_jwks_age_seconds. Empty when
# neither is there (no JWKS loaded yet) or the admin listener is down.
authority_staleness() {
  local text
  text=$(gateway_get /metrics 2>/dev/null) || return 0
  printf '%s\n' "$text" | awk '
    index($0, "stella_gateway_authority_staleness_seconds{") == 1 && index($0, "what=\"jwks\"") { v = $NF; exit }
    $1 == "stella_gateway_jwks_age_seconds" && old == "" { old = $2 }
    END { if (v != "") print v; else if (old != "") print old }'
}
staleness_at_most() { local s; s=$(authority_staleness); [ -n "$s" ] && [ "${s%.*}" -le "$1" ]; }
staleness_above() { local s; s=$(authority_staleness); [ -n "$s" ] && [ "${s%.*}" -gt "$1" ]; }
readyz() { status "$ADMIN/readyz"; }
readyz_ok() { [ "$(readyz)" = 200 ]; }

# ---------------------------------------------------------------------------
# Load: one stella-load per class, each with its own step table.

CLASSES=(bearer dpop anon refused)
declare -A CLASS_FD=() CLASS_ACKS=() CLASS_RC=()

class_spec() { # class
  case "$1" in
    bearer) cat <<YAML
kinds:
  - {name: items-bearer,  method: GET, url: '$GW/items/1',  credential: 'bearer:svc-bearer', weight: 3}
  - {name: hybrid-bearer, method: GET, url: '$GW/hybrid/1', credential: 'bearer:svc-bearer', weight: 1}
  - {name: legacy,        method: GET, url: '$GW/legacy/1', credential: 'token-file:$RUN/legacy.token', weight: 1}
YAML
    ;;
    dpop) cat <<YAML
kinds:
  - {name: dpop,        method: GET,  url: '$GW/dpop/1?x=1', credential: 'dpop:svc-dpop', weight: 2}
  - {name: write-dpop,  method: POST, url: '$GW/items/7',    credential: 'dpop:svc-dpop', weight: 1, body: '{"n":1}'}
  - {name: hybrid-dpop, method: GET,  url: '$GW/hybrid/2',   credential: 'dpop:svc-dpop', weight: 1}
YAML
    ;;
    anon) cat <<YAML
kinds:
  - {name: public, method: GET, url: '$GW/public/hello', credential: none}
YAML
    ;;
    refused) cat <<YAML
kinds:
  - {name: anon-refused,  method: GET, url: '$GW/items/3', credential: none, expect: '401'}
  - {name: admin-refused, method: GET, url: '$GW/admin/x', credential: 'bearer:svc-readonly', expect: '403'}
YAML
    ;;
  esac
}

class_rate() { # class: its share of --rate
  case "$1" in
    bearer) echo $((RATE * 40 / 100)) ;;
    dpop) echo $((RATE * 25 / 100)) ;;
    anon) echo $((RATE * 25 / 100)) ;;
    refused) echo $((RATE * 10 / 100)) ;;
  esac
}

class_load_start() { # class
  local c=$1 fd
  class_spec "$c" >"$LOGS/load-$c.yaml"
  rm -f "$LOGS/load-$c.in"
  mkfifo "$LOGS/load-$c.in"
  exec {fd}<>"$LOGS/load-$c.in"
  CLASS_FD[$c]=$fd
  CLASS_ACKS[$c]=0
  "$BIN/stella-load" --rate "$(class_rate "$c")" --issuer "$ISSUER" --spec "$LOGS/load-$c.yaml" \
    --first-step warmup --timeout 5 --duration 3600 \
    <"$LOGS/load-$c.in" >"$LOGS/load-$c.out" 2>"$LOGS/load-$c.err" &
  PIDS[load-$c]=$!
  wait_ready "load-$c" LOAD_READY 60 >/dev/null || abort "the $c load generator did not start"
}

# class_cmd CLASS LINE: sends a command and waits for its acknowledgement.
class_cmd() {
  local c=$1 line=$2 _
  printf '%s\n' "$line" >&"${CLASS_FD[$c]}"
  CLASS_ACKS[$c]=$((CLASS_ACKS[$c] + 1))
  for _ in $(seq 1 200); do
    [ "$(grep -c '^LOAD_ACK ' "$LOGS/load-$c.out" 2>/dev/null || true)" -ge "${CLASS_ACKS[$c]}" ] && return 0
    alive "load-$c" || break
    sleep 0.025
  done
  fail "the $c load generator did not acknowledge: $line"
}

class_load_end() { # class
  local c=$1 fd=${CLASS_FD[$1]:-} rc=0
  [ -n "$fd" ] || return 0
  alive "load-$c" && { printf 'end\n' >&"$fd" || true; }
  exec {fd}>&-
  unset "CLASS_FD[$c]"
  wait "${PIDS[load-$c]}" || rc=$?
  unset "PIDS[load-$c]"
  CLASS_RC[$c]=$rc
}

# A stage: its name goes to every load generator and to the probes.
STAGES=()
declare -A STAGE_START=() STAGE_SECONDS=() STAGE_STALE=() STAGE_READY=()
STAGE=""
stage() { # name
  local c now
  now=$(date +%s)
  [ -n "$STAGE" ] && STAGE_SECONDS[$STAGE]=$((now - STAGE_START[$STAGE]))
  STAGE=$1
  STAGES+=("$1")
  STAGE_START[$1]=$now
  say "== stage $1 (staleness $(authority_staleness)s)"
  for c in "${CLASSES[@]}"; do class_cmd "$c" "step $1"; done
  printf '%s\n' "$1" >"$RUN/stage.tmp" && mv -f "$RUN/stage.tmp" "$RUN/stage"
}
# stage_end: what the operator sees at the end of the stage.
stage_end() {
  STAGE_STALE[$STAGE]=$(authority_staleness)
  STAGE_READY[$STAGE]=$(readyz)
  say "  end of $STAGE: staleness ${STAGE_STALE[$STAGE]:-?}s, /readyz ${STAGE_READY[$STAGE]}"
}
expect_tokens() { # statuses for the token kinds (the refused ones keep theirs)
  local k
  for k in items-bearer hybrid-bearer legacy; do class_cmd bearer "expect $k $1"; done
  for k in dpop write-dpop hybrid-dpop; do class_cmd dpop "expect $k $1"; done
  if [ "$1" = 2xx ]; then class_cmd refused "expect admin-refused 403"; else class_cmd refused "expect admin-refused 403,503"; fi
}

# ---------------------------------------------------------------------------
# Probes: a loop per probe, one request at a time, each line "stage result".

# fresh: a token never presented before, each time (Bearer, /items/1). The
# line also says whether a 503 carried Retry-After and its problem `error`.
probe_fresh() {
  local fd tok st stage hdr
  exec {fd}<"$RUN/fresh.tokens"
  while read -r tok <&"$fd"; do
    read -r stage <"$RUN/stage" || stage=unknown
    hdr=$(curl -s -o "$RUN/fresh.body" -D - -w '\nSTATUS %{http_code}' --max-time 5 \
      -H "Authorization: Bearer $tok" "$GW/items/1" 2>/dev/null || true)
    st=$(printf '%s\n' "$hdr" | sed -n 's/^STATUS //p')
    if [ "$st" = 503 ]; then
      local ra err
      ra=$(printf '%s\n' "$hdr" | tr -d '\r' | sed -n 's/^[Rr]etry-[Aa]fter: *//p' | head -n 1)
      err=$(jfield "$(cat "$RUN/fresh.body")" error)
      printf '%s 503 retry-after=%s error=%s\n' "$stage" "${ra:-none}" "${err:-none}"
    else
      printf '%s %s\n' "$stage" "${st:-000}"
    fi
    sleep 0.2
  done
  echo "probe_fresh: out of tokens" >&2
}

# spiffe: the SPIFFE client certificate alone, on the TLS listener.
probe_spiffe() {
  local st stage
  while true; do
    read -r stage <"$RUN/stage" || stage=unknown
    st=$(status "$GW_TLS/svc/x" --cacert "$RUN/pki/ca.pem" --cert "$RUN/pki/client.pem" --key "$RUN/pki/client.key")
    printf '%s %s\n' "$stage" "$st"
    sleep 0.1
  done
}

# probe_counts PROBE STAGE: "RESULT:N ..." for the stage.
probe_counts() {
  awk -v s="$2" '$1 == s { n[$2]++ } END { for (k in n) printf "%s:%d ", k, n[k] }' "$LOGS/probe-$1.out" |
    sed 's/ $//'
}
probe_count() { # probe stage result
  awk -v s="$2" -v r="$3" '$1 == s && $2 == r { n++ } END { print n + 0 }' "$LOGS/probe-$1.out"
}
probe_total() { # probe stage
  awk -v s="$2" '$1 == s { n++ } END { print n + 0 }' "$LOGS/probe-$1.out"
}

# ---------------------------------------------------------------------------
# Before the outage

# Tokens for the fresh probe, minted now: the Authority will be gone.
fresh_needed=$((STEP_SECONDS * 30 + 4000))
curl -s --max-time 60 -X POST "$ISSUER/__test/mint?count=$fresh_needed" >"$RUN/fresh.tokens" ||
  abort "could not mint the fresh probe's tokens"
[ "$(wc -l <"$RUN/fresh.tokens")" -ge "$fresh_needed" ] || abort "the Authority minted $(wc -l <"$RUN/fresh.tokens") tokens, wanted $fresh_needed"
ok "$fresh_needed tokens minted for the fresh probe (TTL ${TOKEN_TTL}s; the load's own tokens have the same TTL)"
s=$(status "$GW_TLS/svc/x" --cacert "$RUN/pki/ca.pem" --cert "$RUN/pki/client.pem" --key "$RUN/pki/client.key")
[ "$s" = 200 ] || abort "SPIFFE-only request to /svc/x on the TLS listener: $s, wanted 200"
s=$(status "$GW_TLS/svc/x" --cacert "$RUN/pki/ca.pem")
[ "$s" = 401 ] && ok "/svc/x: 200 with the SPIFFE certificate, 401 without" || fail "/svc/x without a certificate: $s, wanted 401"

printf 'warmup\n' >"$RUN/stage"
for c in "${CLASSES[@]}"; do class_load_start "$c"; done
start_bg probe-fresh probe_fresh
start_bg probe-spiffe probe_spiffe
say "  load: $RATE req/s over ${CLASSES[*]} (${LOGS#"$DRILL_ROOT"/}/load-*.yaml), probes fresh and spiffe"

stage baseline
sleep "$STEP_SECONDS"
# Stop the Authority right after a fetch, so the stages below have the whole
# REFRESH + MAX_STALE before the keys are too old.
ms=$(wait_for $((REFRESH + 10)) "a fresh JWKS fetch" staleness_at_most 0) ||
  abort "no JWKS fetch within $((REFRESH + 10))s (staleness $(authority_staleness))"
refreshes_before=$(metric stella_gateway_jwks_refreshes_total "")
stage_end

# ---------------------------------------------------------------------------
stage 1-authority-down
stop authority TERM
outage_at=$(date +%s)
ok "Authority stopped ($ISSUER now refuses connections: $(status "$ISSUER/jwks"))"
stale_start=$(authority_staleness)
sleep "$STEP_SECONDS"
# The next scheduled refresh is at most jwks_refresh_seconds after the last
# fetch; its failure is the operator's first signal.
refresh_failed() { [ "$(metric stella_gateway_jwks_refresh_failures_total "")" != 0 ]; }
wait_for $((REFRESH + 5)) "a failed JWKS refresh" refresh_failed >/dev/null || true
failures=$(metric stella_gateway_jwks_refresh_failures_total "")
refreshes=$(metric stella_gateway_jwks_refreshes_total "")
stale_now=$(authority_staleness)
if [ -n "$stale_now" ] && [ "${stale_now%.*}" -gt "${stale_start:-0}" ] && [ "${failures%.*}" -gt 0 ]; then
  ok "staleness rises: ${stale_start}s -> ${stale_now}s; stella_gateway_jwks_refresh_failures_total $failures, stella_gateway_jwks_refreshes_total $refreshes_before -> $refreshes"
else
  fail "staleness ${stale_start}s -> ${stale_now}s, stella_gateway_jwks_refresh_failures_total $failures (wanted both to rise)"
fi
[ "$(readyz)" = 200 ] && ok "/readyz 200: keys within max-stale" || fail "/readyz $(readyz) within max-stale, wanted 200"
stage_end

# ---------------------------------------------------------------------------
stage 2-flip-hybrid
SVC_MODE[echo]=Hybrid
reconfigure_service echo file
SERVICES[0]="echo=echo:Hybrid"
gateway_config
gateway_reload
sleep "$STEP_SECONDS"
stage_end

# ---------------------------------------------------------------------------
# The gateway restarts on the same addresses with the same configuration
# (now recording echo as Hybrid). Nothing stands in front of this one
# process, so requests sent between its exit and its readiness find no
# listener: the restart-window stage counts them apart. The new process
# accepts connections a moment before it has loaded its persisted keys
# (GATEWAY_READY and /readyz wait for them; a request that does not wait
# gets 503 authority_unavailable), so a 503 is expected in the window too.
stage 3-gateway-restart-window
expect_tokens 2xx,503
gw_pid_before=${PIDS[gateway]}
loads_before=$(metric stella_gateway_authority_lkg_loads_total 'what="jwks",result="loaded"')
stop gateway TERM
mv -f "$LOGS/gateway.out" "$LOGS/gateway-before-restart.out"
mv -f "$LOGS/gateway.err" "$LOGS/gateway-before-restart.err"
restart_started=$(date +%s%N)
start_bg gateway "$BIN/stella-gateway" run --config "$CONF/gateway.yaml"
wait_ready gateway GATEWAY_READY 60 >/dev/null || abort "the gateway did not start again during the outage"
restart_ms=$((($(date +%s%N) - restart_started) / 1000000))
ok "gateway restarted (pid $gw_pid_before -> ${PIDS[gateway]}), ready ${restart_ms} ms after its start"
stage 3-after-restart
expect_tokens 2xx
loaded=$(metric stella_gateway_authority_lkg_loads_total 'what="jwks",result="loaded"')
[ "${loaded%.*}" -ge 1 ] && ok "stella_gateway_authority_lkg_loads_total{what=\"jwks\",result=\"loaded\"} $loaded (was $loads_before in the old process)" ||
  fail "the restarted gateway loaded no persisted JWKS (lkg_loads jwks loaded: $loaded)"
grep -q 'persisted authority signing keys loaded' "$LOGS/gateway.err" "$LOGS/gateway.out" 2>/dev/null &&
  ok "log: persisted authority signing keys loaded" || fail "no 'persisted authority signing keys loaded' log line"
s=$(authority_staleness)
[ -n "$s" ] && [ "${s%.*}" -ge $(( $(date +%s) - outage_at )) ] &&
  ok "staleness after the restart: ${s}s (counted from the last fetch, not from the restart)" ||
  fail "staleness after the restart: '${s}'s, wanted at least the $(( $(date +%s) - outage_at ))s since the outage began"
gw_pid_after=${PIDS[gateway]}
sleep "$STEP_SECONDS"
stage_end

# ---------------------------------------------------------------------------
# Wait (under load) until the keys are older than jwks_refresh + max_stale.
stage 3-until-max-stale
left=$(( MAX_AGE - $(authority_staleness) + 1 ))
say "  waiting ~${left}s until the keys' age passes ${MAX_AGE}s"
ms=$(wait_for $((left + 15)) "staleness past $MAX_AGE s" staleness_above "$MAX_AGE") ||
  abort "staleness $(authority_staleness)s never passed ${MAX_AGE}s"
stage_end

stage 4-past-max-stale
expect_tokens 2xx,503
sleep "$STEP_SECONDS"
[ "$(readyz)" = 503 ] && ok "/readyz 503: $(gateway_get /readyz)" || fail "/readyz $(readyz) past max-stale: $(gateway_get /readyz)"
stage_end

# ---------------------------------------------------------------------------
stage 5-authority-back
start_authority "$AUTHORITY_PORT"
ok "Authority back on $ISSUER (same port, keys from ${RUN#"$DRILL_ROOT"/}/authority-keys.json)"
ms=$(wait_for $((REFRESH + 20)) "staleness back to ~0" staleness_at_most 3) ||
  abort "staleness still $(authority_staleness)s $((REFRESH + 20))s after the Authority came back"
ok "staleness back to $(authority_staleness)s after ${ms} ms, without a gateway restart"
[ "${PIDS[gateway]}" = "$gw_pid_after" ] && alive gateway || fail "the gateway is not the process that ran before the Authority came back"
ms=$(wait_for 10 "/readyz 200" readyz_ok) && ok "/readyz 200 again" || fail "/readyz $(readyz) after recovery"
stage_end

stage 5-recovered
expect_tokens 2xx
sleep "$STEP_SECONDS"
stage_end

stage 5-flip-back
SVC_MODE[echo]=GatewayEnforced
reconfigure_service echo hup
SERVICES[0]="echo=echo:GatewayEnforced"
gateway_config
out=$("$BIN/stella-gateway" reload --admin "$ADMIN" 2>&1) || abort "stella-gateway reload: $out"
ok "stella-gateway reload: $out"
sleep "$STEP_SECONDS"
stage_end
STAGE_SECONDS[$STAGE]=$(( $(date +%s) - STAGE_START[$STAGE] ))

# ---------------------------------------------------------------------------
# The verdict

stop probe-fresh
stop probe-spiffe
for c in "${CLASSES[@]}"; do class_load_end "$c"; done

# step_cols CLASS STEP: "requests failed non2xx" from the class's step table.
step_cols() {
  awk -F'|' -v s="$2" '
    { for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i) }
    $1 == s && NF >= 6 { print $2, $3, $4; found = 1; exit }
    END { if (!found) print 0, 0, 0 }' "$LOGS/load-$1.out"
}

window=3-gateway-restart-window
say ""
say "Per stage: each load class as 2xx/503/failed (503 expected past max-stale, until the gateway's first"
say "fetch after the Authority's return, and in the restart window; the refused class as"
say "refused-as-expected/failed), the probes by status, staleness and /readyz at the stage's end."
printf '%-28s | %4s | %-17s | %-17s | %-12s | %-12s | %-19s | %-9s | %5s | %6s\n' \
  stage s bearer dpop anon refused 'fresh 200/503/401/x' 'spiffe ok/x' stale readyz
printf -- '-----------------------------|------|-------------------|-------------------|--------------|--------------|---------------------|-----------|-------|-------\n'
window_failed=0
for st in "${STAGES[@]}"; do
  cols=()
  for c in "${CLASSES[@]}"; do
    read -r req failed non2xx <<<"$(step_cols "$c" "$st")"
    case "$c" in
      refused) cols+=("$((req - failed))/$failed") ;;
      anon) cols+=("$((req - non2xx))/$failed") ;;
      *) cols+=("$((req - non2xx))/$((non2xx - failed))/$failed") ;;
    esac
    if [ "$st" = "$window" ]; then
      window_failed=$((window_failed + failed))
    elif [ "$failed" -gt 0 ]; then
      fail "stage $st: $failed failed $c requests (${LOGS#"$DRILL_ROOT"/}/load-$c.err)"
    fi
  done
  f200=$(probe_count fresh "$st" 200)
  f503=$(probe_count fresh "$st" 503)
  f401=$(probe_count fresh "$st" 401)
  fx=$(($(probe_total fresh "$st") - f200 - f503 - f401))
  s200=$(probe_count spiffe "$st" 200)
  sx=$(($(probe_total spiffe "$st") - s200))
  printf '%-28s | %4s | %-17s | %-17s | %-12s | %-12s | %-19s | %-9s | %5s | %6s\n' \
    "$st" "${STAGE_SECONDS[$st]:-}" "${cols[0]}" "${cols[1]}" "${cols[2]}" "${cols[3]}" \
    "$f200/$f503/$f401/$fx" "$s200/$sx" "${STAGE_STALE[$st]:-}" "${STAGE_READY[$st]:-}"
  # What each probe must show, per stage.
  [ "$st" = "$window" ] && continue
  [ "$sx" -eq 0 ] || fail "stage $st: SPIFFE-only requests not 200: $(probe_counts spiffe "$st")"
  case "$st" in
    # The edges: the keys' age passes the limit near the end of the
    # first, and the gateway's next fetch ends the second.
    warmup | 3-until-max-stale | 5-authority-back)
      [ "$f401" -eq 0 ] || fail "stage $st: $f401 fresh tokens got 401 (must be 200 or 503, never 401)"
      [ "$fx" -eq 0 ] || fail "stage $st: fresh tokens: $(probe_counts fresh "$st") (wanted 200 or 503)"
      ;;
    4-past-max-stale)
      [ "$f503" -gt 0 ] || fail "stage $st: no fresh token got 503 ($(probe_counts fresh "$st"))"
      [ "$f401" -eq 0 ] || fail "stage $st: $f401 fresh tokens got 401 (must be 503, never 401)"
      [ "$((f200 + fx))" -eq 0 ] || fail "stage $st: fresh tokens: $(probe_counts fresh "$st") (wanted 503 only)"
      bad=$(awk -v s="$st" '$1 == s && $2 == 503 && ($3 !~ /^retry-after=[0-9]+$/ || $4 != "error=temporarily_unavailable")' "$LOGS/probe-fresh.out" | head -n 3)
      [ -z "$bad" ] && ok "stage $st: every fresh-token 503 had Retry-After and error temporarily_unavailable ($(awk -v s="$st" '$1 == s && $2 == 503 { print $3; exit }' "$LOGS/probe-fresh.out"))" ||
        fail "stage $st: 503 without Retry-After or with another error: $bad"
      ;;
    *)
      [ "$((f503 + f401 + fx))" -eq 0 ] || fail "stage $st: fresh tokens: $(probe_counts fresh "$st") (wanted 200 only)"
      ;;
  esac
done

# The restart window: its failed requests must all be connection failures
# (transport, timeout), never a status. The kind tables count results over
# the whole run, so: every failed request of the run that got a status is
# one too many (failures outside the window are reported above anyway).
status_failures=0
for c in "${CLASSES[@]}"; do
  n=$(awk -F'|' '{ for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i) }
    NF == 4 && $2 ~ /^[0-9]+$/ {
      failed += $3
      m = split($4, r, " ")
      for (j = 1; j <= m; j++) if (r[j] ~ /^(transport|timeout|in-flight-limit):/) { split(r[j], kv, ":"); conn += kv[2] }
    }
    END { print failed - conn }' "$LOGS/load-$c.out")
  status_failures=$((status_failures + n))
done
fwin=$(($(probe_total fresh "$window") - $(probe_count fresh "$window" 200) - $(probe_count fresh "$window" 000) - $(probe_count fresh "$window" 503)))
swin=$(($(probe_total spiffe "$window") - $(probe_count spiffe "$window" 200) - $(probe_count spiffe "$window" 000)))
if [ "$status_failures" -eq 0 ] && [ "$fwin" -eq 0 ] && [ "$swin" -eq 0 ]; then
  ok "restart window: $window_failed load requests found no listener (connection failures, no status) while the one gateway process restarted (${restart_ms} ms to ready); 503 before its persisted keys were loaded: $(for c in bearer dpop; do read -r req failed non2xx <<<"$(step_cols "$c" "$window")"; printf '%s %s ' "$c" "$((non2xx - failed))"; done)fresh $(probe_count fresh "$window" 503)"
else
  fail "restart window: $status_failures failed load requests in the run got a status; probes in the window: fresh $(probe_counts fresh "$window"), spiffe $(probe_counts spiffe "$window")"
fi

# Never a 401 for a token that was valid.
for c in bearer dpop; do
  if awk -F'|' '{ for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i) } NF == 4 && $4 ~ /(^| )401:/ { f = 1 } END { exit !f }' "$LOGS/load-$c.out"; then
    fail "$c: some requests got 401 ($(grep -m 3 'result=401' "$LOGS/load-$c.err" || true))"
  fi
done
n=$(grep -c 'authority_unavailable' "$LOGS/gateway.out" "$LOGS/gateway.err" 2>/dev/null | awk -F: '{ t += $NF } END { print t + 0 }')
ok "gateway decision log: $n lines with reason authority_unavailable"

say ""
for c in "${CLASSES[@]}"; do
  say "-- load class $c (stella-load exit ${CLASS_RC[$c]}; failures only in the restart window are expected)"
  sed -n '/^LOAD_/!p' "$LOGS/load-$c.out"
done
exit 0
