#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine:
# cmake (Pingora's build), redis-server (shared replay store tests, also
# with --tls-port and --sentinel: Debian's package is built with TLS), openssl
# (tests generate certificates), curl (TLS requests in end-to-end tests),
# cargo-fuzz (scripts/fuzz.sh, .ci/fuzz.sh) and the test Authority's npm
# packages. Used by scripts/test.sh and .ci/run;
# does nothing for what is already there. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
