#!/usr/bin/env bash
# Brings up the local stack on loopback and prints how to call it.
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p stella-gateway -p stella-echo-service
bin=target/debug
key="hs256:bG9jYWwtZGV2ZWxvcG1lbnQtb25seS1lbnZlbG9wZS1rZXktMDAx" # config/local.yaml's dev-only key
export Router__IdentityEnvelopeSigningKey="$key"
export Router__IdentityEnvelopeSigningKeyId=local-1

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

ECHO_LISTEN=127.0.0.1:9101 Router__AuthorizationTrustMode=GatewayEnforced \
  Router__IdentityEnvelopeAudience=echo "$bin/stella-echo-service" &
pids+=($!)
sleep 0.5

headers=$("$bin/stella-gateway" envelope mint --kid local-1 --issuer stella-gateway-local \
  --audience echo --path /hello --subject alice --tenant acme --scope echo.read --lifetime 300)

cat <<MSG

Sample service 'echo' (GatewayEnforced) listens on http://127.0.0.1:9101.

Without an envelope it refuses the request (401 envelope_required):
  curl -i http://127.0.0.1:9101/hello

With an envelope signed by the local key (valid for 5 minutes):
  curl -i http://127.0.0.1:9101/hello $(echo $headers)

Press Ctrl-C to stop.
MSG
wait
