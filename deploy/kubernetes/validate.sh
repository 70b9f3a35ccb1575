#!/usr/bin/env bash
# Validates the Kubernetes manifests: renders base/ and every overlays/*/
# and checks them against the Kubernetes schemas, the Prometheus Operator
# schemas, the gateway (`stella-gateway check`, `policy test`) and each
# other (tools/check.py says what exactly). Exit 0 when all is well, 1 on
# any problem, 2 when it cannot run.
#
#   deploy/kubernetes/validate.sh [--gateway BIN] [--test] [DIR]
#
# DIR      a folder with base/ and overlays/ (default: this script's folder)
# BIN      the stella-gateway binary (default: $STELLA_GATEWAY, else the
#          debug build in ${CARGO_TARGET_DIR:-target})
# --test   then run tests/: broken copies of the manifests must be refused,
#          and the gateway's reloads from kubelet-style volumes
#
# Needs python3 (3.9 or later) and openssl; kubectl is optional (when it is
# on PATH, `kubectl kustomize` must render what tools/render.py renders).
# The Python packages go to a venv in .venv/ (git-ignored), installed from
# requirements.txt with their hashes; it is made again when that file
# changes.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the work tree

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
gateway="${STELLA_GATEWAY:-${CARGO_TARGET_DIR:-$repo/target}/debug/stella-gateway}"
run_tests=0
dir="$here"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gateway) gateway="$2"; shift 2 ;;
    --test) run_tests=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "validate.sh: unknown option $1" >&2; exit 2 ;;
    *) dir="$1"; shift ;;
  esac
done
case "$gateway" in /*) ;; *) gateway="$PWD/$gateway" ;; esac
if [[ ! -x "$gateway" ]]; then
  echo "validate.sh: no stella-gateway binary at $gateway" >&2
  echo "  build it (cargo build -p stella-gateway) or pass --gateway BIN" >&2
  exit 2
fi

venv="$here/.venv"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]]; then
  echo "== venv $venv (requirements.txt, hashed)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --no-deps -r "$here/requirements.txt"
  echo "$want" > "$venv/.requirements"
fi

"$venv/bin/python" "$here/tools/check.py" --manifests "$dir" --repo "$repo" --gateway "$gateway"

if [[ $run_tests == 1 ]]; then
  STELLA_GATEWAY="$gateway" "$venv/bin/python" -m unittest discover -s "$here/tests" -t "$here/tests"
fi
