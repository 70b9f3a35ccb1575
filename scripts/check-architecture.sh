#!/usr/bin/env bash
# The layering docs/architecture.md describes, checked: no import cycle
# between the modules of any crate (scripts/check-module-cycles.py), and the
# domain crates' normal dependencies free of what they must not know:
# stella-policy and stella-routing (and stella-core, stella-jose) have no
# runtime (tokio, hyper, pingora); no domain crate depends on pingora, on the
# gateway shell or on the OTLP exporter. Cargo itself forbids cycles between
# crates. Exit 1 on any violation, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
python3 scripts/check-module-cycles.py || status=1

deps() { cargo tree -q -p "$1" -e normal --prefix none | cut -d' ' -f1 | sort -u; }
forbid() {
  local crate=$1; shift
  local found
  found=$(deps "$crate" | grep -xE "$(IFS='|'; echo "$*")" || true)
  if [ -n "$found" ]; then
    echo "$crate depends on $(echo "$found" | tr '\n' ' ')(forbidden: $*)"
    status=1
  else
    echo "$crate: none of $*"
  fi
}
for pure in stella-core stella-jose stella-routing stella-policy; do
  forbid "$pure" tokio hyper pingora stella-gateway opentelemetry_sdk opentelemetry-otlp
done
for domain in stella-authority stella-authn; do
  forbid "$domain" pingora pingora-core pingora-proxy stella-gateway opentelemetry_sdk opentelemetry-otlp serde_yaml
done
exit $status
