#!/usr/bin/env python3
"""Writes base/gateway-prometheusrule.yaml from compose/prometheus/alerts.yml.

The alert rules live in one place, compose/prometheus/alerts.yml, where
scripts/check-metrics.sh checks them with promtool and their unit tests. The
PrometheusRule carries the same `groups`, comments included; validate.sh
refuses a PrometheusRule whose groups differ from that file. Run this after
changing the rules:

    python3 deploy/kubernetes/tools/sync_prometheusrule.py

Standard library only.
"""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
SOURCE = ROOT / "compose" / "prometheus" / "alerts.yml"
TARGET = HERE.parent / "base" / "gateway-prometheusrule.yaml"

HEADER = """\
# The gateway's alert rules for the Prometheus Operator. GENERATED from
# compose/prometheus/alerts.yml by deploy/kubernetes/tools/sync_prometheusrule.py:
# change the rules there (scripts/check-metrics.sh tests them), then run it;
# validate.sh refuses a copy that differs. What to do when one fires:
# runbooks/alerts.md. Your Prometheus selects rules by label
# (kube-prometheus-stack: `release: <its release name>`); add that label in
# an overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: stella-gateway
  labels:
    app.kubernetes.io/name: stella-gateway
    app.kubernetes.io/part-of: stella-gateway
spec:
"""


def render(source_text: str) -> str:
    lines = source_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    except StopIteration:
        raise SystemExit(f"{SOURCE}: no top-level `groups:`")
    body = ["  " + line if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def main() -> int:
    text = render(SOURCE.read_text())
    if TARGET.exists() and TARGET.read_text() == text:
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
