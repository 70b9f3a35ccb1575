#!/usr/bin/env bash
# Brings the production compose (compose/production/docker-compose.yml) up
# for real with podman + podman-compose and checks what makes it
# production-shaped: TLS only, secrets as files, the admin listener out of
# the services' reach, redis behind its password, state_dir on a named
# volume, healthchecks; then `stella-gateway smoke` over TLS from another
# container, and always tears it down (volume included).
#
#   compose/production/ci.sh [BINARY_DIR]   (default target/debug; CARGO_TARGET_DIR/debug if set)
#
# STELLA_COMPOSE_KEEP=1 leaves the stack up when a check fails, to look.
#
# Run by .ci/run right after compose/ci.sh, whose setup it reuses: the
# packages, /etc/containers/containers.conf, the debootstrap base images and
# the test Authority's image (compose/ci.sh builds them; run it once first
# on a new machine). Certificates (a throwaway CA), envelope keys and
# passwords are generated here, under tests/.run/compose-production.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then exec sudo -E bash "$0" "$@"; fi
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

target=${CARGO_TARGET_DIR:-target}
BIN_DIR=${1:-$target/debug}
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
PROJECT=stella-prod-ci
FILES=(-f compose/production/docker-compose.yml -f compose/production/docker-compose.ci.yml)
RUN="$ROOT/tests/.run/compose-production"
BIN_STAGE="$ROOT/tests/.run/compose/bin"
T0=$SECONDS
phase_start=$SECONDS
declare -a TIMINGS=()
phase() {
  if [ -n "${PHASE:-}" ]; then TIMINGS+=("$(printf '%-34s %4ss' "$PHASE" $((SECONDS - phase_start)))"); fi
  PHASE=$1
  phase_start=$SECONDS
  printf '\n-- production compose: %s (%ss)\n' "$1" $((SECONDS - T0))
}
die() { echo "compose/production/ci.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
phase "prerequisites"
for c in podman podman-compose docker-compose openssl curl; do
  command -v "$c" >/dev/null || die "no $c: run compose/ci.sh first (it installs the packages)"
done
podman image exists docker.io/library/debian:bookworm-slim ||
  die "no debian:bookworm-slim image: run compose/ci.sh first (it makes the base images)"
podman image exists localhost/stella-test-authority:dev ||
  die "no localhost/stella-test-authority:dev image: run compose/ci.sh first (it builds it)"
[ -x "$BIN_DIR/stella-gateway" ] || die "no $BIN_DIR/stella-gateway: build first (cargo build --workspace --all-targets)"
GW_BIN="$BIN_DIR/stella-gateway"

# ---------------------------------------------------------------------------
phase "material (CA, certificates, keys, secrets)"
rm -rf "$RUN"
mkdir -p "$RUN/tls/authority" "$RUN/secrets"
# Folders 0700 (root only on the host), files 0644: the containers' users
# (stella, redis) read them through the bind mounts.
chmod 0700 "$RUN/tls" "$RUN/secrets"
export STELLA_TLS_DIR="$RUN/tls" STELLA_SECRETS_DIR="$RUN/secrets"
tls=$RUN/tls
quiet_openssl() { openssl "$@" >/dev/null 2>&1 || { openssl "$@"; die "openssl $1 failed"; }; }
quiet_openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=stella production compose CI CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name out-cert out-key subjectAltName
  quiet_openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$3" -out "$tls/$1.csr"
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$4" >"$tls/$1.ext"
  quiet_openssl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/$1.ext" -out "$2"
  rm -f "$tls/$1.csr" "$tls/$1.ext"
}
leaf gateway "$tls/server.crt" "$tls/server.key" "DNS:gateway,DNS:localhost,IP:127.0.0.1"
leaf authority "$tls/authority/authority.crt" "$tls/authority/authority.key" "DNS:authority"
cp "$tls/ca.pem" "$tls/authority-ca.pem"
rm -f "$tls/ca.key" "$tls/ca.srl"
# sample-go's envelope key: the gateway's half and the service's (public).
keys=$("$GW_BIN" keys generate --alg EdDSA --kid sample-go-1)
printf '%s\n' "$keys" | sed -n 's/^Router__IdentityEnvelopeSigningKey=//p' >"$RUN/secrets/envelope-sample-go.key"
printf '%s\n' "$keys" | grep '^Router__IdentityEnvelopeAcceptedKeys=' >"$RUN/secrets/sample-go.env"
[ -s "$RUN/secrets/envelope-sample-go.key" ] && [ -s "$RUN/secrets/sample-go.env" ] || die "keys generate: unexpected output"
openssl rand -hex 32 >"$RUN/secrets/redis-password"
# The test Authority's built-in secret of svc-dpop (public, test only).
printf 'svc-dpop-secret\n' >"$RUN/secrets/smoke-client-secret"
chmod 0644 "$tls"/*.pem "$tls"/server.* "$tls"/authority/* "$RUN"/secrets/*
chmod 0755 "$tls/authority"
echo "CA, gateway and authority certificates; EdDSA key sample-go-1; redis password; smoke client secret"

# ---------------------------------------------------------------------------
phase "static checks"
docker-compose -f compose/production/docker-compose.yml config -q
echo "docker-compose config -q: compose/production/docker-compose.yml valid"
docker-compose "${FILES[@]}" config -q
echo "docker-compose config -q: with docker-compose.ci.yml valid"
out=$("$GW_BIN" policy test compose/production/policies) || { printf '%s\n' "$out"; die "policy test compose/production/policies"; }
printf '%s\n' "$out" | tail -n 1

# ---------------------------------------------------------------------------
phase "images"
# The gateway's binary as compose/ci.sh stages it (skipped when that copy is
# current), and the Go sample, static (CGO_ENABLED=0), with sdk/go.
mkdir -p "$BIN_STAGE"
if [ ! -f "$BIN_STAGE/stella-gateway" ] || [ "$GW_BIN" -nt "$BIN_STAGE/stella-gateway" ]; then
  cp "$GW_BIN" "$BIN_STAGE/stella-gateway"
  strip --strip-debug "$BIN_STAGE/stella-gateway" 2>/dev/null || true
fi
# shellcheck source=../../sdk/go/goenv.sh
(. sdk/go/goenv.sh >/dev/null && cd samples/go && CGO_ENABLED=0 go build -o "$RUN/stella-sample-go" .)
cmp -s "$RUN/stella-sample-go" "$BIN_STAGE/stella-sample-go" || cp "$RUN/stella-sample-go" "$BIN_STAGE/stella-sample-go"
compose() { podman-compose -p "$PROJECT" "${FILES[@]}" "$@"; }
LOG="$RUN/compose.log"
: >"$LOG"
quiet() { "$@" >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "failed: $*"; }; }
from=$(($(wc -l <"$LOG") + 1))
compose build redis sample-go gateway >>"$LOG" 2>&1 || true
if tail -n +"$from" "$LOG" | grep -q '^exit code: [1-9]'; then
  tail -n 40 "$LOG" >&2
  die "an image build failed (log: ${LOG#"$ROOT"/})"
fi
# The test Authority as compose/ci.sh builds it (its layers are cached from
# that run: only server.mjs and friends are copied again when they changed).
ca_args=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  ca_args=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg NODE_EXTRA_CA_CERTS=/run/host-ca.crt)
fi
podman build --pull=never "${ca_args[@]}" -t localhost/stella-test-authority:dev \
  -f compose/authority.Dockerfile . >"$RUN/authority-build.log" 2>&1 ||
  { tail -n 40 "$RUN/authority-build.log" >&2; die "the Authority's image build failed"; }
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'stella-(gateway|sample-go|ci-redis|test-authority)' | sort

teardown() {
  local status=$?
  trap - EXIT
  phase "tear down"
  if [ "$status" -ne 0 ]; then
    echo "-- logs of the stack (failure) --"
    for s in authority redis sample-go gateway; do
      echo "--- $s"
      podman logs --tail 25 "${PROJECT}_${s}_1" 2>&1 || true
    done
  fi
  if [ "$status" -ne 0 ] && [ -n "${STELLA_COMPOSE_KEEP:-}" ]; then
    echo "STELLA_COMPOSE_KEEP: the stack is left up (project $PROJECT, material in ${RUN#"$ROOT"/})"
    exit "$status"
  fi
  compose down >>"$LOG" 2>&1 || true
  podman network rm -f "${PROJECT}_edge" "${PROJECT}_backend" >/dev/null 2>&1 || true
  podman volume rm -f "${PROJECT}_gateway-state" >/dev/null 2>&1 || true
  left=$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" -q | wc -l)
  echo "containers left: $left"
  rm -rf "$RUN/tls" "$RUN/secrets"
  phase ""
  echo
  echo "production compose step timings:"
  printf '  %s\n' "${TIMINGS[@]}"
  printf '  %-34s %4ss\n' total $((SECONDS - T0))
  [ "$status" -eq 0 ] && echo "PRODUCTION COMPOSE: PASSED" || echo "PRODUCTION COMPOSE: FAILED (log: ${LOG#"$ROOT"/})"
  exit "$status"
}
trap teardown EXIT
compose down >>"$LOG" 2>&1 || true
podman volume rm -f "${PROJECT}_gateway-state" >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------
phase "up and readiness"
export STELLA_HTTPS_BIND=127.0.0.1 STELLA_HTTPS_PORT=${STELLA_HTTPS_PORT:-18443}
# Named, so `smoke` (a `run` service) is left out.
quiet compose up -d --no-build authority redis sample-go gateway
c() { printf '%s_%s_1' "$PROJECT" "$1"; }
wait_until() { # seconds description cmd...
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || die "$what: not ready within ${limit}s"
    sleep 0.5
  done
  echo "ready: $what ($((SECONDS - start))s)"
}
# The compose file's own healthchecks, run by podman (no systemd timers here).
healthy() { podman healthcheck run "$(c "$1")"; }
wait_until 60 "redis (its healthcheck: PING with the password)" healthy redis
wait_until 60 "sample-go (its healthcheck: /health)" healthy sample-go
wait_until 60 "the Authority over https (from the gateway's container, its CA file)" \
  podman exec "$(c gateway)" curl -fsS --max-time 2 --cacert /etc/stella/tls/authority-ca.pem \
  https://authority:7443/.well-known/openid-configuration
wait_until 90 "gateway (its healthcheck: /readyz on loopback)" healthy gateway
# Readiness does not wait for redis (a shared store's outage must not take
# every node out); DPoP does. The gateway connects to it at start and says
# so in /readyz?verbose, as an operator would check before sending DPoP.
wait_until 30 "the replay store, from the gateway (/readyz?verbose)" \
  sh -c "podman exec $(c gateway) curl -fsS --max-time 3 'http://127.0.0.1:9090/readyz?verbose' | grep -q '\"replay_store_reachable\":true'"

# ---------------------------------------------------------------------------
phase "production checks"
cfg=$(podman exec "$(c gateway)" stella-gateway check --config /etc/stella/gateway/gateway.yaml) ||
  die "check inside the gateway container: $cfg"
printf '%s\n' "$cfg" | grep '^#' | head -n 3
pw=$(cat "$RUN/secrets/redis-password")
if printf '%s' "$cfg" | grep -qF "$pw"; then die "check printed the redis password"; fi
if podman logs "$(c gateway)" 2>&1 | grep -qF "$pw"; then die "the gateway logged the redis password"; fi
echo "the redis password is in no output of check nor the gateway's log"
# The Authority is trusted through its ca_file, not the process's roots.
printf '%s\n' "$cfg" | grep -q '^ *ca_file: /etc/stella/tls/authority-ca.pem$' || die "check shows no authority ca_file"
if podman inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$(c gateway)" | grep -q '^SSL_CERT_FILE='; then
  die "the gateway's environment sets SSL_CERT_FILE"
fi
echo "the Authority's CA: gateway.auth.authority.ca_file (no SSL_CERT_FILE in the gateway's environment)"
# Secrets are files, not environment values.
if podman inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$(c gateway)" "$(c redis)" "$(c sample-go)" |
  grep -qE "$pw|ed25519-private"; then die "a secret is in a container's environment"; fi
echo "no secret in any container's environment"
# TLS only, from the host: 401 with a Bearer challenge, and no plain http.
hdrs=$(curl -sS --max-time 5 --cacert "$RUN/tls/authority-ca.pem" -o /dev/null -D - \
  "https://localhost:$STELLA_HTTPS_PORT/go/whoami") || die "https from the host failed"
printf '%s' "$hdrs" | head -n 1 | grep -q ' 401' || die "GET /go/whoami without a token: $(printf '%s' "$hdrs" | head -n 1)"
printf '%s' "$hdrs" | grep -qi '^www-authenticate: Bearer' || die "no Bearer challenge: $hdrs"
if curl -s --max-time 3 -o /dev/null "http://localhost:$STELLA_HTTPS_PORT/go/whoami"; then
  [ "$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://localhost:$STELLA_HTTPS_PORT/go/whoami")" = 000 ] ||
    die "plain http answered on the TLS port"
fi
echo "host: https://localhost:$STELLA_HTTPS_PORT/go/whoami without a token 401 (Bearer challenge); plain http refused"
# The admin listener: loopback of the gateway container only.
if podman exec "$(c sample-go)" curl -s --max-time 3 -o /dev/null http://gateway:9090/readyz; then
  die "the admin listener answered sample-go on the backend network"
fi
echo "admin listener: not reachable from sample-go (backend network)"
# The backend network is internal: sample-go reaches redis's network only.
if podman exec "$(c sample-go)" curl -sk --max-time 3 -o /dev/null https://authority:7443/; then
  die "sample-go reached the Authority: the backend network is not internal"
fi
echo "backend network: sample-go cannot reach the edge (Authority)"
# redis refuses commands without its password.
noauth=$(podman exec "$(c redis)" redis-cli ping 2>&1 || true)
printf '%s' "$noauth" | grep -q NOAUTH || die "redis without a password answered: $noauth"
echo "redis without the password: $noauth"
# state_dir on the named volume: the Authority's last-known-good documents.
podman volume exists "${PROJECT}_gateway-state" || die "no named volume ${PROJECT}_gateway-state"
wait_until 30 "last-known-good keys in state_dir (named volume)" \
  sh -c "podman exec $(c gateway) ls /var/lib/stella-gateway/authority | grep -q ."
echo "state_dir: $(podman exec "$(c gateway)" ls /var/lib/stella-gateway/authority | tr '\n' ' ')"
for s in gateway redis sample-go; do
  policy=$(podman inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$(c "$s")")
  [ "$policy" = unless-stopped ] || die "$s: restart policy $policy"
done
mem=$(podman inspect -f '{{.HostConfig.Memory}}' "$(c gateway)")
[ "$mem" -gt 0 ] || die "the gateway has no memory limit"
echo "restart: unless-stopped on all three; gateway memory limit $((mem / 1024 / 1024)) MiB"

# ---------------------------------------------------------------------------
phase "smoke over TLS"
from=$(($(wc -l <"$LOG") + 1))
# podman-compose 1.0.3's `run` exits 0 whatever the command did; it prints
# "exit code: N" last.
compose run --rm smoke </dev/null >>"$LOG" 2>&1 || true
smoke_out=$(tail -n +"$from" "$LOG")
printf '%s\n' "$smoke_out" | grep -E '^(ROUTE|sample-go|PASS|FAIL)' || true
printf '%s\n' "$smoke_out" | tail -n 1 | grep -q '^exit code: 0' || {
  printf '%s\n' "$smoke_out" | tail -n 30 >&2
  echo "-- the gateway's lines about redis and the replay store --" >&2
  podman logs "$(c gateway)" 2>&1 | grep -iE 'replay store|redis|revocation store' | tail -n 20 >&2 || true
  die "smoke over TLS failed"
}
# Straight to sample-go without the gateway: no envelope, 401.
direct=$(podman exec "$(c sample-go)" curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://127.0.0.1:8080/go/whoami)
[ "$direct" = 401 ] || die "sample-go without an envelope: $direct, wanted 401"
echo "straight to sample-go, no envelope: 401"
