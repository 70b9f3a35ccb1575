#!/usr/bin/env bash
# Brings the compose stack (compose/docker-compose.yml) up for real with
# podman + podman-compose, with the gateway and sample-service images made
# from binaries already built on this machine (compose/docker-compose.ci.yml;
# the Go sample built here, static; the Python and Node samples with the
# packages samples/prepare.sh installs), then: waits for readiness, runs
# `stella-gateway smoke` inside the stack (the echo services' routes and the
# samples'), checks each sample names the caller through the gateway and
# refuses a request around it, and that one service's key makes no
# envelope another accepts,
# switches `echo` to Hybrid by its environment (recreated) and back by its
# runtime reload (not recreated), smoke after each, validates the file with
# `docker-compose config`, and always tears the stack down.
#
#   compose/ci.sh [BINARY_DIR]     (default target/debug; CARGO_TARGET_DIR/debug if set)
#
# Needs root (rootful podman). Installs podman and friends from Debian,
# writes the two settings /etc/containers/containers.conf needs here (when
# absent), and builds the base images with debootstrap once (no registry):
# see runbooks/compose.md.
set -euo pipefail
# Rootful podman: as root (sudo keeps CARGO_TARGET_DIR and the ports).
if [ "$(id -u)" != 0 ]; then exec sudo -E bash "$0" "$@"; fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export DEBIAN_FRONTEND=noninteractive

target=${CARGO_TARGET_DIR:-target}
BIN_DIR=${1:-$target/debug}
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
PROJECT=stella-ci
FILES=(-f compose/docker-compose.yml -f compose/docker-compose.ci.yml)
STAGE="$ROOT/tests/.run/compose"
T0=$SECONDS
phase_start=$SECONDS
declare -a TIMINGS=()
phase() { # name: closes the previous phase, opens this one
  if [ -n "${PHASE:-}" ]; then TIMINGS+=("$(printf '%-34s %4ss' "$PHASE" $((SECONDS - phase_start)))"); fi
  PHASE=$1
  phase_start=$SECONDS
  printf '\n-- compose: %s (%ss)\n' "$1" $((SECONDS - T0))
}
die() { echo "compose/ci.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
phase "packages"
need=()
for p in podman runc containernetworking-plugins golang-github-containernetworking-plugin-dnsname \
  podman-compose debootstrap uidmap slirp4netns docker-compose curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  # With recommends (iptables, catatonit, ...): the set this was tried with.
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# crun (the default runtime) fails here with `setrlimit ... Operation not
# permitted`, and podman's default nofile (1048576) is above this machine's
# hard limit: runc and explicit ulimits.
if ! grep -qs '^runtime *= *"runc"' /etc/containers/containers.conf; then
  if [ -s /etc/containers/containers.conf ]; then
    die "/etc/containers/containers.conf exists without runtime = \"runc\"; add the settings of runbooks/compose.md by hand"
  fi
  mkdir -p /etc/containers
  cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]
[engine]
runtime = "runc"
CONF
  echo "wrote /etc/containers/containers.conf"
fi

# ---------------------------------------------------------------------------
phase "base images (debootstrap, once)"
# No registry here: debian:bookworm-slim (gateway, services, Prometheus) and
# debian:trixie-slim (the Authority: oidc-provider needs Node 20.18+,
# bookworm ships 18) are made with debootstrap from the Debian mirror apt
# already uses.
mirror=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)
[ -n "$mirror" ] || mirror=$(grep -rhs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
  awk '$2 ~ /debian\/?$/ {print $2; exit}' || true)
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/"
base_image() { # suite
  local image=docker.io/library/debian:$1-slim
  if podman image exists "$image"; then echo "$image present"; return; fi
  local rootfs
  rootfs=$(mktemp -d /tmp/stella-rootfs.XXXXXX)
  echo "debootstrap $1 from $mirror"
  debootstrap --variant=minbase "$1" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    { tail -n 20 "$rootfs.log" >&2; rm -rf "$rootfs" "$rootfs.log"; die "debootstrap $1 failed"; }
  # Like the published -slim images: no package lists, no apt cache.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman import -q - "$image" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  echo "$image imported"
}
base_image bookworm &
b1=$!
base_image trixie &
b2=$!
wait "$b1" || die "base image bookworm"
wait "$b2" || die "base image trixie"

# ---------------------------------------------------------------------------
phase "static checks"
for b in stella-gateway stella-echo-service; do
  [ -x "$BIN_DIR/$b" ] || die "no $BIN_DIR/$b: build first (cargo build --workspace --all-targets)"
done
# The stack's gateway config (its envelope key comes from the compose file's
# environment) and the decision tests of its routes.
# (Whole outputs captured, then cut: a pipe into `head` closes early.)
# A key per service: the defaults the compose file gives the gateway.
compose_default() { sed -n "s/.*\${$1:-\([^}]*\)}.*/\1/p" compose/docker-compose.yml | head -n 1; }
key_vars=(STELLA_ECHO_ENVELOPE_KEY STELLA_ECHO_HYBRID_ENVELOPE_KEY STELLA_ECHO_LEGACY_ENVELOPE_KEY
  STELLA_SAMPLE_GO_ENVELOPE_KEY STELLA_SAMPLE_PYTHON_ENVELOPE_KEY STELLA_SAMPLE_NODE_ENVELOPE_KEY)
key_env=()
for v in "${key_vars[@]}"; do
  d=$(compose_default "$v")
  [ -n "$d" ] || die "compose/docker-compose.yml gives no default for $v"
  key_env+=("$v=$d")
done
out=$(env "${key_env[@]}" "$BIN_DIR/stella-gateway" check --config compose/gateway/gateway.yaml) ||
  die "check compose/gateway/gateway.yaml: $out"
# No two services share a key.
kids=$(printf '%s\n' "$out" | sed -n 's/^# service \([^:]*\): identity envelope, key \(.*\)$/\2/p')
[ "$(printf '%s\n' "$kids" | wc -l)" -ge 6 ] || die "fewer than six services with an envelope key: $kids"
[ -z "$(printf '%s\n' "$kids" | sort | uniq -d)" ] || die "services share an envelope key: $(printf '%s\n' "$kids" | sort | uniq -d)"
printf '%s\n' "$out" | grep '^#'
out=$("$BIN_DIR/stella-gateway" policy test compose/policies) || { printf '%s\n' "$out"; die "policy test compose/policies"; }
printf '%s\n' "$out" | tail -n 1
docker-compose -f compose/docker-compose.yml config -q
echo "docker-compose config -q: compose/docker-compose.yml valid"

# ---------------------------------------------------------------------------
phase "images"
rm -rf "${STAGE:?}/bin"
mkdir -p "$STAGE/bin"
cp "$BIN_DIR/stella-gateway" "$BIN_DIR/stella-echo-service" "$STAGE/bin/"
# Debug binaries carry their debug info: drop it, a third of the size to copy.
strip --strip-debug "$STAGE/bin/"* 2>/dev/null || true
# sample-go, static (CGO_ENABLED=0), with sdk/go; Go's build cache makes a
# rebuild a second or two.
# shellcheck source=../sdk/go/goenv.sh
(. sdk/go/goenv.sh >/dev/null && cd samples/go && CGO_ENABLED=0 go build -o "$STAGE/bin/stella-sample-go" .) ||
  die "go build samples/go"
# sample-python and sample-node: what samples/prepare.sh installs (pinned
# Python packages, npm ci), copied beside the SDKs' sources; the images add
# Debian's python3 (bookworm) and nodejs (trixie).
bash samples/prepare.sh >/dev/null || die "samples/prepare.sh"
site=(samples/python/.venv/lib/python3.11/site-packages)
[ -d "${site[0]}" ] || die "samples/python/.venv is not Python 3.11 (Debian bookworm's python3): $(ls samples/python/.venv/lib)"
mkdir -p "$STAGE/bin/sample-python/lib"
cp -a "${site[0]}/." "$STAGE/bin/sample-python/lib/"
# Not needed to run (installers, the editable install's hook to this checkout).
(cd "$STAGE/bin/sample-python/lib" && rm -rf pip pip-* setuptools setuptools-* _distutils_hack ./*.pth __editable__* stella_envelope-*)
find "$STAGE/bin/sample-python/lib" -name __pycache__ -prune -exec rm -rf {} +
cp -a sdk/python/src/stella_envelope "$STAGE/bin/sample-python/lib/"
cp samples/python/app.py "$STAGE/bin/sample-python/"
mkdir -p "$STAGE/bin/sample-node"
cp -a samples/node/server.mjs samples/node/package.json samples/node/node_modules "$STAGE/bin/sample-node/"
rm -rf "$STAGE/bin/sample-node/node_modules/@stellaops/envelope"
mkdir -p "$STAGE/bin/sample-node/node_modules/@stellaops/envelope"
cp -a sdk/node/package.json sdk/node/src "$STAGE/bin/sample-node/node_modules/@stellaops/envelope/"
docker-compose "${FILES[@]}" config -q
echo "docker-compose config -q: with compose/docker-compose.ci.yml valid"
# The ports published on the host: unusual ones, so a dev stack on
# 8080/7100 is no obstacle.
export STELLA_HTTP_PORT=${STELLA_HTTP_PORT:-18080} STELLA_AUTHORITY_PORT=${STELLA_AUTHORITY_PORT:-17100}
export STELLA_PROMETHEUS_PORT=${STELLA_PROMETHEUS_PORT:-19091}
unset ECHO_TRUST_MODE
compose() { podman-compose -p "$PROJECT" "${FILES[@]}" "$@"; }
LOG="$STAGE/compose.log"
: >"$LOG"
# Quiet unless it fails (podman-compose echoes every podman command).
quiet() { "$@" >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "failed: $*"; }; }

teardown() {
  local status=$?
  trap - EXIT
  phase "tear down"
  if [ "$status" -ne 0 ]; then
    echo "-- logs of the stack (failure) --"
    for s in authority redis echo echo-hybrid echo-legacy sample-go sample-python sample-node gateway prometheus; do
      echo "--- $s"
      podman logs --tail 25 "${PROJECT}_${s}_1" 2>&1 || true
    done
  fi
  compose down >>"$LOG" 2>&1 || true
  # podman-compose 1.0.3 leaves the network behind.
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  left=$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" -q | wc -l)
  echo "containers left: $left"
  phase ""
  echo
  echo "compose step timings:"
  printf '  %s\n' "${TIMINGS[@]}"
  printf '  %-34s %4ss\n' total $((SECONDS - T0))
  [ "$status" -eq 0 ] && echo "COMPOSE: PASSED" || echo "COMPOSE: FAILED (log: ${LOG#"$ROOT"/})"
  exit "$status"
}
trap teardown EXIT
# Leftovers of an interrupted run.
compose down >>"$LOG" 2>&1 || true
# The Authority's image: npm ci reaches the npm registry; on a machine whose
# egress goes through a TLS-intercepting proxy the build needs the host's CA
# bundle, which podman-compose cannot mount, hence podman build here.
ca_args=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  ca_args=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg NODE_EXTRA_CA_CERTS=/run/host-ca.crt)
fi
# Built beside the others (a cold build is mostly downloads).
podman build --pull=never "${ca_args[@]}" -t localhost/stella-test-authority:dev \
  -f compose/authority.Dockerfile . >"$STAGE/authority-build.log" 2>&1 &
authority_build=$!
# The others as the compose files say (echo once: three services share it).
# podman-compose 1.0.3 exits 0 when a build fails; it logs "exit code: N".
from=$(($(wc -l <"$LOG") + 1))
build_start=$SECONDS
compose build redis echo sample-go sample-python sample-node gateway prometheus >>"$LOG" 2>&1 || true
echo "podman-compose build: $((SECONDS - build_start))s"
if tail -n +"$from" "$LOG" | grep -q '^exit code: [1-9]'; then
  tail -n 40 "$LOG" >&2
  die "an image build failed (podman-compose build; log: ${LOG#"$ROOT"/})"
fi
if ! wait "$authority_build"; then
  tail -n 40 "$STAGE/authority-build.log" >&2
  die "the Authority's image build failed"
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'stella|debian' | sort

# ---------------------------------------------------------------------------
phase "up and readiness"
quiet compose up -d --no-build
GW="${PROJECT}_gateway_1"
in_gw() { podman exec "$GW" "$@"; }
wait_until() { # seconds description cmd...: polls every 0.5 s
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || die "$what: not ready within ${limit}s"
    sleep 0.5
  done
  echo "ready: $what ($((SECONDS - start))s)"
}
wait_until 60 "Authority discovery (host port $STELLA_AUTHORITY_PORT)" \
  curl -fsS --max-time 2 "http://127.0.0.1:$STELLA_AUTHORITY_PORT/.well-known/openid-configuration"
for s in echo echo-hybrid echo-legacy; do
  wait_until 60 "$s /__echo/health" in_gw curl -fsS --max-time 2 "http://$s:8080/__echo/health"
done
for s in sample-go sample-python sample-node; do
  wait_until 60 "$s /health" in_gw curl -fsS --max-time 2 "http://$s:8080/health"
done
wait_until 60 "gateway /readyz" in_gw curl -fsS --max-time 2 http://127.0.0.1:9090/readyz
issuer=$(curl -fsS "http://127.0.0.1:$STELLA_AUTHORITY_PORT/.well-known/openid-configuration" |
  sed -n 's/.*"issuer":"\([^"]*\)".*/\1/p')
[ "$issuer" = http://authority:7100 ] || die "the Authority's issuer is '$issuer', wanted http://authority:7100"
echo "issuer: $issuer"

smoke() { # label
  echo "smoke ($1):"
  in_gw stella-gateway smoke --config /etc/stella/gateway/gateway.yaml \
    --base-url http://127.0.0.1:8080 --profiles /etc/stella/smoke/profiles.yaml --profile default ||
    die "smoke ($1) failed"
}
# The mode, generation and container of a sample service, from /__echo/config.
# Asked inside the service's own container: right after a recreation the
# compose network's DNS may still answer the old address for a while.
echo_config() { podman exec "${PROJECT}_$1_1" curl -fsS --max-time 2 http://127.0.0.1:8080/__echo/config; }
jfield() { printf '%s' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1; }
shows_mode() { [ "$(jfield "$(echo_config "$1")" mode)" = "$2" ]; }

# ---------------------------------------------------------------------------
phase "smoke"
smoke "stack up"
# Through the published port, as a user on the host: no token is 401.
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$STELLA_HTTP_PORT/items/1")
[ "$status" = 401 ] || die "GET /items/1 without a token on the host port: $status, wanted 401"
token=$(curl -fsS -u svc-bearer:svc-bearer-secret -d grant_type=client_credentials -d scope=echo.read \
  "http://127.0.0.1:$STELLA_AUTHORITY_PORT/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
body=$(curl -fsS "http://127.0.0.1:$STELLA_HTTP_PORT/items/1" -H "Authorization: Bearer $token") ||
  die "GET /items/1 with a token on the host port failed"
[ "$(jfield "$body" mode)" = GatewayEnforced ] || die "GET /items/1: unexpected answer $body"
echo "host: GET /items/1 without a token 401, with a token 200 (answered by echo, GatewayEnforced)"
# sample-go through the gateway names the caller; around it, no envelope: 401.
body=$(curl -fsS "http://127.0.0.1:$STELLA_HTTP_PORT/go/whoami" -H "Authorization: Bearer $token") ||
  die "GET /go/whoami with a token on the host port failed"
printf '%s' "$body" | grep -q '"svc-bearer"' || die "GET /go/whoami: unexpected answer $body"
direct_go=$(podman exec "${PROJECT}_sample-go_1" curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
  -H "Authorization: Bearer $token" http://127.0.0.1:8080/go/whoami)
[ "$direct_go" = 401 ] || die "straight to sample-go with a token but no envelope: $direct_go, wanted 401"
echo "host: GET /go/whoami with a token 200 (sample-go names svc-bearer); straight to sample-go without an envelope 401"
# sample-python (GatewayEnforced) and sample-node (Hybrid, no authentication
# of its own): through the gateway they name the caller; straight to them
# (from the gateway's container, no envelope) 401.
for lang in python node; do
  body=$(curl -fsS "http://127.0.0.1:$STELLA_HTTP_PORT/$lang/whoami" -H "Authorization: Bearer $token") ||
    die "GET /$lang/whoami with a token on the host port failed"
  printf '%s' "$body" | grep -q '"subject":"svc-bearer"' || die "GET /$lang/whoami: unexpected answer $body"
  printf '%s' "$body" | grep -q "\"language\":\"$lang\"" || die "GET /$lang/whoami: not from sample-$lang: $body"
  direct_body=$(in_gw curl -s -w ' %{http_code}' --max-time 3 -H "Authorization: Bearer $token" "http://sample-$lang:8080/$lang/whoami")
  [ "${direct_body##* }" = 401 ] || die "straight to sample-$lang with a token but no envelope: $direct_body, wanted 401"
  echo "host: GET /$lang/whoami with a token 200 (sample-$lang, $(jfield "$body" mode), names svc-bearer); straight to it without an envelope 401 ($(jfield "$direct_body" error))"
done
# A key per service: an envelope made with echo's HS256 key (which echo
# holds) for sample-node's audience and issuer is refused by sample-node
# (401 envelope_invalid, unknown kid); made with sample-node's own key, the
# same request passes.
mint() { # key-var kid: curl -H arguments of an envelope for sample-node's /node/whoami
  # The gateway's container holds every key (key_env): signed there.
  in_gw stella-gateway envelope mint --key-env "$1" --kid "$2" --issuer stella-gateway-compose --audience sample-node --path /node/whoami --subject mallory
}
to_node() { # curl -H arguments...
  local args=()
  while IFS= read -r line; do
    line=${line#-H }
    line=${line#\'}
    args+=(-H "${line%\'}")
  done <<<"$1"
  in_gw curl -s -w ' %{http_code}' --max-time 3 "${args[@]}" http://sample-node:8080/node/whoami
}
forged=$(to_node "$(mint STELLA_ECHO_ENVELOPE_KEY compose-echo)")
[ "${forged##* }" = 401 ] || die "sample-node accepted an envelope made with echo's key: $forged"
own=$(to_node "$(mint STELLA_SAMPLE_NODE_ENVELOPE_KEY compose-sample-node)")
[ "${own##* }" = 200 ] || die "sample-node refused an envelope made with its own key: $own"
echo "sample-node: an envelope made with echo's key 401 ($(jfield "$forged" error)), with its own key 200"

# ---------------------------------------------------------------------------
phase "toggle: echo to Hybrid by env"
# A request straight to echo without an envelope, with the service's own token:
# GatewayEnforced refuses it (401), Hybrid lets its own authentication decide (200).
direct() { podman exec "${PROJECT}_echo_1" curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Authorization: Bearer legacy-service-token' http://127.0.0.1:8080/items/1; }
[ "$(direct)" = 401 ] || die "echo (GatewayEnforced) without an envelope: $(direct), wanted 401"
before=$(podman inspect -f '{{.Id}}' "${PROJECT}_echo_1")
ECHO_TRUST_MODE=Hybrid quiet compose up -d --no-build --force-recreate --no-deps echo
after=$(podman inspect -f '{{.Id}}' "${PROJECT}_echo_1")
[ "$before" != "$after" ] || die "echo was not recreated"
wait_until 60 "echo reports Hybrid" shows_mode echo Hybrid
[ "$(direct)" = 200 ] || die "echo (Hybrid) with its own token, no envelope: $(direct), wanted 200"
echo "echo recreated (${before:0:12} -> ${after:0:12}): $(echo_config echo)"
echo "straight to echo, own token, no envelope: 200"
# The gateway re-resolves `echo` (resolve_interval_seconds: 5) and sends to
# the new container.
through_gw() { [ "$(in_gw curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:8080/public/x)" = 200 ]; }
wait_until 120 "the gateway reaches the new echo container" through_gw
smoke "echo Hybrid by env"

# ---------------------------------------------------------------------------
phase "toggle: echo back by runtime reload"
# The service's Router__ConfigFile overrides its environment and is re-read
# when it changes (and on SIGHUP): no recreation, no restart.
gen_before=$(jfield "$(echo_config echo)" generation)
podman exec "${PROJECT}_echo_1" sh -c 'f=$Router__ConfigFile; printf "Router__AuthorizationTrustMode=GatewayEnforced\n" >"$f.tmp" && mv "$f.tmp" "$f"'
podman kill --signal HUP "${PROJECT}_echo_1" >/dev/null
wait_until 30 "echo reports GatewayEnforced" shows_mode echo GatewayEnforced
now=$(podman inspect -f '{{.Id}}' "${PROJECT}_echo_1")
[ "$now" = "$after" ] || die "echo was recreated by the runtime reload"
[ "$(podman inspect -f '{{.RestartCount}}' "${PROJECT}_echo_1")" = 0 ] || die "echo restarted"
cfg=$(echo_config echo)
[ "$(jfield "$cfg" generation)" -gt "$gen_before" ] || die "echo's generation did not grow: $cfg"
[ "$(direct)" = 401 ] || die "echo (GatewayEnforced again) without an envelope: $(direct), wanted 401"
echo "echo reloaded in place (same container ${now:0:12}): $cfg"
echo "straight to echo, own token, no envelope: 401"
smoke "echo GatewayEnforced by runtime reload"

# ---------------------------------------------------------------------------
phase "prometheus"
# Debian's Prometheus (CI) loads the rules and scrapes the gateway.
prom="http://127.0.0.1:$STELLA_PROMETHEUS_PORT"
wait_until 60 "prometheus /-/ready" curl -fsS --max-time 2 "$prom/-/ready"
rules=$(curl -fsS "$prom/api/v1/rules" | grep -o '"name":"StellaGateway[A-Za-z]*"' | wc -l)
[ "$rules" -gt 0 ] || die "Prometheus loaded no StellaGateway alert rules"
echo "alert rules loaded: $rules"
up_gw() { curl -fsS "$prom/api/v1/query?query=up%7Bjob%3D%22stella-gateway%22%7D" | grep -q '"value":\[[0-9.]*,"1"\]'; }
wait_until 60 "prometheus scrapes gateway:9090 (up == 1)" up_gw

