#!/usr/bin/env bash
# Installs the two transaction-token verifiers of this folder, each with a
# generic JWT library and nothing of the gateway's SDK:
#   python/.venv         python/requirements.txt, pinned (PyJWT, cryptography)
#   node/node_modules    npm ci from node/package-lock.json (jose)
# gateway/tests/e2e_txn_token.rs runs both against a token the gateway
# forwarded. Idempotent: each step is skipped when its output is current, so
# a second run takes well under a second. Needs python3 and node 20+, and the
# package registries (PyPI, npm) for the first install only.
set -euo pipefail
cd "$(dirname "$0")"

# --- Python: reinstalled when requirements.txt changes (a copy is kept in
# the environment to compare with).
venv=python/.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "prepare: creating samples/txn-token/$venv"
  python3 -m venv "$venv"
fi
if ! cmp -s python/requirements.txt "$venv/requirements.installed"; then
  echo "prepare: installing python/requirements.txt into samples/txn-token/$venv"
  rm -f "$venv/requirements.installed"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements.txt
  cp python/requirements.txt "$venv/requirements.installed"
fi

# --- Node: npm writes node_modules/.package-lock.json on every install, so
# it dates the tree that is there.
if [[ ! -f node/node_modules/.package-lock.json \
  || node/package-lock.json -nt node/node_modules/.package-lock.json ]]; then
  echo "prepare: npm ci in samples/txn-token/node"
  (cd node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "prepare: transaction-token verifiers ready (python/.venv, node/node_modules)"
