#!/usr/bin/env bash
# Benchmark (not a test): a soak. Mixed Bearer / DPoP / anonymous load at
# about 70% of the gateway's maximum for MINUTES, with a row per 30 s window:
# req/s, errors, p50, p99 (from the load generator) and the gateway's VmRSS.
# Run as `bench/run.sh soak [MINUTES] [RATE]`.
#
# The mix (stella-load kinds, weights): bearer 2 (GET /bearer/x, a Bearer
# token of svc-bearer from the Authority), dpop 1 (GET /dpop/x, svc-dpop, a
# fresh proof per request), anon 1 (GET /pass/x, the anonymous route). Every
# answer must be 200.
#
# Maximum: unless RATE is given, a closed-loop probe first: wrk -t1 -c32 for
# PROBE seconds (default 5) per kind (DPoP proofs pre-generated, each used
# once); the mix's maximum is then 1 / sum(share_k / R_k) (the time a request
# of each kind costs, weighted by its share), and the load runs at 70% of it.
# The load generator (stella-load, open loop: a request is due every 1/rate s
# whether or not earlier ones answered) runs on the same 2-core machine and
# uses CPU too (more than wrk: it signs a DPoP proof per request), so 70% of
# the wrk maximum is more than 70% of what is left to the gateway.
#
# Verdict: exit 1 if any request failed (stella-load counts a wrong status, a
# timeout (5 s), a transport error or a request it could not send because
# too many were outstanding), or if VmRSS grew by more than 10% between the
# first sample after warm-up (60 s; 30 s for soaks of a minute) and the last.
# 10% leaves room for allocator noise while catching a leak of even a few
# bytes per request (at thousands of requests a second over 10 minutes).
# The generator opens a connection per outstanding request (keep-alive,
# idle ones closed after 20 s). Uncapped, a stall of the gateway (a busy
# machine) makes it open thousands (one 1-minute run here: 11,000
# connections, 1 GiB of gateway RSS, timeouts and 503s), so the RSS would
# measure the generator's backlog; outstanding requests are capped at
# MAX_IN_FLIGHT (default 1000, environment), and a request due beyond the
# cap counts as an error (the gateway did not keep up). The table shows the
# gateway's open files per window.
# The DPoP proof window is the gateway's default (60 s), so the replay store
# reaches its steady size within the warm-up.
#
# Usage: bench/run.sh soak [MINUTES, default 10] [RATE, default: 70% of the probe]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MINUTES=${1:-10}
RATE=${2:-}
PROBE=${PROBE:-5}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1000}
WINDOW=30
GROWTH_LIMIT=10
usage() { echo "usage: bench/run.sh soak [MINUTES] [RATE]" >&2; exit 2; }
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || usage
[ -z "$RATE" ] || [[ $RATE =~ ^[1-9][0-9]*$ ]] || usage

bench_require wrk node python3 haproxy curl
cargo build -q --release -p stella-gateway --bin stella-gateway --example bare_proxy # as bench/run.sh: the same features, no rebuild
GW=$(bench_release_dir)/stella-gateway
LOAD=$(bench_release_dir)/stella-load
# Built on its own only when missing or older than its sources: building it
# unifies dependency features differently, so the gateway would be rebuilt
# (minutes on this machine) by the next bench/run.sh.
if [ ! -x "$LOAD" ] || [ -n "$(find tests/load tests/support Cargo.lock -newer "$LOAD" -type f -print -quit)" ]; then
  cargo build -q --release -p stella-load
fi

bench_init
start_authority
start_upstream
gw=$(free_port); admin=$(free_port)
proof_max_age=60 write_gateway_config "$work/conf/gateway.yaml"
"$GW" run --config "$work/conf/gateway.yaml" >"$work/gateway.out" 2>"$work/gateway.err" &
gw_pid=$!; pids+=("$gw_pid")
wait_line "$work/gateway.out" GATEWAY_READY >/dev/null
base="http://127.0.0.1:$gw"
rss_mib() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$gw_pid/status"; }
fds() { find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; } # open files: mostly connections

declare -A weight=([bearer]=2 [dpop]=1 [anon]=1)
if [ -z "$RATE" ]; then
  token=$(issue_token svc-bearer)
  dpop_token=$(issue_token svc-dpop --dpop-key-file "$work/dpop-key.json")
  node bench/make-proofs.mjs "$work/dpop-key.json" GET "$base/dpop/x" "$dpop_token" $((PROBE * 20000)) "$work/proofs.txt"
  probe() { # kind -> prints "req/s non-2xx"
    local out
    case $1 in
      anon) out=$(wrk -t1 -c32 -d"${PROBE}s" "$base/pass/x") ;;
      bearer) out=$(wrk -t1 -c32 -d"${PROBE}s" -H "Authorization: Bearer $token" "$base/bearer/x") ;;
      dpop) out=$(PROOFS="$work/proofs.txt" TOKEN="$dpop_token" wrk -t1 -c32 -d"${PROBE}s" -s bench/proofs.lua "$base/dpop/x") ;;
    esac
    echo "$out" | awk '/Requests\/sec:/ {r=$2} /Non-2xx/ {e=$NF} END {print r, e+0}'
  }
  declare -A max
  for kind in anon bearer dpop; do
    read -r r errs < <(probe "$kind")
    [ "$errs" = 0 ] || { echo "bench: the $kind probe had $errs non-2xx answers" >&2; exit 1; }
    max[$kind]=$r
  done
  RATE=$(python3 -c '
import sys
w = dict(zip(("anon", "bearer", "dpop"), map(float, sys.argv[1:4])))
r = dict(zip(("anon", "bearer", "dpop"), map(float, sys.argv[4:7])))
total = sum(w.values())
mix = 1 / sum(w[k] / total / r[k] for k in w)
print(round(mix * 0.7))
' "${weight[anon]}" "${weight[bearer]}" "${weight[dpop]}" "${max[anon]}" "${max[bearer]}" "${max[dpop]}")
  mix_max=$(python3 -c "print(round($RATE / 0.7))")
  echo "probe (wrk -t1 -c32, ${PROBE}s each): anon ${max[anon]} req/s, bearer ${max[bearer]} req/s, dpop ${max[dpop]} req/s;" \
    "mix maximum ~$mix_max req/s; soak rate $RATE req/s (70%)"
  rate_note="70% of the probed mix maximum ~$mix_max req/s"
else
  rate_note="given"
fi

echo "gateway before the soak: RSS $(rss_mib) MiB, $(fds) open files"
mkfifo "$work/load.in"
exec {load_fd}<>"$work/load.in"
"$LOAD" --rate "$RATE" --issuer "$issuer" --timeout 5 --max-in-flight "$MAX_IN_FLIGHT" --duration $((MINUTES * 60 + 120)) --first-step w0001 \
  --kind "bearer GET $base/bearer/x bearer:svc-bearer expect=200 weight=${weight[bearer]}" \
  --kind "dpop GET $base/dpop/x dpop:svc-dpop expect=200 weight=${weight[dpop]}" \
  --kind "anon GET $base/pass/x none expect=200 weight=${weight[anon]}" \
  <"$work/load.in" >"$work/load.out" 2>"$work/load.err" &
load_pid=$!; pids+=("$load_pid")
wait_line "$work/load.out" LOAD_READY 60 >/dev/null
load_cpu0=$(awk '{print $14+$15}' "/proc/$load_pid/stat")
gw_cpu0=$(awk '{print $14+$15}' "/proc/$gw_pid/stat")
echo "soak: $MINUTES min at $RATE req/s ($rate_note), kinds bearer:dpop:anon = ${weight[bearer]}:${weight[dpop]}:${weight[anon]}, windows of ${WINDOW}s, at most $MAX_IN_FLIGHT outstanding"
echo "(the load generator runs on this machine too and uses CPU; its share is printed at the end)"

windows=$((MINUTES * 60 / WINDOW))
started=${EPOCHREALTIME/./}
: >"$work/rss.tsv"
for i in $(seq 1 "$windows"); do
  due=$((started + i * WINDOW * 1000000))
  now=${EPOCHREALTIME/./}
  if [ "$due" -gt "$now" ]; then sleep "$(printf '%d.%06d' $(((due - now) / 1000000)) $(((due - now) % 1000000)))"; fi
  bench_child_alive "$load_pid" || { echo "bench: the load generator exited early" >&2; tail -20 "$work/load.err" >&2; exit 1; }
  bench_child_alive "$gw_pid" || { echo "bench: the gateway exited" >&2; tail -20 "$work/gateway.err" >&2; exit 1; }
  rss_now=$(rss_mib); fds_now=$(fds)
  printf 'w%04d\t%s\t%s\n' "$i" "$rss_now" "$fds_now" >>"$work/rss.tsv"
  printf 'window %3d (to %4d s): RSS %s MiB, %s open files\n' "$i" $((i * WINDOW)) "$rss_now" "$fds_now"
  if [ "$i" -lt "$windows" ]; then printf 'step w%04d\n' $((i + 1)) >&"$load_fd"; fi
done
load_cpu1=$(awk '{print $14+$15}' "/proc/$load_pid/stat")
gw_cpu1=$(awk '{print $14+$15}' "/proc/$gw_pid/stat")
printf 'end\n' >&"$load_fd"
load_rc=0; wait "$load_pid" || load_rc=$?
exec {load_fd}>&-

python3 - "$work/load.out" "$work/rss.tsv" "$WINDOW" "$load_rc" "$GROWTH_LIMIT" "$MINUTES" \
  "$((load_cpu1 - load_cpu0))" "$((gw_cpu1 - gw_cpu0))" "$(getconf CLK_TCK)" <<'PY'
import re, statistics, sys
load_out, rss_file, window, load_rc, limit, minutes, load_ticks, gw_ticks, hz = sys.argv[1:]
window, limit, minutes, hz = int(window), float(limit), int(minutes), int(hz)
samples = [line.split("\t") for line in open(rss_file).read().splitlines() if line]
rss = {name: value for name, value, _ in samples}
fds = {name: value for name, _, value in samples}
steps, kinds = {}, []
for line in open(load_out):
    cells = [c.strip() for c in line.split("|")]
    if len(cells) == 6 and re.match(r"^(w\d{4}|total)$", cells[0]):
        steps[cells[0]] = cells[1:]
    elif len(cells) == 4 and cells[0] in ("bearer", "dpop", "anon"):
        kinds.append(cells)
print(f"\n{'window':<8}{'to s':>6}{'req/s':>9}{'errors':>8}{'non-2xx':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}{'fds':>7}")
rows = []
for i, name in enumerate(sorted(rss), 1):
    requests, failed, non2xx, p50, p99 = steps.get(name, ["0", "0", "0", "-", "-"])
    rows.append((name, int(failed), float(p99) if p99 != "-" else None, float(rss[name])))
    print(f"{name:<8}{i * window:>6}{int(requests) / window:>9.0f}{failed:>8}{non2xx:>9}{p50:>9}{p99:>9}{rss[name]:>9}{fds[name]:>7}")
total = steps.get("total")
if total:
    print(f"{'total':<8}{'':>6}{int(total[0]) / (len(rows) * window):>9.0f}{total[1]:>8}{total[2]:>9}{total[3]:>9}{total[4]:>9}")
for name, requests, failed, results in kinds:
    print(f"  {name:<7} {requests:>8} requests, {failed} failed: {results}")
warm = 60 if minutes > 1 else window
after = rows[warm // window - 1:]
first, last = after[0][3], rows[-1][3]
growth = 100.0 * (last - first) / first
p99s = [r[2] for r in after if r[2] is not None]
errors = int(total[1]) if total else -1
print(f"\nerrors: {errors} (target 0)")
print(f"RSS: {first:.1f} MiB at {warm} s (after warm-up), {last:.1f} MiB at the end: growth {growth:+.1f}% (limit {limit:.0f}%);"
      f" after warm-up min {min(r[3] for r in after):.1f}, median {statistics.median(r[3] for r in after):.1f},"
      f" max {max(r[3] for r in after):.1f} MiB")
if p99s:
    print(f"p99 over the windows after warm-up: min {min(p99s):.1f} ms, median {statistics.median(p99s):.1f} ms, max {max(p99s):.1f} ms")
secs = len(rows) * window
print(f"CPU over the soak: gateway {int(gw_ticks) / hz / secs * 100:.0f}% of a core, load generator {int(load_ticks) / hz / secs * 100:.0f}% of a core (2 cores in all)")
problems = []
if errors != 0 or load_rc != "0":
    problems.append(f"{errors} failed requests (stella-load exit {load_rc})")
if growth > limit:
    problems.append(f"RSS grew {growth:.1f}% after warm-up (limit {limit:.0f}%)")
print("verdict: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
