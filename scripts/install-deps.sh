#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine:
# cmake (Pingora's build), redis-server (shared replay store tests, also
# with --tls-port and --sentinel: Debian's package is built with TLS), openssl
# (tests generate certificates), curl (TLS requests in end-to-end tests),
# haproxy (the TLS service in front of the sample service for HTTPS upstream
# tests, gateway/tests/e2e_upstream_tls.rs; the benchmark uses it too),
# valgrind (the instruction-count check of .ci/run),
# promtool (scripts/check-metrics.sh: the alerting rules and their tests),
# the OpenAPI validator, schemathesis and the OTLP messages (tests/.venv, from
# tests/python-requirements.txt),
# cargo-fuzz (scripts/fuzz.sh) and the test Authority's npm
# packages. Used by scripts/test.sh and .ci/run;
# does nothing for what is already there. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl ca-certificates)
# valgrind: the instruction counts CI checks against bench/baseline.json
# (bench/callgrind.sh --check, .ci/run).
command -v valgrind >/dev/null || missing+=(valgrind)
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=""
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool ships only in Debian's `prometheus` package, which would also
# install, enable and start a Prometheus server (on :9090, the admin port of
# config/*.yaml) and its web assets. Only promtool is taken from the package.
if ! command -v promtool >/dev/null; then
  echo "install-deps: installing promtool (from Debian's prometheus package)"
  [ -n "$updated" ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  deb_dir=$(mktemp -d)
  (cd "$deb_dir" && apt-get download -qq prometheus)
  dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$deb_dir/promtool"
  $sudo install -m 0755 "$deb_dir/promtool" /usr/local/bin/promtool
  rm -rf "$deb_dir"
  promtool --version | head -n 1
fi

# Python tools (tests/python-requirements.txt, pinned) in a virtual
# environment of the repository: the OpenAPI validator the openapi tests run.
# Reinstalled when the requirements file changes (a copy is kept in the
# environment).
if ! cmp -s tests/python-requirements.txt tests/.venv/requirements.installed 2>/dev/null; then
  echo "install-deps: installing tests/python-requirements.txt into tests/.venv"
  python3 -m venv tests/.venv
  tests/.venv/bin/pip install -q --disable-pip-version-check -r tests/python-requirements.txt
  cp tests/python-requirements.txt tests/.venv/requirements.installed
fi

if [ ! -d tests/authority/node_modules ]; then
  (cd tests/authority && npm ci --no-audit --no-fund)
fi

# The fuzzing front end (scripts/fuzz.sh). Built from source: about a minute
# on two cores. CARGO_TARGET_DIR is dropped so the build does not land in the
# project's target directory.
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  (unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR && cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION")
fi
