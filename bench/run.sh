#!/usr/bin/env bash
# Benchmark (not a test): in one run on this machine, compares requests/s
# and latency of
#   direct   the upstream itself (HAProxy answering 200 "ok")
#   pass     an anonymous pass-through route through the gateway
#   bearer   a Bearer route through the gateway, warm token cache
#   dpop     a DPoP route: a fresh proof per request (pre-generated outside the
#            measured loop, each used once), warm token cache
#   tlspass  the anonymous route over mutual TLS, and
#   mtls     a certificate-bound (RFC 8705) token route over mutual TLS; wrk
#            cannot present client certificates, so both go through a local
#            HAProxy that opens the mTLS connections to the gateway
#   haproxy  HAProxy 2.6 checking the same token with jwt_verify on every request
# and, as references for reading the figures,
#   hapass   HAProxy as a plain proxy (no token check)
#   bare     a Pingora proxy with no filters (gateway/examples/bare_proxy.rs)
# It prints medians over ROUNDS rounds of requests/s, latency, signature
# verifications per request (the gateway's own counter), and the proxy
# process's CPU time per request (steadier than requests/s on a busy
# machine), the target ratios it judges (pass / bare >= 0.90, bearer / pass
# >= 0.95, dpop / haproxy >= 1.00; the budget is docs/design.md §5) in
# both terms, the gateway's resident memory, and the cold start (see the
# coldstart mode).
#
# Other modes (the first argument):
#   coldstart  with the Authority up, starts the gateway 5 times (a fresh
#              configuration and new ports each) and prints the time from
#              exec to GATEWAY_READY and to the first 200 on the Bearer
#              route: median and max (target: ready in under 1 s)
#   tokens     RSS of the gateway holding N distinct cached tokens
#              (bench/tokens.sh)
#   soak       mixed load at ~70% of the maximum for MINUTES (bench/soak.sh)
#
# BENCH_TRACES=1 runs the gateway with OpenTelemetry traces on (every request
# sampled, exported to a local OTLP receiver that discards them; bench/lib.sh),
# to compare with a run without it.
# Needs: wrk, haproxy (Debian packages), node (tests/authority), cargo.
# Release binaries are built in ${CARGO_TARGET_DIR:-target}.
# Usage: bench/run.sh [DURATION_SECONDS] [ROUNDS] [CONNECTIONS]
#        bench/run.sh coldstart [STARTS]
#        bench/run.sh tokens [N]
#        bench/run.sh soak [MINUTES] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  tokens | soak) exec bash "bench/$1.sh" "${@:2}" ;;
  coldstart) MODE=coldstart; STARTS=${2:-5}; shift $(($# > 1 ? 2 : 1)) ;;
  *) MODE=default ;;
esac
. bench/lib.sh
DURATION=${1:-5}
ROUNDS=${2:-3}
CONNS=${3:-32}
for n in "$DURATION" "$ROUNDS" "$CONNS" "${STARTS:-5}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { sed -n '/^# Usage:/,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
done

bench_require wrk haproxy node
cargo build -q --release -p stella-gateway --bin stella-gateway --example bare_proxy
GW=$(bench_release_dir)/stella-gateway
BARE=$(bench_release_dir)/examples/bare_proxy

bench_init
start_authority
token=$(issue_token svc-bearer)
if [ "$MODE" = coldstart ]; then
  start_upstream
  coldstart "$GW" "$token" "$STARTS"
  exit 0
fi
# TLS material: a CA, the gateway's certificate, a client certificate.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
  for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
      -keyout "$who.key" -out "$who.csr" 2>/dev/null
  done
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext # any extension makes it X.509 v3, which webpki requires
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out client.pem 2>/dev/null
  cat client.pem client.key >client-bundle.pem
)
mtls_token=$(issue_token svc-mtls --cert-pem "$work/client.pem")
dpop_token=$(issue_token svc-dpop --dpop-key-file "$work/dpop-key.json")
# The Authority's ES256 key as PEM, for HAProxy's jwt_verify.
node --input-type=module -e '
  const [issuer, out] = process.argv.slice(1);
  const d = await (await fetch(issuer + "/.well-known/openid-configuration")).json();
  const jwks = await (await fetch(d.jwks_uri)).json();
  const { createPublicKey } = await import("node:crypto");
  const jwk = jwks.keys.find(k => k.kty === "EC" && k.crv === "P-256");
  (await import("node:fs")).writeFileSync(out, createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" }));
' "$issuer" "$work/es256.pem"

start_upstream
hp=$(free_port); gw=$(free_port); admin=$(free_port); pp=$(free_port); bp=$(free_port)
gwtls=$(free_port); mc=$(free_port)
cat >"$work/haproxy-jwt.cfg" <<CFG
global
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend jwt
  bind 127.0.0.1:$hp
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str ES256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$work/es256.pem") -m int 1 }
  default_backend upstream
backend upstream
  server u1 127.0.0.1:$up
CFG
cat >"$work/haproxy-pass.cfg" <<CFG
global
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend pass
  bind 127.0.0.1:$pp
  default_backend upstream
backend upstream
  server u1 127.0.0.1:$up
CFG
cat >"$work/mtls-client.cfg" <<CFG
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend mtlsclient
  bind 127.0.0.1:$mc
  default_backend gateway_tls
backend gateway_tls
  server g1 127.0.0.1:$gwtls ssl crt $work/client-bundle.pem ca-file $work/ca.pem verify required sni str(localhost)
CFG
haproxy -q -f "$work/mtls-client.cfg" & pids+=("$!")
haproxy -q -f "$work/haproxy-jwt.cfg" & hp_pid=$!; pids+=("$hp_pid")
haproxy -q -f "$work/haproxy-pass.cfg" & pp_pid=$!; pids+=("$pp_pid")
"$BARE" "127.0.0.1:$bp" "127.0.0.1:$up" 2 >/dev/null 2>&1 & bp_pid=$!; pids+=("$bp_pid")

# Proofs are made before each round, so their iat may be a round old
# (write_gateway_config widens the proof window).
write_gateway_config "$work/conf/gateway.yaml" "    tls:
      addr: \"127.0.0.1:$gwtls\"
      cert_file: \"$work/server.pem\"
      key_file: \"$work/server.key\"
      client_certificates: optional
      client_ca_file: \"$work/ca.pem\"
      http2: false"
$GW run --config "$work/conf/gateway.yaml" >"$work/gateway.out" 2>"$work/gateway.err" &
gw_pid=$!; pids+=("$gw_pid")
wait_line "$work/gateway.out" GATEWAY_READY >/dev/null

declare -A url=(
  [direct]="http://127.0.0.1:$up/pass/x"
  [hapass]="http://127.0.0.1:$pp/pass/x"
  [bare]="http://127.0.0.1:$bp/pass/x"
  [pass]="http://127.0.0.1:$gw/pass/x"
  [bearer]="http://127.0.0.1:$gw/bearer/x"
  [haproxy]="http://127.0.0.1:$hp/bearer/x"
  [dpop]="http://127.0.0.1:$gw/dpop/x"
  [tlspass]="http://127.0.0.1:$mc/pass/x"
  [mtls]="http://127.0.0.1:$mc/mtls/x"
)
declare -A token_of=([bearer]="$token" [haproxy]="$token" [mtls]="$mtls_token")
declare -A pid_of=([direct]=$up_pid [hapass]=$pp_pid [bare]=$bp_pid [pass]=$gw_pid [bearer]=$gw_pid [haproxy]=$hp_pid [dpop]=$gw_pid [tlspass]=$gw_pid [mtls]=$gw_pid)
targets="direct hapass bare pass bearer haproxy dpop tlspass mtls"
make_proofs() { # count -> $work/proofs.txt
  node bench/make-proofs.mjs "$work/dpop-key.json" GET "${url[dpop]}" "$dpop_token" "$1" "$work/proofs.txt"
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
verifications() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^stella_gateway_signature_verifications_total/ {print $2}'; }
hz=$(getconf CLK_TCK)

sleep 0.3
make_proofs 1
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: DPoP $dpop_token" -H "DPoP: $(head -1 "$work/proofs.txt")" "${url[dpop]}")
[ "$code" = 200 ] || { echo "bench: dpop answered $code, expected 200" >&2; cat "$work/gateway.err" >&2; exit 1; }
for name in direct hapass bare pass bearer haproxy tlspass mtls; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${token_of[$name]:-$token}" "${url[$name]}")
  [ "$code" = 200 ] || { echo "bench: $name answered $code, expected 200" >&2; cat "$work/gateway.err" >&2; exit 1; }
done

results="$work/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for name in $targets; do
    v_before=$(verifications)
    if [ "$name" = dpop ]; then
      make_proofs $((DURATION * 25000))
      before=$(ticks "${pid_of[$name]}")
      out=$(PROOFS="$work/proofs.txt" TOKEN="$dpop_token" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/proofs.lua "${url[$name]}")
    else
      before=$(ticks "${pid_of[$name]}")
      out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer ${token_of[$name]:-$token}" "${url[$name]}")
    fi
    after=$(ticks "${pid_of[$name]}")
    v_after=$(verifications)
    echo "$out" | python3 -c '
import re, sys
name, rnd, cpu_ticks, hz, verifies = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
text = sys.stdin.read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
total = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = cpu_ticks * 1e6 / hz / max(total, 1)
print(f"{name}\t{rnd}\t{rps}\t{p50}\t{p99}\t{errors.group(1) if errors else 0}\t{cpu_us}\t{verifies / max(total, 1)}")
' "$name" "$round" "$((after - before))" "$hz" "$((v_after - v_before))" >>"$results"
  done
done
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")
verify_per_s=$(openssl speed -seconds 1 ecdsap256 2>/dev/null | awk '/nistp256/ {print $NF}')

python3 - "$results" "$rss_kib" "$verify_per_s" "$DURATION" "$ROUNDS" "$CONNS" <<'PY'
import statistics, sys
path, rss, verify, duration, rounds, conns = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().split("\n") if l]
by = {}
for name, rnd, rps, p50, p99, errs, cpu, verifies in rows:
    by.setdefault(name, []).append((float(rps), float(p50), float(p99), int(errs), float(cpu), float(verifies)))
med = {n: tuple(statistics.median(r[i] for r in v) for i in range(6)) for n, v in by.items()}
labels = {"tlspass": "anonymous route over mTLS (via HAProxy client hop)", "mtls": "certificate-bound token over mTLS (same hop)", "dpop": "gateway DPoP, one proof verification per request", "direct": "upstream directly", "hapass": "HAProxy plain proxy (reference)",
          "bare": "Pingora, no filters (reference)", "pass": "gateway anonymous pass-through",
          "bearer": "gateway Bearer, warm cache", "haproxy": "HAProxy jwt_verify every request"}
print(f"\nStella Gateway benchmark: {rounds} rounds x {duration}s, wrk -t1 -c{conns}, medians")
print(f"{'target':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu us/req':>12}{'sig/req':>9}{'non-2xx':>9}  rounds req/s        what")
for n in ["direct", "hapass", "bare", "pass", "bearer", "dpop", "haproxy", "tlspass", "mtls"]:
    rps, p50, p99, errs, cpu, sig = med[n]
    each = " ".join(f"{r[0]:.0f}" for r in by[n])
    sig_text = f"{sig:.3f}" if n in ("pass", "bearer", "dpop", "tlspass", "mtls") else "-"
    print(f"{n:<9}{rps:>9.0f}{p50:>9.3f}{p99:>9.3f}{cpu:>12.1f}{sig_text:>9}{int(errs):>9}  {each:<20}{labels[n]}")
r = lambda a, b: med[a][0] / med[b][0]
c = lambda a, b: med[b][4] / med[a][4]  # CPU per request, inverted: above 1 is better, like req/s
def target(a, b, goal, what):
    rr, cc = r(a, b), c(a, b)
    verdict = lambda x: "PASS" if x >= goal else "MISS"
    print(f"{a + ' / ' + b:<17}req/s {rr:.3f} {verdict(rr)}  cpu {cc:.3f} {verdict(cc)}   (target >= {goal:.2f}; {what})")
print("\ntargets (cpu: CPU time per request of the second over the first, so above 1 is better too)")
target("pass", "bare", 0.90, "the gateway's cost over Pingora itself")
target("bearer", "pass", 0.95, "warm token cache")
target("dpop", "haproxy", 1.00, "DPoP against HAProxy jwt_verify on every request")
print("\nreferences")
print(f"bearer / haproxy req/s {r('bearer','haproxy'):.3f}  cpu {c('bearer','haproxy'):.3f}")
print(f"bare / hapass    req/s {r('bare','hapass'):.3f}  cpu {c('bare','hapass'):.3f}   (Pingora against HAProxy as plain proxies)")
if verify:
    t_verify = 1.0 / float(verify)
    bound = 1.0 / (1.0 / med["pass"][0] + t_verify)
    print(f"dpop / bound     req/s {med['dpop'][0] / bound:.3f}   (target >= 0.9; bound = 1/(1/R_pass + t_verify) = {bound:.0f} req/s,"
          f" t_verify = {t_verify * 1e6:.1f} us from openssl speed ecdsap256, {verify} verify/s)")
    print(f"dpop cpu over pass: {med['dpop'][4] - med['pass'][4]:.1f} us/request (one ES256 verification costs {t_verify * 1e6:.1f} us)")
print(f"mtls / tlspass   req/s {r('mtls','tlspass'):.3f}  cpu {c('mtls','tlspass'):.3f}   (certificate-bound token against the same mTLS path)")
print(f"gateway RSS after load: {int(rss)/1024:.1f} MiB")
PY
coldstart "$GW" "$token" 5
