#!/usr/bin/env bash
# Checks the alerting rules and the metrics documentation against the code:
#   - promtool: compose/prometheus/prometheus.yml and alerts.yml are valid,
#     and the alert unit tests (alerts.test.yml) pass;
#   - every metric the gateway registers carries the stella_gateway_ prefix;
#   - every metric name in gateway/src is documented in docs/metrics.md;
#   - every metric documented in docs/metrics.md exists in gateway/src;
#   - every metric alerts.yml uses exists in gateway/src or docs/metrics.md,
#     so an alert on a misspelt name fails here instead of never firing.
# Runs every check, then exits 1 if any failed. promtool comes from
# scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

alerts=compose/prometheus/alerts.yml
tests=compose/prometheus/alerts.test.yml
config=compose/prometheus/prometheus.yml
doc=docs/metrics.md
failed=0
fail() {
  echo "check-metrics: FAIL: $*" >&2
  failed=1
}

if ! command -v promtool >/dev/null; then
  echo "check-metrics: promtool not found; run scripts/install-deps.sh" >&2
  exit 1
fi

promtool check config "$config" >/dev/null || fail "promtool check config $config"
promtool check rules "$alerts" || fail "promtool check rules $alerts"
promtool test rules "$tests" || fail "promtool test rules $tests"

# A metric name; histogram series suffixes map to the histogram's name.
names() { { grep -ohE 'stella_gateway_[a-z0-9_]*[a-z0-9]' "$@" || true; } | sort -u; }
base() { sed -E 's/_(bucket|sum|count)$//'; }

sources=$(find gateway/src -name '*.rs' | sort)
# shellcheck disable=SC2086
in_source=$(names $sources)
in_doc=$(names "$doc" | base | sort -u)
in_alerts=$(names "$alerts" | base | sort -u)

# Names the code registers or renders (prometheus crate constructors, the
# hand-written `# TYPE` lines and telemetry.rs's `counter(` helper): all
# must carry the one prefix.
# shellcheck disable=SC2086
registered=$(perl -0777 -ne '
  while (/(?:\w*Opts::new|\w*(?:Counter|Gauge|Histogram)\w*::new|register_\w+!|counter)\(\s*"([^"]+)"/g) { print "$1\n" }
  while (/# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*)\s/g) { print "$1\n" }
' $sources | sort -u)
for m in $registered; do
  case "$m" in
    stella_gateway_*) ;;
    *) fail "gateway/src registers metric '$m' without the stella_gateway_ prefix" ;;
  esac
done

for m in $in_source; do
  grep -qx "$m" <<<"$in_doc" || fail "metric '$m' appears in gateway/src but is not documented in $doc"
done
for m in $in_doc; do
  grep -qx "$m" <<<"$in_source" || fail "metric '$m' is documented in $doc but does not appear in gateway/src"
done
known=$(printf '%s\n%s\n' "$in_source" "$in_doc")
for m in $in_alerts; do
  grep -qx "$m" <<<"$known" ||
    fail "metric '$m' used in $alerts is neither in gateway/src nor in $doc (misspelt?)"
done

if [ "$failed" != 0 ]; then
  echo "check-metrics: failed (see above)" >&2
  exit 1
fi
echo "check-metrics: ok ($(wc -w <<<"$in_source") metric names in gateway/src, all documented; alerts checked and tested)"
