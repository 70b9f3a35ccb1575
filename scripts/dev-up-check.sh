#!/usr/bin/env bash
# The README's first command, checked: brings up the local stack with
# scripts/dev-up.sh, runs the smoke command it prints (every route, each once
# without credentials and once with a profile: DPoP, and the workload's
# client certificate over TLS for the mTLS and SPIFFE routes) and the two
# certificate calls it prints, then stops the stack. Exit 0 only when the
# smoke run passes every row and both calls answer 200.
# Needs the ports dev-up.sh uses (7100, 7143, 8080, 8443, 9090, 9101-9103,
# 9111-9113) free. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
setsid ./scripts/dev-up.sh >"$log" 2>&1 &
leader=$!
stop() { kill -TERM -- "-$leader" 2>/dev/null || true; wait "$leader" 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT
for _ in $(seq 1 1200); do
  grep -q '^Press Ctrl-C to stop' "$log" && break
  kill -0 "$leader" 2>/dev/null || { cat "$log"; echo "dev-up-check: dev-up.sh exited early" >&2; exit 1; }
  sleep 0.1
done
grep -q '^Press Ctrl-C to stop' "$log" || { cat "$log"; echo "dev-up-check: the stack did not come up in 120 s" >&2; exit 1; }

# The commands exactly as dev-up.sh printed them.
printed() { # the line after the one starting with $1
  awk -v head="$1" 'found { print; exit } index($0, head) == 1 { found = 1 }' "$log" | sed 's/^  //'
}
smoke=$(printed "profile (DPoP by default")
mtls=$(printed "Over TLS, with the workload")
svid=$(printed "The same certificate alone")
for c in "$smoke" "$mtls" "$svid"; do
  [ -n "$c" ] || { cat "$log"; echo "dev-up-check: a command is missing from dev-up.sh's output" >&2; exit 1; }
done

echo "dev-up-check: $smoke"
out=$(eval "$smoke") || { echo "$out"; echo "dev-up-check: smoke failed" >&2; exit 1; }
echo "$out" | tail -1
[ "$(echo "$out" | grep -Ec '^(echo-mtls +GET +\S+ +workload|echo-svc +GET +\S+ +svid) +2xx +200 ')" = 2 ] ||
  { echo "$out"; echo "dev-up-check: the certificate routes were not probed with a certificate" >&2; exit 1; }
for c in "$mtls" "$svid"; do
  echo "dev-up-check: $c"
  status=$(eval "$c" | head -1 | tr -d '\r')
  [ "$status" = "HTTP/1.1 200 OK" ] || { echo "dev-up-check: got '$status'" >&2; exit 1; }
done
echo "dev-up-check: PASS"
