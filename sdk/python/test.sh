#!/usr/bin/env bash
# Runs the Python SDK's tests: builds sdk/python/.venv when missing, installs
# the pinned requirements-dev.txt (again whenever it or pyproject.toml
# changes: copies are kept in the environment), installs the package
# editable, then runs pytest. Extra arguments go to pytest. The last line is
# pytest's summary.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

if [ ! -x .venv/bin/python ]; then
  echo "test.sh: creating .venv"
  if ! python3 -m venv .venv; then
    # Debian's python3 ships venv without ensurepip until python3-venv is in.
    rm -rf .venv
    echo "test.sh: python3 -m venv failed; installing python3-venv"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
fi

if ! cmp -s requirements-dev.txt .venv/requirements.installed \
  || ! cmp -s pyproject.toml .venv/pyproject.installed; then
  echo "test.sh: installing requirements-dev.txt and the package into .venv"
  rm -f .venv/requirements.installed .venv/pyproject.installed
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    --no-build-isolation --no-deps -e .
  cp requirements-dev.txt .venv/requirements.installed
  cp pyproject.toml .venv/pyproject.installed
fi

exec .venv/bin/python -m pytest "$@"
