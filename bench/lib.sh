# Setup shared by bench/run.sh and bench/callgrind.sh; sourced, not run.
# It owns the scratch directory, the processes a benchmark starts (their pids
# go in `pids`; the EXIT trap stops exactly those, never by name), and the
# common cast: the test Authority, an upstream answering 200 "ok", and a
# gateway configuration for the routes of bench/policies.
# Callers run from the repository root with `set -euo pipefail`.

bench_require() { # tool... -> exit 2 naming the first one missing
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install -y wrk haproxy valgrind nodejs)" >&2; exit 2; }
  done
  [ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund >/dev/null)
}

# Where cargo puts release binaries (CARGO_TARGET_DIR is honoured).
bench_release_dir() { echo "${CARGO_TARGET_DIR:-$PWD/target}/release"; }

bench_init() { # -> $work (removed on exit), pids=()
  work=$(mktemp -d /tmp/stella-bench.XXXXXX)
  pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM HUP
}

# Whether pid $1 is still a live child of this shell (so a recycled pid is
# never signalled).
bench_child_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split into fields on purpose
  set -- $stat
  [ "$1" != Z ] && [ "$2" = "$$" ]
}

# TERM each started process; what is still there after 5 s (a Pingora
# server drains for minutes by default) is killed.
bench_cleanup() {
  local p _ alive
  for p in "${pids[@]}"; do
    if bench_child_alive "$p"; then kill "$p" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do
      if bench_child_alive "$p"; then alive=1; fi
    done
    if [ "$alive" = 0 ]; then break; fi
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if bench_child_alive "$p"; then
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true # reaped here, without the shell's "Killed" notice
    fi
  done
  rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_line() { # file marker [seconds, default 20] -> prints the rest of the line once present
  local line _
  for _ in $(seq 1 $((${3:-20} * 20))); do
    if line=$(grep -m1 "^$2 " "$1" 2>/dev/null); then echo "${line#"$2 "}"; return 0; fi
    sleep 0.05
  done
  echo "bench: timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1
}

start_authority() { # -> $issuer; access tokens live an hour
  (cd tests/authority && AUTHORITY_PORT=0 AUTHORITY_AT_TTL=3600 exec node server.mjs >"$work/authority.out" 2>"$work/authority.err") &
  pids+=("$!")
  issuer=$(wait_line "$work/authority.out" AUTHORITY_READY | python3 -c 'import json,sys; print(json.load(sys.stdin)["issuer"])')
  if [ -n "${BENCH_TRACES:-}" ]; then start_otlp_sink; fi
}

# BENCH_TRACES=1: OpenTelemetry traces on, every request sampled, exported to
# a local OTLP/HTTP receiver that discards the spans (tests/otlp/receiver.py
# --discard, from tests/.venv); start_authority starts it.
start_otlp_sink() { # -> $otlp (host:port)
  tests/.venv/bin/python tests/otlp/receiver.py --discard >"$work/otlp.out" 2>"$work/otlp.err" &
  pids+=("$!")
  otlp=$(wait_line "$work/otlp.out" OTLP_READY | python3 -c 'import json,sys; print(json.load(sys.stdin)["addr"])')
}

issue_token() { # client [token.mjs options...] -> prints an echo.read token for that client
  local client=$1; shift
  node tests/authority/token.mjs --issuer "$issuer" --client "$client" --secret "$client-secret" --scope "echo.read" "$@"
}

start_upstream() { # -> $up (port), $up_pid: HAProxy, one thread, answering 200 "ok"
  up=$(free_port)
  cat >"$work/upstream.cfg" <<CFG
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend upstream
  bind 127.0.0.1:$up
  http-request return status 200 content-type text/plain string "ok"
CFG
  haproxy -q -f "$work/upstream.cfg" & up_pid=$!; pids+=("$up_pid")
}

# Gateway configuration for bench/policies, with $gw and $admin as listener
# ports, $issuer and the upstream $up. Extra YAML (already indented) goes
# under gateway.listeners ($2), under gateway ($3) and under gateway.auth
# ($auth_lines).
# Proofs may be made well before they are used: the proof window is widened
# for the benchmark to $proof_max_age seconds (default 600; the gateway's
# default is 60). Not wider: the replay store's default capacity grows with
# the window (it stops at 100,000,000 entries).
# Logging is what a deployment runs: JSON at info, one decision line per
# request (BENCH_LOG_LEVEL=warn turns decision lines off). The file should be
# in a folder of its own ($work/conf): the gateway watches its configuration
# folder, and the log written beside it would wake the watcher on every line.
write_gateway_config() { # file [listener lines] [gateway lines]
  mkdir -p "$(dirname "$1")"
  local traces=""
  if [ -n "${BENCH_TRACES:-}" ]; then
    traces="traces: {enabled: true, sampler: always_on, endpoint: \"http://$otlp\"}"
  fi
  cat >"$1" <<CFG
gateway:
  id: stella-gateway-bench
  public_origin: "http://127.0.0.1:$gw"
  listeners:
    http: "127.0.0.1:$gw"
    admin: "127.0.0.1:$admin"
${2:-}
  auth:
    authority:
      issuer: "$issuer"
      require_https_metadata: false
      audiences: [http://gateway.local/api]
    dpop:
      proof_max_age_seconds: ${proof_max_age:-600}
${auth_lines:-}
  policies_dir: $PWD/bench/policies
${3:-}
router:
  identity_envelope_signing_key: "hs256:YmVuY2gtb25seS1lbnZlbG9wZS1rZXktMDEyMzQ1Njc4OWFi"
  identity_envelope_signing_key_id: bench-1
services:
  - {name: bench, upstreams: ["127.0.0.1:$up"]}
logging: {format: json, level: ${BENCH_LOG_LEVEL:-info}}
${traces}
CFG
}

# Cold start: starts the gateway binary $1 COUNT times, each with a fresh
# configuration on new ports (written here), and measures the wall time from
# exec to the GATEWAY_READY line on stdout and to the first 200 on the Bearer
# route (token $2). Needs $issuer and $up. Prints a table, the median and the
# maximum, and PASS/MISS against the target (ready in under 1 s).
coldstart() { # gateway-binary token [count, default 5]
  local bin=$1 tok=$2 count=${3:-5} i configs=() ports=() gw admin
  for i in $(seq 1 "$count"); do
    gw=$(free_port); admin=$(free_port)
    write_gateway_config "$work/coldstart-$i/gateway.yaml"
    configs+=("$work/coldstart-$i/gateway.yaml"); ports+=("$gw")
  done
  # In the background, so that a signal to this script is handled at once;
  # the client stops the gateway it started on TERM.
  COLDSTART_TOKEN=$tok python3 bench/coldstart.py "$bin" "$work" "${configs[*]}" "${ports[*]}" &
  local client=$!; pids+=("$client")
  wait "$client" || { echo "bench: cold start measurement failed" >&2; exit 1; }
}
