#!/usr/bin/env python3
"""Micro-benchmark: microseconds per envelope verification.

Verifies one HS256 and one EdDSA valid vector from
envelope/testdata/vectors.json (header extraction, every check of SPEC.md
section 5, payload decoding), with timeit; prints the median of several
runs. Run with the test environment: `.venv/bin/python bench.py`.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("stella_envelope") is None:  # not installed
    sys.path.insert(0, str(HERE / "src"))

from stella_envelope import Key, Keyring, Verifier, VerifierSettings  # noqa: E402

VECTORS = HERE / ".." / ".." / "envelope" / "testdata" / "vectors.json"
RUNS = 7


def main() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    settings = vectors["verifier"]
    verifier = Verifier(
        Keyring(Key.parse(k["kid"], k["verify"]) for k in vectors["keys"]),
        VerifierSettings(
            audience=settings["audience"],
            issuer=settings["issuer"],
            clock_skew_secs=settings["clock_skew_seconds"],
            max_lifetime_secs=settings["max_lifetime_seconds"],
        ),
    )
    method, path, now = vectors["request"]["method"], vectors["request"]["path"], vectors["now"]
    print(f"python {sys.version.split()[0]}, median of {RUNS} runs")
    for name in ("hs256_bearer", "eddsa_dpop"):
        headers = next(v for v in vectors["valid"] if v["name"] == name)["headers"]
        alg = dict(headers)["X-StellaOps-Identity-Envelope-Alg"]
        if verifier.verify(headers, method, path, now) is None:
            raise SystemExit(f"{name} did not verify")

        def once() -> None:
            verifier.verify(headers, method, path, now)

        timer = timeit.Timer(once)
        number, _ = timer.autorange()  # enough calls for at least 0.2 s a run
        runs = [t / number * 1e6 for t in timer.repeat(repeat=RUNS, number=number)]
        print(
            f"{alg:6} {name:14} {statistics.median(runs):8.1f} µs/verification "
            f"(min {min(runs):.1f}, max {max(runs):.1f}, {number} calls a run)"
        )


if __name__ == "__main__":
    main()
