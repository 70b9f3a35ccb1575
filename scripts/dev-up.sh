#!/usr/bin/env bash
# Brings up the local stack on loopback with config/local.yaml:
#   Authority (tests/authority, node-oidc-provider)  http://127.0.0.1:7100
#   echo           GatewayEnforced sample service    127.0.0.1:9101
#   echo-hybrid    Hybrid                            127.0.0.1:9102
#   echo-legacy    ServiceEnforced                   127.0.0.1:9103
#   sample-python  GatewayEnforced, EdDSA key        127.0.0.1:9111  (samples/python, Starlette)
#   sample-node    Hybrid, HS256 key                 127.0.0.1:9112  (samples/node, Express)
#   sample-go      GatewayEnforced, EdDSA key        127.0.0.1:9113  (samples/go, net/http)
#   gateway        http://127.0.0.1:8080, https://127.0.0.1:8443 (client
#                  certificates optional), admin http://127.0.0.1:9090
# then prints working curl commands with a real token. Ctrl-C stops it all.
# The samples need python3, node and go (samples/prepare.sh builds them);
# the local certificates need openssl.
# The Authority also listens on https://127.0.0.1:7143 for certificate-bound
# tokens (RFC 8705 mtls_endpoint_aliases). Certificates come from a local CA
# made at every start (tests/.run/dev/tls/): the gateway's and that
# listener's (127.0.0.1, localhost) and a workload's client certificate
# with the SPIFFE ID spiffe://stella.test/ns/default/sa/orders.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null || { echo "dev-up: node (20+) is required"; exit 2; }
command -v python3 >/dev/null || { echo "dev-up: python3 is required (samples/python)"; exit 2; }
command -v openssl >/dev/null || { echo "dev-up: openssl is required (local certificates)"; exit 2; }
[ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund)
# DEV_UP_NO_BUILD=1: use the binaries already in target/debug (the test
# script builds the whole workspace first; building two packages alone can
# unify dependency features differently and rebuild them).
[ "${DEV_UP_NO_BUILD:-}" = 1 ] || cargo build -q -p stella-gateway -p stella-echo-service
samples/prepare.sh
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

# Local certificates: a CA, a server certificate for the gateway's TLS
# listener and the Authority's mTLS listener, and a client certificate that
# is an X.509-SVID (SPIFFE X509-SVID §4: one URI SAN, not a CA, key usage
# digitalSignature only, extended key usage serverAuth and clientAuth).
tls=$run/tls
rm -rf "$tls"
mkdir -p "$tls"
issue() { # name subject extensions
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
  printf '%b\n' "$3" >"$tls/$1.ext"
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 30 -extfile "$tls/$1.ext" -out "$tls/$1.pem" 2>/dev/null
  chmod 600 "$tls/$1.key"
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=Stella Gateway local development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
issue server "/CN=localhost" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost"
issue orders "/O=stella.test" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:spiffe://stella.test/ns/default/sa/orders"

(cd tests/authority && AUTHORITY_PORT=7100 AUTHORITY_AT_TTL=3600 \
  AUTHORITY_MTLS_PORT=7143 AUTHORITY_MTLS_CERT_FILE="../../$tls/server.pem" AUTHORITY_MTLS_KEY_FILE="../../$tls/server.key" \
  exec node server.mjs >"../../$run/authority.out" 2>"../../$run/authority.err") &
pids+=($!)
wait_line "$run/authority.out" AUTHORITY_READY

# The echo services accept the gateway's dev-only envelope key
# (config/local.yaml).
start_echo() { # name port mode
  ECHO_LISTEN=127.0.0.1:$2 ECHO_SERVICE_TOKEN=legacy-service-token Router__AuthorizationTrustMode=$3 \
    Router__IdentityEnvelopeSigningKey="hs256:bG9jYWwtZGV2ZWxvcG1lbnQtb25seS1lbnZlbG9wZS1rZXktMDAx" \
    Router__IdentityEnvelopeSigningKeyId=local-1 \
    Router__IdentityEnvelopeAudience=$1 "$bin/stella-echo-service" >"$run/$1.out" 2>"$run/$1.err" &
  pids+=($!)
  wait_line "$run/$1.out" ECHO_READY
}
start_echo echo 9101 GatewayEnforced
start_echo echo-hybrid 9102 Hybrid
start_echo echo-legacy 9103 ServiceEnforced

# Each sample accepts only its own key (config/local.yaml, envelope_kid):
# the public half of an EdDSA key, or the HS256 secret.
start_sample() { # name port mode accepted-keys command...
  local name=$1 port=$2 mode=$3 keys=$4
  shift 4
  SAMPLE_LISTEN=127.0.0.1:$port Router__AuthorizationTrustMode=$mode \
    Router__IdentityEnvelopeAcceptedKeys="$keys" Router__IdentityEnvelopeAudience=$name \
    Router__IdentityEnvelopeIssuer=stella-gateway-local "$@" >"$run/$name.out" 2>"$run/$name.err" &
  pids+=($!)
  wait_line "$run/$name.out" SAMPLE_READY
}
start_sample sample-python 9111 GatewayEnforced \
  "local-sample-python=ed25519-public:mnG7twpBMmy8PoZrsnflFahx1nUvqtryXlXrrgfGQtY" \
  samples/python/.venv/bin/python samples/python/app.py
start_sample sample-node 9112 Hybrid \
  "local-sample-node=hs256:bG9jYWwtZGV2ZWxvcG1lbnQtb25seS1zYW1wbGUtbm9kZS1rZXktMDE" \
  node samples/node/server.mjs
start_sample sample-go 9113 GatewayEnforced \
  "local-sample-go=ed25519-public:BhweoQLREVJcJUITqd6RCzdHESF3axy7lDGQqJZCHxg" \
  samples/go/.bin/stella-sample-go

# The gateway's policies: those of policies/ (config/local.yaml's
# policies_dir) and the samples' routes (samples/policies), linked into one
# folder, so an edit of either is served after a reload.
rm -rf "$run/policies"
mkdir -p "$run/policies"
ln -s "$PWD"/policies/*.yaml "$PWD"/samples/policies/*.yaml "$run/policies/"
# The TLS listener is added here (config/local.yaml has none: its files
# exist only once this script made them): client certificates optional,
# verified against the local CA, as SPIFFE roots of stella.test too.
Gateway__Policies_Dir="$PWD/$run/policies" \
  Gateway__Listeners__Tls__Addr=127.0.0.1:8443 \
  Gateway__Listeners__Tls__CertFile="$PWD/$tls/server.pem" \
  Gateway__Listeners__Tls__KeyFile="$PWD/$tls/server.key" \
  Gateway__Listeners__Tls__ClientCertificates=optional \
  Gateway__Listeners__Tls__ClientCaFile="$PWD/$tls/ca.pem" \
  Gateway__Listeners__Tls__SpiffeRoots__0__TrustDomain=stella.test \
  Gateway__Listeners__Tls__SpiffeRoots__0__CaFile="$PWD/$tls/ca.pem" \
  "$bin/stella-gateway" run --config config/local.yaml >"$run/gateway.out" 2>"$run/gateway.err" &
pids+=($!)
wait_line "$run/gateway.out" GATEWAY_READY

token=$(node tests/authority/token.mjs --issuer http://127.0.0.1:7100 \
  --client svc-bearer --secret svc-bearer-secret --scope "echo.read echo.write admin")
readonly_token=$(node tests/authority/token.mjs --issuer http://127.0.0.1:7100 \
  --client svc-readonly --secret svc-readonly-secret --scope "echo.read")

# Credential profiles for `stella-gateway token`, `call` and `smoke`:
# config/smoke/profiles.yaml (DPoP, read-only Bearer, and a workload with
# this script's client certificate).
profiles=config/smoke/profiles.yaml

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

The sample services in Python, Node and Go (samples/README.md), each with its SDK:
  curl -s http://127.0.0.1:8080/python/whoami -H "Authorization: Bearer \$TOKEN"
  curl -s http://127.0.0.1:8080/node/orders/42 -H "Authorization: Bearer \$TOKEN"
  curl -s http://127.0.0.1:8080/go/whoami -H "Authorization: Bearer \$TOKEN"
Placing an order takes a DPoP-bound token (a Bearer token gets 401 invalid_token with a DPoP challenge):
  $bin/stella-gateway call --profiles $profiles POST http://127.0.0.1:8080/go/orders/7
Around the gateway, a GatewayEnforced sample refuses a request without an envelope (401 envelope_required):
  curl -i http://127.0.0.1:9111/python/whoami

Over TLS, with the workload's client certificate and a token bound to it (RFC 8705):
  $bin/stella-gateway call --profiles $profiles --profile workload GET https://127.0.0.1:8443/mtls/1
The same certificate alone on the SPIFFE route (no token; curl --cert does the same):
  $bin/stella-gateway call --profiles $profiles --profile svid GET https://127.0.0.1:8443/svc/1

Smoke-test every route the gateway serves, each once without credentials and once with a
profile (DPoP by default; the certificate routes with the workload and svid profiles, over TLS):
  Gateway__Policies_Dir=$PWD/$run/policies $bin/stella-gateway smoke --config config/local.yaml --profiles $profiles --profile default

Press Ctrl-C to stop.
MSG
wait
