#!/usr/bin/env bash
# Runs every drill, one after another, with the given arguments (--short for
# CI), and prints a summary. Exits non-zero if any drill failed.
#   scripts/drills/run-all.sh [--short] [--rate N] [--step-seconds N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

# The same build as the test suite's (--all-targets): after the tests it
# is a no-op instead of a rebuild with other features.
if [ "${DRILL_NO_BUILD:-0}" != 1 ]; then
  cargo build -q --workspace --all-targets
fi
[ -d tests/authority/node_modules ] || (cd tests/authority && npm ci --no-audit --no-fund >/dev/null)
export DRILL_NO_BUILD=1

results=()
failed=0
for drill in key-rotation trust-flip routes-policies replica-restart slow-clients authority-outage; do
  printf '\n######## %s\n' "$drill"
  start=$SECONDS
  # The outage drill runs four load generators and two probes beside a
  # stopped and restarted Authority and gateway: on a 2-core machine it
  # gets a third of the default rate unless --rate is given.
  defaults=()
  [ "$drill" = authority-outage ] && defaults=(--rate 100)
  if bash "$here/$drill.sh" "${defaults[@]}" "$@"; then
    results+=("$drill|passed|$((SECONDS - start))")
  else
    results+=("$drill|FAILED|$((SECONDS - start))")
    failed=1
  fi
done

printf '\n%-16s | %-6s | %s\n' drill result seconds
printf -- '-----------------|--------|--------\n'
for r in "${results[@]}"; do
  IFS='|' read -r name result secs <<<"$r"
  printf '%-16s | %-6s | %7s\n' "$name" "$result" "$secs"
done
exit "$failed"
