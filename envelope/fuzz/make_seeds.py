#!/usr/bin/env python3
"""Writes the committed seed corpora from ../testdata/vectors.json.

seeds/verify_envelope/<kind>-<name>: one `name: value` line per header.
seeds/json_object/<kind>-<name>: the decoded payload JSON of the vector.
Run from anywhere; rewrites both directories.
"""
import base64
import json
import pathlib

here = pathlib.Path(__file__).resolve().parent
vectors = json.loads((here.parent / "testdata" / "vectors.json").read_text())

for target in ("verify_envelope", "json_object"):
    out = here / "seeds" / target
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()

for kind in ("valid", "invalid"):
    for vector in vectors[kind]:
        name = f"{kind}-{vector['name']}"
        headers = vector["headers"]
        lines = [f"{n}: {v}" for n, v in headers]
        (here / "seeds" / "verify_envelope" / name).write_bytes("\n".join(lines).encode())
        envelope = [v for n, v in headers if n.lower() == "x-stellaops-identity-envelope"]
        if envelope:
            text = envelope[0]
            try:
                payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except ValueError:
                continue
            (here / "seeds" / "json_object" / name).write_bytes(payload)
