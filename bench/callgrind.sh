#!/usr/bin/env bash
# Benchmark (not a test): instructions executed per request by the gateway,
# counted by valgrind's callgrind. Unlike requests/s (bench/run.sh) the count
# hardly moves on a busy machine, so two builds can be compared by running this
# once with each, and ratios between routes are repeatable. Routes:
#   bare    a Pingora proxy with no filters (gateway/examples/bare_proxy.rs,
#           one thread; Pingora's default runtime, work stealing on), sent
#           the pass route's request, as the reference for pass / bare
#   pass    the anonymous pass-through route, no credentials sent
#   bearer  the Bearer route, warm token cache
#   dpop    the DPoP route: a fresh proof per request (pre-generated, each used
#           once), warm token cache
# The gateway runs under callgrind with one worker thread and instrumentation
# off. For each route a sequential client (python3, outside valgrind) opens one
# keep-alive connection, sends the warm-up requests (token cache, upstream
# pool), switches instrumentation on (callgrind_control -i on), sends exactly N
# requests, switches it off and dumps. Each dump holds only that window, so
# Ir/request = dump total / N. Per route it prints Ir/request and the top
# functions by self cost (or inclusive cost, --inclusive), in Ir/request,
# then the ratios pass / bare, bearer / pass and dpop / pass (of the routes
# run). The bare proxy runs in its own valgrind, the same way.
# Counts include whatever the gateway's other threads did in the window
# (timers, the admin listener). Pingora's timer thread does work in proportion
# to wall time, so with one worker a repeat differs by up to about 0.5 %. With
# several workers and work stealing, which thread runs, parks and frees what
# depends on timing, and repeats differ by up to about 1.5 %. A difference
# between builds means something when it is well above that.
# Builds before the runtime snapshot (commit ff0f222) ignore gateway.threads
# and gateway.work_stealing: they run one worker per core with work stealing
# (tokio's multi-thread scheduler). To compare such a build with a newer one,
# run the newer one with --threads $(nproc) --work-stealing as well.
#
# BENCH_TRACES=1: the gateway with OpenTelemetry traces on (every request
# sampled, exported to a local OTLP receiver that discards them; bench/lib.sh);
# the counts then include the export thread's work in the window.
# Needs: valgrind, haproxy, node (tests/authority), python3. cargo only when
# --gateway is not given and target/release/stella-gateway does not exist yet:
# it is then built with `cargo build --release -p stella-gateway --bin
# stella-gateway --example bare_proxy` (the command bench/run.sh uses).
# With the defaults a run takes about a minute and a half on a 2-core machine:
# ~5 s of setup, then 12-16 s per route for bare, pass and bearer, ~25 s for
# dpop. The bare proxy is target/release/examples/bare_proxy (built the same
# way if missing).
#
# Usage: bench/callgrind.sh [--gateway BIN] [--requests N] [--warmup N]
#                           [--threads N] [--work-stealing]
#                           [--top K] [--inclusive] [--keep DIR] [ROUTE...]
#   ROUTE      bare, pass, bearer, dpop (default: bare pass bearer)
#   --requests requests counted per route (default 2000)
#   --warmup   requests sent per route before counting (default 300)
#   --threads  gateway.threads (default 1); --work-stealing sets
#              gateway.work_stealing: true (default false)
#   --top      functions listed per route (default 10; 0 for none)
#   --keep DIR copy the callgrind dumps to DIR (for callgrind_annotate,
#              kcachegrind); one file per route, ROUTE.callgrind
set -euo pipefail
started=$SECONDS
usage() { sed -n '/^# Usage:/,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

GW=""; REQUESTS=2000; WARMUP=300; THREADS=1; STEALING=false; TOP=10; INCLUSIVE=no; KEEP=""; routes=()
while [ $# -gt 0 ]; do
  case $1 in
    --gateway) GW=$(realpath "${2:?}"); shift 2 ;;
    --requests) REQUESTS=${2:?}; shift 2 ;;
    --warmup) WARMUP=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --work-stealing) STEALING=true; shift ;;
    --top) TOP=${2:?}; shift 2 ;;
    --inclusive) INCLUSIVE=yes; shift ;;
    --keep) mkdir -p "${2:?}"; KEEP=$(realpath "$2"); shift 2 ;;
    bare|pass|bearer|dpop) routes+=("$1"); shift ;;
    -h|--help) usage 0 ;;
    *) usage ;;
  esac
done
[ ${#routes[@]} -gt 0 ] || routes=(bare pass bearer)
for n in "$REQUESTS" "$WARMUP" "$THREADS" "$TOP"; do [[ $n =~ ^[0-9]+$ ]] || usage; done
[ "$REQUESTS" -gt 0 ] && [ "$THREADS" -gt 0 ] || usage

cd "$(dirname "$0")/.."
. bench/lib.sh
bench_require valgrind callgrind_control callgrind_annotate haproxy node python3
BARE=$(bench_release_dir)/examples/bare_proxy
build() { cargo build -q --release -p stella-gateway --bin stella-gateway --example bare_proxy; } # as bench/run.sh
if [ -z "$GW" ]; then
  GW=$(bench_release_dir)/stella-gateway
  [ -x "$GW" ] || build
fi
[ -x "$GW" ] || { echo "bench: $GW is not an executable" >&2; exit 2; }
case " ${routes[*]} " in
  *" bare "*)
    [ -x "$BARE" ] || build
    [ -x "$BARE" ] || { echo "bench: $BARE is not an executable" >&2; exit 2; } ;;
esac

bench_init
start_authority
start_upstream
gw=$(free_port); admin=$(free_port)
token=""; dpop_token=""
for route in "${routes[@]}"; do
  case $route in
    bearer) token=$(issue_token svc-bearer) ;;
    dpop) dpop_token=$(issue_token svc-dpop --dpop-key-file "$work/dpop-key.json")
          node bench/make-proofs.mjs "$work/dpop-key.json" GET "http://127.0.0.1:$gw/dpop/x" "$dpop_token" \
            $((WARMUP + REQUESTS)) "$work/proofs.txt" ;;
  esac
done
# One worker thread by default: the requests of a window run in one place,
# in order.
write_gateway_config "$work/conf/gateway.yaml" "" "  threads: $THREADS
  work_stealing: $STEALING"
"$GW" check --config "$work/conf/gateway.yaml" >/dev/null 2>"$work/check.err" \
  || { echo "bench: the gateway rejects the benchmark configuration" >&2; cat "$work/check.err" >&2; exit 1; }

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
  "$GW" run --config "$work/conf/gateway.yaml" >"$work/gateway.out" 2>"$work/gateway.err" &
gw_pid=$!; pids+=("$gw_pid")
# Under valgrind, loading the binary's debug information and starting up
# take tens of seconds.
wait_line "$work/gateway.out" GATEWAY_READY 600 >/dev/null
case " ${routes[*]} " in
  *" bare "*)
    bp=$(free_port)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/bare-cg.out" \
      "$BARE" "127.0.0.1:$bp" "127.0.0.1:$up" 1 >"$work/bare.out" 2>"$work/bare.err" &
    bp_pid=$!; pids+=("$bp_pid")
    # It prints no readiness line: wait until it accepts connections.
    for _ in $(seq 1 3000); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$bp") 2>/dev/null; then break; fi
      bench_child_alive "$bp_pid" || { echo "bench: bare_proxy exited" >&2; tail -20 "$work/bare.err" >&2; exit 1; }
      sleep 0.2
    done ;;
esac

cat >"$work/client.py" <<'PY'
# Sequential keep-alive client: warm-up, then N requests inside a callgrind
# window. argv: port pid route warmup n [token] [proofs-file]
import http.client, subprocess, sys

port, pid, route, warmup, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
path = "/pass/x" if route == "bare" else f"/{route}/x"  # the bare proxy gets the pass route's request
token = sys.argv[6] if len(sys.argv) > 6 else ""
proofs = iter(open(sys.argv[7]).read().split()) if len(sys.argv) > 7 else None

def headers():
    if route == "bearer":
        return {"Authorization": "Bearer " + token}
    if route == "dpop":
        return {"Authorization": "DPoP " + token, "DPoP": next(proofs)}
    return {}

conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
opened = 0

def send(count):
    global opened
    for _ in range(count):
        if conn.sock is None:
            opened += 1
        conn.request("GET", path, headers=headers())
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"bench: {route} answered {response.status}: {body[:200]!r}")

def control(*args):
    done = subprocess.run(["callgrind_control", *args, pid], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or "Error" in done.stdout + done.stderr:
        sys.exit(f"bench: callgrind_control {' '.join(args)} failed: {done.stdout}{done.stderr}")

send(warmup)
control("--zero")
control("--instr=on")
opened = 0
send(n)
control("--instr=off")
control(f"--dump={route}")
if opened > 1:
    sys.exit(f"bench: {route}: the gateway closed the keep-alive connection {opened - 1} times while counting")
PY

# Budget per route: startup of the window plus about 20 ms per request under
# callgrind, ten times over.
budget=$((300 + (WARMUP + REQUESTS) / 5))
results="$work/results.tsv"
: >"$results"
for route in "${routes[@]}"; do
  port=$gw; pid=$gw_pid; out=callgrind.out
  case $route in
    bare) args=(); port=$bp; pid=$bp_pid; out=bare-cg.out ;;
    pass) args=() ;;
    bearer) args=("$token") ;;
    dpop) args=("$dpop_token" "$work/proofs.txt") ;;
  esac
  rm -f "$work/$out".*
  route_started=$SECONDS
  # In the background, so that a signal to this script is handled at once.
  timeout "$budget" python3 "$work/client.py" "$port" "$pid" "$route" "$WARMUP" "$REQUESTS" "${args[@]}" &
  client_pid=$!; pids+=("$client_pid")
  wait "$client_pid" || { echo "bench: $route failed (exit $?)" >&2; tail -20 "$work/gateway.err" >&2; exit 1; }
  dumps=("$work/$out".*)
  dump=${dumps[0]}
  [ ${#dumps[@]} = 1 ] && [ -s "$dump" ] || { echo "bench: expected one callgrind dump for $route, found: ${dumps[*]}" >&2; exit 1; }
  mv "$dump" "$work/$route.callgrind"
  [ -z "$KEEP" ] || cp "$work/$route.callgrind" "$KEEP/"
  callgrind_annotate --inclusive="$INCLUSIVE" --threshold=100 --auto=no "$work/$route.callgrind" >"$work/$route.annotate"
  printf '%s\t%s\t%s\t%s\n' "$route" "$work/$route.callgrind" "$work/$route.annotate" "$((SECONDS - route_started))" >>"$results"
done

python3 - "$results" "$GW" "$REQUESTS" "$WARMUP" "$THREADS" "$STEALING" "$TOP" "$INCLUSIVE" "$((SECONDS - started))" <<'PY'
import hashlib, re, sys
results, gateway, n, warmup, threads, stealing, top, inclusive, elapsed = sys.argv[1:]
n, top = int(n), int(top)
digest = hashlib.sha256(open(gateway, "rb").read()).hexdigest()[:12]
rows = [line.split("\t") for line in open(results).read().splitlines() if line]

def total_ir(dump):
    # A dump's header says "summary: 0"; the real sum is the closing "totals:".
    totals = [line for line in open(dump, errors="replace") if line.startswith("totals:")]
    if not totals:
        sys.exit(f"bench: no totals line in {dump}")
    return int(totals[-1].split()[1])

def functions(annotate, total):
    # Rows after the "file:function" header: "1,234 (12.34%)  file:function [object]".
    # A function inlined from several files has a row per file, and callgrind
    # names recursion levels f'2, f'3: self costs are summed per function.
    costs, started = {}, False
    for line in open(annotate, errors="replace"):
        if re.match(r"^\s*Ir\s+file:function", line):
            started = True
            continue
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)\s*$", line) if started else None
        if m:
            name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))
            name = re.sub(r"^[^:]*:", "", name, count=1)
            ir = int(m.group(1).replace(",", ""))
            if inclusive == "yes":
                costs[name] = max(costs.get(name, 0), ir)
            else:
                name = re.sub(r"'\d+$", "", name)
                costs[name] = costs.get(name, 0) + ir
    return sorted(((ir, 100.0 * ir / max(total, 1), name) for name, ir in costs.items()), reverse=True)

print(f"\nStella Gateway callgrind: {gateway} (sha256 {digest}), "
      f"{n} requests per route after {warmup} warm-up, gateway.threads {threads}, work_stealing {stealing}")
print(f"{'route':<8}{'Ir/request':>12}{'Ir total':>16}{'seconds':>9}")
totals = {}
for route, dump, _, seconds in rows:
    totals[route] = total_ir(dump)
    print(f"{route:<8}{totals[route] / n:>12,.0f}{totals[route]:>16,}{seconds:>9}")
if top:
    kind = "inclusive" if inclusive == "yes" else "self"
    for route, _, annotate, _ in rows:
        print(f"\n{route}: top {top} functions by {kind} cost")
        print(f"{'Ir/req':>10}{'share':>8}  function")
        for ir, share, name in functions(annotate, totals[route])[:top]:
            print(f"{ir / n:>10,.0f}{share:>7.1f}%  {name[:150]}")
ratios = [(a, b) for a, b in (("pass", "bare"), ("bearer", "pass"), ("dpop", "pass")) if a in totals and b in totals]
if ratios:
    print("\nIr ratios (Ir/request of the second over the first: above 1 means the first is cheaper)")
    for a, b in ratios:
        extra = {"pass": "  (as a throughput ratio; target >= 0.90)", "bearer": "  (target >= 0.95)"}.get(a, "")
        print(f"{a + ' / ' + b:<15}{totals[b] / totals[a]:.3f}{extra}   {a} {totals[a] / n:,.0f} Ir/req, {b} {totals[b] / n:,.0f} Ir/req")
print(f"\nelapsed {elapsed} s (seconds: warm-up and counted requests of each route)")
PY
