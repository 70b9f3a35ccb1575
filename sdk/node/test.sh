#!/usr/bin/env bash
# Runs the Node SDK's tests. Installs the locked dev dependencies (Express
# and Fastify, for the server tests) when node_modules is missing or older
# than package-lock.json, then runs node's test runner, whose summary
# (tests, pass, fail) ends the output.
set -euo pipefail
cd "$(dirname "$0")"

# npm writes node_modules/.package-lock.json on every install: it dates the
# tree that is actually there.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

# test/*.test.mjs, not a bare `node --test`: node 20 would also run the
# helpers in test/support.mjs as a (testless) test file.
exec node --test test/*.test.mjs
