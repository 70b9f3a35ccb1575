#!/usr/bin/env bash
# Benchmark (not a test): the gateway's real resident memory holding N
# distinct verified tokens in its token cache (target: under 100 MiB with
# 100,000). Run as `bench/run.sh tokens [N]`.
#
# The test Authority runs with AUTHORITY_TEST_MINT=1 and mints N distinct
# access tokens of client svc-bearer for scope echo.read (POST /__test/mint:
# signed with its own ES256 key, the claims of a real client_credentials
# token, a fresh jti each). The gateway (release build, default threads)
# has gateway.auth.token_cache_max_entries = N + N/10 (shards fill unevenly; a cache for exactly N starts evicting a little before N). After one warm request
# with a token from the token endpoint, bench/send-tokens.py sends each
# minted token exactly once on the Bearer route over 16 keep-alive
# connections; every answer must be 200. It prints VmRSS at idle (after the
# warm request) and after the N tokens, VmHWM, the growth per token, the
# gateway's token cache metrics, and PASS/MISS for RSS after load < 100 MiB
# (with a smaller N also the RSS projected to 100,000 tokens). Exit 1 if a
# request is not answered 200 or the cache does not hold the N tokens.
#
# Usage: bench/run.sh tokens [N, default 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${1:-100000}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/run.sh tokens [N]" >&2; exit 2; }
CONNS=16
LIMIT_MIB=100

bench_require node python3 haproxy curl
cargo build -q --release -p stella-gateway --bin stella-gateway --example bare_proxy # as bench/run.sh: the same features, no rebuild
GW=$(bench_release_dir)/stella-gateway

bench_init
export AUTHORITY_TEST_MINT=1
start_authority
token=$(issue_token svc-bearer)
start_upstream
gw=$(free_port); admin=$(free_port)

mint_started=$(date +%s.%N)
code=$(curl -s -X POST -o "$work/tokens.txt" -w '%{http_code}' "$issuer/__test/mint?count=$N&client=svc-bearer&scope=echo.read")
mint_seconds=$(python3 -c "import sys; print(f'{$(date +%s.%N) - $mint_started:.1f}')")
[ "$code" = 200 ] || { echo "bench: the Authority's mint endpoint answered $code: $(head -c 300 "$work/tokens.txt")" >&2; exit 1; }
minted=$(sort -u "$work/tokens.txt" | wc -l)
[ "$minted" = "$N" ] || { echo "bench: expected $N distinct tokens, got $minted" >&2; exit 1; }

auth_lines="    token_cache_max_entries: $((N + N / 10 + 1000))" write_gateway_config "$work/conf/gateway.yaml"
"$GW" run --config "$work/conf/gateway.yaml" >"$work/gateway.out" 2>"$work/gateway.err" &
gw_pid=$!; pids+=("$gw_pid")
wait_line "$work/gateway.out" GATEWAY_READY >/dev/null

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$gw_pid/status"; } # KiB
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$gw/bearer/x")
[ "$code" = 200 ] || { echo "bench: the warm request answered $code, expected 200" >&2; tail -5 "$work/gateway.err" >&2; exit 1; }
sleep 1
idle_kib=$(rss VmRSS)
misses_before=$(metric stella_gateway_token_cache_misses_total)

python3 bench/send-tokens.py "$gw" /bearer/x "$work/tokens.txt" "$CONNS" >"$work/sent.out" &
sender=$!; pids+=("$sender")
sent_rc=0; wait "$sender" || sent_rc=$?
sent=$(sed -n 's/^SENT //p' "$work/sent.out")
after_kib=$(rss VmRSS); hwm_kib=$(rss VmHWM)
sleep 2
settled_kib=$(rss VmRSS)
entries=$(metric stella_gateway_token_cache_entries)
hits=$(metric stella_gateway_token_cache_hits_total)
misses=$(metric stella_gateway_token_cache_misses_total)

python3 - "$N" "$mint_seconds" "$sent" "$sent_rc" "$idle_kib" "$after_kib" "$settled_kib" "$hwm_kib" \
  "$entries" "$hits" "$misses" "$misses_before" "$LIMIT_MIB" "$CONNS" <<'PY'
import json, sys
n, mint_s, sent, sent_rc, idle, after, settled, hwm, entries, hits, misses, misses_before, limit, conns = sys.argv[1:]
n, idle, after, settled, hwm, limit = int(n), int(idle), int(after), int(settled), int(hwm), float(limit)
sent = json.loads(sent) if sent else {}
mib = lambda kib: kib / 1024
print(f"\nStella Gateway: {n} distinct cached tokens (release build, default threads)")
print(f"minting {n} tokens at the Authority (POST /__test/mint): {mint_s} s")
print(f"sending each once on /bearer/x over {conns} connections: {sent.get('seconds', '?')} s, "
      f"{sent.get('requests', 0)} requests, statuses {sent.get('statuses', {})}")
print(f"token cache: entries {entries}, misses +{int(float(misses)) - int(float(misses_before))} "
      f"during the load (hits {hits}, misses {misses} in all)")
per_token = (after - idle) * 1024 / n
print(f"VmRSS idle (after start and one warm request): {mib(idle):.1f} MiB")
print(f"VmRSS after {n} tokens: {mib(after):.1f} MiB (2 s later {mib(settled):.1f} MiB); VmHWM {mib(hwm):.1f} MiB")
print(f"growth per token: {per_token:.0f} bytes ((after - idle) / N)")
verdict = "PASS" if mib(after) < limit else "MISS"
if n == 100_000:
    print(f"RSS after 100,000 tokens: {mib(after):.1f} MiB   (target < {limit:.0f} MiB: {verdict})")
else:
    projected = mib(idle) + per_token * 100_000 / 1024 / 1024
    print(f"RSS after {n} tokens: {mib(after):.1f} MiB (target < {limit:.0f} MiB with 100,000: run with N=100000;"
          f" projected linearly to 100,000: {projected:.1f} MiB)")
problems = []
if sent_rc != "0" or sent.get("ok") != n:
    problems.append(f"not every token was answered 200 ({sent})")
if int(float(entries or 0)) < n:
    problems.append(f"the token cache holds {entries} entries, fewer than the {n} tokens sent")
for p in problems:
    print("bench: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
