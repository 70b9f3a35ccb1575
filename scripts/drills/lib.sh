# shellcheck shell=bash
# Shared by the drills in scripts/drills/: each drill starts its own private
# copy of the local stack (Authority, sample services, gateway) on free
# loopback ports, with its own copies of the gateway config, the policies and
# the services' Router__ config files under tests/.run/drills/<name>/, so it
# can edit them and run beside the dev stack. It puts the stack under
# constant load with stella-load, marks steps on the load generator's stdin,
# and stops every process it started (by pid) on exit.
#
# A drill: `source lib.sh; drill_init NAME "$@"; stack_up; load_start;
# step NAME; ...; drill_finish`. Failed assertions call `fail`.

set -euo pipefail

DRILL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$DRILL_ROOT"

# ---------------------------------------------------------------------------
# Arguments and run directory

drill_usage() {
  cat <<USAGE
usage: $DRILL_SCRIPT [--short] [--rate N] [--step-seconds N]
  --short           CI length: a few seconds per step (default: ${DRILL_FULL_STEP}s per step)
  --rate N          requests per second from the load generator (default 300)
  --step-seconds N  seconds of load per step
Environment: DRILL_NO_BUILD=1 skips the cargo build (run-all.sh builds once);
DRILL_PROFILE=release uses release binaries (cargo build --release --workspace --bins).
Logs and files: tests/.run/drills/$DRILL_NAME/
USAGE
}

DRILL_FULL_STEP=25
DRILL_SHORT_STEP=3

drill_init() { # name args...
  DRILL_NAME=$1
  shift
  DRILL_SCRIPT=$(basename "$0")
  STEP_SECONDS=$DRILL_FULL_STEP
  RATE=300
  DRILL_SHORT=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --short) DRILL_SHORT=1; STEP_SECONDS=$DRILL_SHORT_STEP ;;
      --rate) RATE=$2; shift ;;
      --step-seconds) STEP_SECONDS=$2; shift ;;
      -h|--help) drill_usage; exit 0 ;;
      *) echo "$DRILL_SCRIPT: unknown argument $1" >&2; drill_usage >&2; exit 2 ;;
    esac
    shift
  done
  RUN="$DRILL_ROOT/tests/.run/drills/$DRILL_NAME"
  # Configuration, service settings and logs in separate folders, as in a
  # deployment: the gateway and the services watch the folders of their
  # configuration files, and logs written there would wake them for nothing.
  CONF="$RUN/config"
  SVCDIR="$RUN/services"
  LOGS="$RUN/logs"
  rm -rf "$RUN"
  mkdir -p "$CONF/policies" "$CONF/keys" "$SVCDIR" "$LOGS"
  chmod -R go-rwx "$RUN"
  DRILL_FAILURES=0
  DRILL_STARTED=$SECONDS
  trap drill_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  command -v node >/dev/null || { echo "$DRILL_SCRIPT: node (20+) is required" >&2; exit 2; }
  command -v curl >/dev/null || { echo "$DRILL_SCRIPT: curl is required" >&2; exit 2; }
  [ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund >/dev/null)
  if [ "${DRILL_NO_BUILD:-0}" != 1 ]; then
    # The same build as the test suite's (--all-targets), so after the tests
    # this is a no-op instead of a rebuild with other features.
    cargo build -q --workspace --all-targets
  fi
  local target=${CARGO_TARGET_DIR:-target}
  case "$target" in /*) ;; *) target="$DRILL_ROOT/$target" ;; esac
  # DRILL_PROFILE=release runs release binaries (build them first with
  # `cargo build --release --workspace --bins`): for rates a debug gateway
  # cannot reach.
  BIN="$target/${DRILL_PROFILE:-debug}"
  [ -x "$BIN/stella-gateway" ] || abort "no $BIN/stella-gateway: build it first"
  say "drill $DRILL_NAME: $RATE req/s, ${STEP_SECONDS}s per step, files in ${RUN#"$DRILL_ROOT"/}"
}

say() { printf '%s\n' "$*"; }
ok() { printf '  ok: %s\n' "$*"; }

# Records a failed assertion that the drill can go on after (it exits
# non-zero at the end).
fail() {
  printf '  FAILED: %s\n' "$*" >&2
  DRILL_FAILURES=$((DRILL_FAILURES + 1))
}

# A failure the drill cannot continue after: report and exit (the exit trap
# still ends the load and prints its tables).
abort() {
  fail "$*"
  exit 1
}

# ---------------------------------------------------------------------------
# Processes: every one started here is recorded by pid and stopped on exit.

declare -A PIDS=()

# start_bg NAME CMD... : runs CMD with stdout in $LOGS/NAME.out and stderr in
# $LOGS/NAME.err.
start_bg() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" &
  PIDS[$name]=$!
}

alive() { [ -n "${PIDS[$1]:-}" ] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wait_ready NAME MARKER [SECONDS]: waits for the line "MARKER {json}" on
# NAME's stdout and prints the json. Fails when the process exits first.
wait_ready() {
  local name=$1 marker=$2 limit=${3:-30} line
  local deadline=$((SECONDS + limit))
  while [ $SECONDS -le $deadline ]; do
    line=$(grep -m1 "^$marker " "$LOGS/$name.out" 2>/dev/null || true)
    if [ -n "$line" ]; then
      printf '%s\n' "${line#"$marker "}"
      return 0
    fi
    if ! alive "$name"; then
      echo "$name exited before $marker; last lines of $LOGS/$name.err:" >&2
      tail -n 20 "$LOGS/$name.err" >&2 || true
      return 1
    fi
    sleep 0.05
  done
  echo "$name: no $marker within ${limit}s (see $LOGS/$name.err)" >&2
  return 1
}

# stop NAME [SIGNAL]: signals the process (TERM by default) and waits up to
# 15 s for it to exit, then kills it.
stop() {
  local name=$1 sig=${2:-TERM} pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) did not exit on $sig; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

drill_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "${LOAD_FD:-}" ]; then
    load_end || true
  fi
  local name
  for name in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null || true
  done
  for name in "${!PIDS[@]}"; do
    stop "$name" TERM
  done
  if [ "$status" -eq 0 ] && [ "$DRILL_FAILURES" -gt 0 ]; then
    status=1
  fi
  if [ "$status" -eq 0 ]; then
    say "DRILL $DRILL_NAME: PASSED ($((SECONDS - DRILL_STARTED))s)"
  else
    say "DRILL $DRILL_NAME: FAILED ($((SECONDS - DRILL_STARTED))s; logs in ${RUN#"$DRILL_ROOT"/})"
  fi
  exit "$status"
}

# ---------------------------------------------------------------------------
# Small helpers

# free_ports N: N distinct TCP ports on 127.0.0.1 that were free a moment
# ago (asked of the OS, never fixed).
free_ports() {
  node -e '
    const net = require("net");
    const n = Number(process.argv[1]);
    const servers = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => {
        servers.push(s);
        if (servers.length === n) {
          console.log(servers.map((x) => x.address().port).join(" "));
          servers.forEach((x) => x.close());
        }
      });
    }' "$1"
}

# jget JSON PATH: the member at PATH (a.b.0.c); strings raw, the rest as
# JSON, nothing when absent.
jget() {
  node -e '
    let v;
    try { v = JSON.parse(process.argv[1]); } catch { process.exit(0); }
    for (const k of process.argv[2].split(".").filter(Boolean)) v = v == null ? undefined : v[k];
    if (v === undefined) process.exit(0);
    console.log(typeof v === "string" ? v : JSON.stringify(v));' "$1" "$2"
}

# Cheap extractors for polling loops (no process besides sed), for the
# compact JSON the gateway and the sample service write:
# jfield JSON NAME: the first string or number member NAME.
jfield() {
  printf '%s' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1 || true
}
# jkids JSON NAME: the strings of the array NAME, or the "kid" members of its
# objects, sorted and comma-separated.
jkids() {
  local arr
  arr=$(printf '%s' "$1" | sed -n "s/.*\"$2\":\[\([^]]*\)\].*/\1/p" | head -n 1)
  {
    if [[ $arr == *'"kid":'* ]]; then
      printf '%s' "$arr" | grep -o '"kid":"[^"]*"' | sed 's/"kid":"\(.*\)"/\1/'
    else
      printf '%s' "$arr" | grep -o '"[^"]*"' | tr -d '"'
    fi
  } | sort | paste -sd, - || true
}

# status URL [CURL ARGS...]: the HTTP status of one request (000 on no answer).
status() {
  local url=$1
  shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true
}

# wait_for SECONDS DESCRIPTION CMD...: runs CMD every 50 ms until it
# succeeds; prints how many milliseconds it took; fails after SECONDS.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local start now
  start=$(date +%s%N)
  while true; do
    if "$@" >/dev/null 2>&1; then
      now=$(date +%s%N)
      echo $(((now - start) / 1000000))
      return 0
    fi
    now=$(date +%s%N)
    if [ $(((now - start) / 1000000)) -ge $((limit * 1000)) ]; then
      echo "$what: not seen within ${limit}s" >&2
      return 1
    fi
    sleep 0.05
  done
}

# Writes a file atomically (a temporary file renamed over it), the way
# configuration management does, from stdin.
write_atomic() { # path
  local tmp
  tmp="$(dirname "$1")/.$(basename "$1").tmp.$$"
  cat >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$1"
}

# ---------------------------------------------------------------------------
# Envelope keys

declare -A KEY=()

# new_key KID: generates an HS256 key with `stella-gateway keys generate`;
# its spec (hs256:...) goes to KEY[KID].
new_key() {
  local out
  out=$("$BIN/stella-gateway" keys generate --alg HS256 --kid "$1")
  KEY[$1]=$(printf '%s\n' "$out" | sed -n 's/^Router__IdentityEnvelopeSigningKey=//p')
  [ -n "${KEY[$1]}" ] || abort "keys generate printed no key for $1"
}

# ---------------------------------------------------------------------------
# The stack

TOKEN_TTL=${DRILL_TOKEN_TTL:-3600}

# AUTHORITY_ENV: extra VAR=value settings for the Authority (a drill that
# restarts it passes AUTHORITY_KEYS_FILE, so it keeps its signing keys).
# start_authority [PORT]: port 0 (default) is any free port; a restart
# passes the old one (AUTHORITY_PORT is set from the ready line).
AUTHORITY_ENV=()
start_authority() {
  start_bg authority env AUTHORITY_PORT="${1:-0}" AUTHORITY_AT_TTL="$TOKEN_TTL" \
    ${AUTHORITY_ENV[@]+"${AUTHORITY_ENV[@]}"} node tests/authority/server.mjs
  local ready
  ready=$(wait_ready authority AUTHORITY_READY 60) || abort "the Authority did not start"
  ISSUER=$(jget "$ready" issuer)
  AUTHORITY_PORT=$(jget "$ready" port)
}

# token CLIENT: a Bearer token of CLIENT (secret CLIENT-secret).
token() {
  node tests/authority/token.mjs --issuer "$ISSUER" --client "$1" --secret "$1-secret"
}

# Services: each instance has a Router__ config file, $SVCDIR/<instance>.env,
# that it reads at start (Router__ConfigFile) and again on SIGHUP or when the
# file changes. The same values are also passed in the environment at start.
declare -A SVC_ADDR=() SVC_AUDIENCE=() SVC_MODE=() SVC_KEYS=()

LEGACY_SERVICE_TOKEN=""

# service_env INSTANCE: writes the instance's Router__ file from SVC_MODE,
# SVC_KEYS (kid=spec;kid=spec) and SVC_AUDIENCE.
service_env() {
  write_atomic "$SVCDIR/$1.env" <<ENV
Router__AuthorizationTrustMode=${SVC_MODE[$1]}
Router__IdentityEnvelopeAcceptedKeys=${SVC_KEYS[$1]}
Router__IdentityEnvelopeAudience=${SVC_AUDIENCE[$1]}
${SVC_SKEW:+Router__IdentityEnvelopeClockSkewSeconds=$SVC_SKEW}
ENV
}

# accepted KID...: the Router__IdentityEnvelopeAcceptedKeys value for KIDs.
accepted() {
  local kid list=""
  for kid in "$@"; do list="${list:+$list;}$kid=${KEY[$kid]}"; done
  printf '%s' "$list"
}

# start_service INSTANCE AUDIENCE MODE [PORT]: starts one sample service
# instance (port 0: any free port; a restart passes the old one).
start_service() {
  local instance=$1 audience=$2 mode=$3 port=${4:-0}
  SVC_AUDIENCE[$instance]=$audience
  SVC_MODE[$instance]=$mode
  : "${SVC_KEYS[$instance]:=$(accepted "${DRILL_KIDS[@]}")}"
  service_env "$instance"
  local vars=()
  mapfile -t vars < <(grep -v '^$' "$SVCDIR/$instance.env")
  start_bg "$instance" env "${vars[@]}" \
    Router__ConfigFile="$SVCDIR/$instance.env" \
    ECHO_LISTEN="127.0.0.1:$port" ECHO_NAME="$instance" ECHO_DRAIN_MS=1500 \
    ECHO_SERVICE_TOKEN="${LEGACY_SERVICE_TOKEN:-service-token-$instance}" \
    "$BIN/stella-echo-service"
  local ready
  ready=$(wait_ready "$instance" ECHO_READY 30) || abort "service $instance did not start"
  SVC_ADDR[$instance]=$(jget "$ready" addr)
}

# service_config INSTANCE: GET /__echo/config of the instance.
service_config() {
  curl -s --max-time 2 "http://${SVC_ADDR[$1]}/__echo/config"
}

# Succeeds when the instance reports MODE and exactly the KIDs (in any order).
service_shows() { # instance mode kid...
  local instance=$1 mode=$2 config want
  shift 2
  config=$(service_config "$instance") || return 1
  want=$(printf '%s\n' "$@" | sort | paste -sd, -)
  [ "$(jfield "$config" mode)" = "$mode" ] && [ "$(jkids "$config" accepted_kids)" = "$want" ]
}

# reconfigure_service INSTANCE [hup]: rewrites its Router__ file from SVC_*
# and, with `hup`, also sends SIGHUP; then waits until /__echo/config shows
# the new mode and keys.
reconfigure_service() {
  local instance=$1 how=${2:-file}
  service_env "$instance"
  [ "$how" = hup ] && kill -HUP "${PIDS[$instance]}"
  local kids
  read -r -a kids <<<"$(printf '%s' "${SVC_KEYS[$instance]}" | tr ';' '\n' | sed 's/=.*//' | paste -sd' ' -)"
  local ms
  ms=$(wait_for 10 "$instance reload" service_shows "$instance" "${SVC_MODE[$instance]}" "${kids[@]}") ||
    abort "$instance: /__echo/config shows $(service_config "$instance"), wanted mode ${SVC_MODE[$instance]} kids ${kids[*]}"
  ok "$instance reloaded ($how) in ${ms} ms: $(service_config "$instance")"
}

# The gateway. Its config is generated from these (a drill may change them
# and call gateway_config + a reload):
#   GW_ENVELOPE  the router's envelope key lines (default: one key, k1)
#   GW_SERVICES  the services: block entries, from SERVICES (name=instance,instance:mode)
#   GW_LISTENERS_EXTRA  more lines under listeners: (a tls: listener)
#   GW_AUTHORITY_EXTRA  more lines under auth.authority: (refresh, max-stale, state_dir)
declare -a SERVICES=()
GW_ENVELOPE=""
GW_LISTENERS_EXTRA=""
GW_AUTHORITY_EXTRA=""
GW_ENVELOPE_LIFETIME=60
SVC_SKEW=""

gateway_envelope_single() { # kid: the single-key form every gateway version reads
  GW_ENVELOPE="  identity_envelope_signing_key_id: $1
  identity_envelope_signing_key: \"${KEY[$1]}\""
}

# gateway_envelope_ring ACTIVE KID[:file]...: the keyring form; a kid written
# KID:file has its key in $CONF/keys/KID.key (key_file), the others inline.
gateway_envelope_ring() {
  local active=$1
  shift
  GW_ENVELOPE="  identity_envelope_active_kid: $active
  identity_envelope_keys:"
  local entry kid
  for entry in "$@"; do
    kid=${entry%%:*}
    if [ "$entry" != "$kid" ]; then
      printf '%s\n' "${KEY[$kid]}" | write_atomic "$CONF/keys/$kid.key"
      GW_ENVELOPE="$GW_ENVELOPE
    - {kid: $kid, key_file: keys/$kid.key}"
    else
      GW_ENVELOPE="$GW_ENVELOPE
    - {kid: $kid, key: \"${KEY[$kid]}\"}"
    fi
  done
}

gateway_config() {
  local services="" entry name rest instances mode upstreams inst
  for entry in "${SERVICES[@]}"; do
    name=${entry%%=*}
    rest=${entry#*=}
    instances=${rest%%:*}
    mode=${rest#*:}
    upstreams=""
    for inst in ${instances//,/ }; do upstreams="${upstreams:+$upstreams, }${SVC_ADDR[$inst]}"; done
    # The gateway checks every replica every 300 ms, so a replica that is
    # stopping (its health answers 503 for 1.5 s before it closes) leaves
    # the rotation before its connections close.
    services="$services
  - name: $name
    upstreams: [$upstreams]
    trust_mode: $mode
    health_check: {path: /__echo/health, interval_ms: 300, timeout_ms: 250}"
    [ "$mode" = ServiceEnforced ] && services="$services
    forward_credentials: true"
  done
  write_atomic "$CONF/gateway.yaml" <<YAML
# Generated by scripts/drills/lib.sh for the $DRILL_NAME drill.
gateway:
  id: stella-gateway-drill
  public_origin: http://127.0.0.1:$GW_HTTP_PORT
  listeners:
    http: 127.0.0.1:$GW_HTTP_PORT
    admin: 127.0.0.1:$GW_ADMIN_PORT
${GW_LISTENERS_EXTRA}
  auth:
    authority:
      issuer: $ISSUER
      require_https_metadata: false
      audiences: [http://gateway.local/api]
      algorithms: [ES256, ES384, EdDSA, PS256, RS256]
      leeway_seconds: 30
${GW_AUTHORITY_EXTRA}
  policies_dir: policies

router:
  on_missing_authorization: RequireAuthenticated
$GW_ENVELOPE
  identity_envelope_lifetime_seconds: $GW_ENVELOPE_LIFETIME

services:$services

logging:
  format: text
  level: info
YAML
}

start_gateway() {
  local attempt ready
  for attempt in 1 2 3; do
    read -r GW_HTTP_PORT GW_ADMIN_PORT <<<"$(free_ports 2)"
    gateway_config
    start_bg gateway "$BIN/stella-gateway" run --config "$CONF/gateway.yaml"
    if ready=$(wait_ready gateway GATEWAY_READY 60); then
      GW="http://127.0.0.1:$GW_HTTP_PORT"
      ADMIN="http://127.0.0.1:$GW_ADMIN_PORT"
      say "  gateway $GW (admin $ADMIN): $ready"
      return 0
    fi
    stop gateway KILL
    echo "gateway start attempt $attempt failed (ports $GW_HTTP_PORT $GW_ADMIN_PORT); retrying" >&2
  done
  abort "the gateway did not start"
}

gateway_get() { curl -s --max-time 5 "$ADMIN$1"; }

# gateway_reload: POST /reload on the admin listener; prints the answer and
# fails unless it was applied (or unchanged, when a file watcher got there
# first).
gateway_reload() {
  local answer result
  answer=$(curl -s --max-time 10 -X POST "$ADMIN/reload")
  result=$(jget "$answer" result)
  case "$result" in
    applied|unchanged) ok "POST /reload: $answer" ;;
    *) abort "POST /reload: $answer" ;;
  esac
}

# metric NAME LABELS: the value of one sample from /metrics (0 when absent),
# e.g. metric stella_gateway_config_reloads_total 'result="applied"'.
metric() {
  local text
  text=$(gateway_get /metrics) || true
  printf '%s\n' "$text" | awk -v name="$1" -v labels="$2" '
    found { next }
    labels == "" && $1 == name { print $2; found = 1 }
    labels != "" && index($0, name "{") == 1 && index($0, labels) > 0 { print $NF; found = 1 }
    END { if (!found) print 0 }'
}

# The standard stack: the Authority, three services (one per trust mode;
# DRILL_ECHO_REPLICAS instances of `echo`), the gateway, tokens for polling.
DRILL_KIDS=(k1)
DRILL_ECHO_REPLICAS=1

stack_up() {
  [ -n "${KEY[k1]:-}" ] || new_key k1
  [ -n "$GW_ENVELOPE" ] || gateway_envelope_single k1
  start_authority
  # echo-legacy (ServiceEnforced) checks the forwarded token itself: it
  # accepts exactly this one, which the load generator sends (token-file).
  LEGACY_SERVICE_TOKEN=$(token svc-bearer) || abort "no token from the Authority"
  printf '%s\n' "$LEGACY_SERVICE_TOKEN" >"$RUN/legacy.token"
  BEARER_TOKEN=$(token svc-bearer)
  READONLY_TOKEN=$(token svc-readonly)
  local echo_instances="" i
  if [ "$DRILL_ECHO_REPLICAS" -eq 1 ]; then
    start_service echo echo GatewayEnforced
    echo_instances=echo
  else
    for i in $(seq 1 "$DRILL_ECHO_REPLICAS"); do
      start_service "echo-$i" echo GatewayEnforced
      echo_instances="${echo_instances:+$echo_instances,}echo-$i"
    done
  fi
  start_service echo-hybrid echo-hybrid Hybrid
  start_service echo-legacy echo-legacy ServiceEnforced
  SERVICES=("echo=$echo_instances:GatewayEnforced" "echo-hybrid=echo-hybrid:Hybrid"
    "echo-legacy=echo-legacy:ServiceEnforced")
  cp policies/*.yaml "$CONF/policies/"
  start_gateway
  local s
  s=$(status "$GW/items/1" -H "Authorization: Bearer $BEARER_TOKEN")
  [ "$s" = 200 ] || abort "GET /items/1 through the gateway: $s, wanted 200"
  ok "stack up: Authority $ISSUER, services $(for k in "${!SVC_ADDR[@]}"; do printf '%s=%s ' "$k" "${SVC_ADDR[$k]}"; done)"
}

# ---------------------------------------------------------------------------
# Load

# The default mix: every trust mode, Bearer, DPoP and anonymous, and two
# kinds that must stay refused (401 without a token, 403 without the scope).
# Weights sum to 16.
load_spec_default() {
  cat <<YAML
kinds:
  - {name: public,         method: GET,  url: '$GW/public/hello',  credential: none,                 weight: 2}
  - {name: items-bearer,   method: GET,  url: '$GW/items/1',       credential: 'bearer:svc-bearer',  weight: 3}
  - {name: items-readonly, method: GET,  url: '$GW/items/2',       credential: 'bearer:svc-readonly', weight: 1}
  - {name: dpop,           method: GET,  url: '$GW/dpop/1?x=1',    credential: 'dpop:svc-dpop',      weight: 2}
  - {name: write-dpop,     method: POST, url: '$GW/items/7',       credential: 'dpop:svc-dpop',      weight: 1, body: '{"n":1}'}
  - {name: hybrid-bearer,  method: GET,  url: '$GW/hybrid/1',      credential: 'bearer:svc-bearer',  weight: 2}
  - {name: hybrid-dpop,    method: GET,  url: '$GW/hybrid/2',      credential: 'dpop:svc-dpop',      weight: 1}
  - {name: legacy,         method: GET,  url: '$GW/legacy/1',      credential: 'token-file:$RUN/legacy.token', weight: 2}
  - {name: anon-refused,   method: GET,  url: '$GW/items/3',       credential: none, expect: '401',  weight: 1}
  - {name: admin-refused,  method: GET,  url: '$GW/admin/x',       credential: 'bearer:svc-readonly', expect: '403', weight: 1}
YAML
}

LOAD_FD=""
LOAD_ACKS=0

# load_start [SPEC TEXT]: starts stella-load with the spec (default mix) and
# waits until it is sending.
load_start() {
  local spec=${1:-$(load_spec_default)}
  printf '%s\n' "$spec" >"$LOGS/load.yaml"
  rm -f "$LOGS/load.in"
  mkfifo "$LOGS/load.in"
  # Opened read-write first: opening a FIFO that way does not wait for the
  # other end, so the generator's read-only open below does not block either.
  # Closing this descriptor is the generator's end of input.
  exec {LOAD_FD}<>"$LOGS/load.in"
  # (Not start_bg: a background command's stdin must be redirected on the
  # command itself, or it is /dev/null.)
  "$BIN/stella-load" --rate "$RATE" --issuer "$ISSUER" --spec "$LOGS/load.yaml" \
    --first-step warmup --timeout 5 --duration 3600 \
    <"$LOGS/load.in" >"$LOGS/load.out" 2>"$LOGS/load.err" &
  PIDS[load]=$!
  wait_ready load LOAD_READY 60 >/dev/null || abort "the load generator did not start"
  LOAD_ACKS=0
  say "  load: $RATE req/s, kinds in ${LOGS#"$DRILL_ROOT"/}/load.yaml"
}

# load_cmd LINE: sends a command and waits until the generator acknowledges
# it (it is in effect for every request sent from then on).
load_cmd() {
  [ -n "$LOAD_FD" ] || return 1
  printf '%s\n' "$1" >&"$LOAD_FD"
  LOAD_ACKS=$((LOAD_ACKS + 1))
  local _
  for _ in $(seq 1 200); do
    [ "$(grep -c '^LOAD_ACK ' "$LOGS/load.out" 2>/dev/null || true)" -ge "$LOAD_ACKS" ] && return 0
    alive load || break
    sleep 0.025
  done
  fail "the load generator did not acknowledge: $1"
  return 1
}

# step NAME: starts a step (its row in the tables).
step() {
  say "== step $1"
  load_cmd "step $1"
}

expect() { # kind statuses
  load_cmd "expect $1 $2"
}

# hold [SECONDS]: keeps the load on for the step's length.
hold() {
  sleep "${1:-$STEP_SECONDS}"
  alive load || abort "the load generator exited early"
}

# load_end: ends the load, prints its tables, records its verdict.
load_end() {
  local fd=$LOAD_FD
  [ -n "$fd" ] || return 0
  LOAD_FD=""
  if alive load; then
    printf 'end\n' >&"$fd" || true
  fi
  exec {fd}>&-
  local pid=${PIDS[load]:-} rc=0
  if [ -n "$pid" ]; then
    wait "$pid" || rc=$?
    unset "PIDS[load]"
  fi
  say ""
  sed -n '/^LOAD_/!p' "$LOGS/load.out"
  if [ "$rc" -ne 0 ]; then
    local failures
    failures=$(grep -c '^FAIL ' "$LOGS/load.err" || true)
    fail "load generator exit status $rc ($failures failures logged; first ones below, all in ${LOGS#"$DRILL_ROOT"/}/load.err)"
    grep -m 10 '^FAIL \|^stella-load' "$LOGS/load.err" >&2 || true
  fi
}

# drill_finish: ends the load and exits with the verdict.
drill_finish() {
  load_end
  exit 0
}
