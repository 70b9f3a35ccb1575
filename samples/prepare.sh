#!/usr/bin/env bash
# Prepares the sample services in Python, Node and Go for the local stack
# (scripts/dev-up.sh) and the end-to-end tests (gateway/tests/e2e_samples.rs):
#   samples/python/.venv                 requirements.txt, pinned, and sdk/python (editable)
#   samples/node/node_modules            npm ci: Express, and sdk/node linked as a file: dependency
#   samples/go/.bin/stella-sample-go     go build, with sdk/go through a replace directive
# Each step is skipped, or is quick, when its output is current, so a second
# run takes about a second. Needs python3, node 20+ and go; no network for Go
# (standard library only), the package registries for the first Python and
# Node installs.
set -euo pipefail
cd "$(dirname "$0")"

# --- Python: reinstalled when requirements.txt or the SDK's pyproject.toml
# changes (copies are kept in the environment, as sdk/python/test.sh does).
venv=python/.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "prepare: creating $venv"
  if ! python3 -m venv "$venv"; then
    # Debian's python3 ships venv without ensurepip until python3-venv is in.
    rm -rf "$venv"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
if ! cmp -s python/requirements.txt "$venv/requirements.installed" \
  || ! cmp -s ../sdk/python/pyproject.toml "$venv/pyproject.installed"; then
  echo "prepare: installing python/requirements.txt and sdk/python into $venv"
  rm -f "$venv/requirements.installed" "$venv/pyproject.installed"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    --no-build-isolation --no-deps -e ../sdk/python
  cp python/requirements.txt "$venv/requirements.installed"
  cp ../sdk/python/pyproject.toml "$venv/pyproject.installed"
fi

# --- Node: npm writes node_modules/.package-lock.json on every install, so
# it dates the tree that is there.
if [[ ! -f node/node_modules/.package-lock.json \
  || node/package-lock.json -nt node/node_modules/.package-lock.json ]]; then
  echo "prepare: npm ci in samples/node"
  (cd node && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Go: the SDK's settings (module proxy off, caches under /tmp); go build
# itself skips what is current.
# shellcheck source=../sdk/go/goenv.sh
. ../sdk/go/goenv.sh >/dev/null
(cd go && go build -o .bin/stella-sample-go .)

echo "prepare: samples ready (python/.venv, node/node_modules, go/.bin/stella-sample-go)"
