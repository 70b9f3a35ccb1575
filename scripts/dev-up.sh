#!/usr/bin/env bash
# Brings up the local stack on loopback with config/local.yaml:
#   Authority (tests/authority, node-oidc-provider)  http://127.0.0.1:7100
#   echo         GatewayEnforced sample service      127.0.0.1:9101
#   echo-hybrid  Hybrid                               127.0.0.1:9102
#   echo-legacy  ServiceEnforced                      127.0.0.1:9103
#   gateway      http://127.0.0.1:8080, admin http://127.0.0.1:9090
# then prints working curl commands with a real token. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null || { echo "dev-up: node (20+) is required"; exit 2; }
[ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund)
cargo build -q -p stella-gateway -p stella-echo-service
bin=target/debug
run=tests/.run/dev
mkdir -p "$run"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
wait_line() { # file marker
  for _ in $(seq 1 400); do
    grep -q "^$2 " "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "dev-up: $2 not seen; see $1 and ${1%.out}.err" >&2; exit 1
}

(cd tests/authority && AUTHORITY_PORT=7100 AUTHORITY_AT_TTL=3600 exec node server.mjs >"../../$run/authority.out" 2>"../../$run/authority.err") &
pids+=($!)
wait_line "$run/authority.out" AUTHORITY_READY

# The services accept the gateway's dev-only envelope key (config/local.yaml).
export Router__IdentityEnvelopeSigningKey="hs256:bG9jYWwtZGV2ZWxvcG1lbnQtb25seS1lbnZlbG9wZS1rZXktMDAx"
export Router__IdentityEnvelopeSigningKeyId=local-1
start_echo() { # name port mode
  ECHO_LISTEN=127.0.0.1:$2 ECHO_SERVICE_TOKEN=legacy-service-token Router__AuthorizationTrustMode=$3 \
    Router__IdentityEnvelopeAudience=$1 "$bin/stella-echo-service" >"$run/$1.out" 2>"$run/$1.err" &
  pids+=($!)
  wait_line "$run/$1.out" ECHO_READY
}
start_echo echo 9101 GatewayEnforced
start_echo echo-hybrid 9102 Hybrid
start_echo echo-legacy 9103 ServiceEnforced

"$bin/stella-gateway" run --config config/local.yaml >"$run/gateway.out" 2>"$run/gateway.err" &
pids+=($!)
wait_line "$run/gateway.out" GATEWAY_READY

token=$(node tests/authority/token.mjs --issuer http://127.0.0.1:7100 \
  --client svc-bearer --secret svc-bearer-secret --scope "echo.read echo.write admin")
readonly_token=$(node tests/authority/token.mjs --issuer http://127.0.0.1:7100 \
  --client svc-readonly --secret svc-readonly-secret --scope "echo.read")

cat <<MSG

Stella Gateway local stack is up (logs in $run/).

A token from the Authority (client svc-bearer, tenant acme, valid 1 hour):
  TOKEN='$token'

Call a protected route; the sample service answers with the identity it read from the envelope:
  curl -s http://127.0.0.1:8080/items/1 -H "Authorization: Bearer \$TOKEN"

No token: 401 with a Bearer challenge.
  curl -i http://127.0.0.1:8080/items/1
Anonymous route:
  curl -s http://127.0.0.1:8080/public/hello
A read-only token on an admin route: 403 insufficient_scope.
  curl -i http://127.0.0.1:8080/admin/x -H "Authorization: Bearer $readonly_token"
Get your own token:
  node tests/authority/token.mjs --issuer http://127.0.0.1:7100 --client svc-bearer --secret svc-bearer-secret --scope echo.read
Admin: curl -s http://127.0.0.1:9090/readyz ; curl -s http://127.0.0.1:9090/metrics

Press Ctrl-C to stop.
MSG
wait
