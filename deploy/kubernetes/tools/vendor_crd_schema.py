#!/usr/bin/env python3
"""Turns a CustomResourceDefinition into the JSON schema validate.sh uses.

    python3 vendor_crd_schema.py CRD.yaml VERSION OUT.json

Takes `spec.versions[name=VERSION].schema.openAPIV3Schema` of the CRD and
drops the `description` texts (most of the size); nothing else changes.
deploy/kubernetes/schemas/README.md says which CRDs the vendored files come
from. Needs PyYAML (the venv of validate.sh has it).
"""

import json
import sys

import yaml

# Keywords whose value is a mapping of names to schemas.
SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs")
# Keywords whose value is one schema.
SCHEMA_ONE = ("items", "additionalProperties", "not")
# Keywords whose value is a list of schemas.
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def strip(schema):
    """The schema without `description` keywords (property names stay)."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strip(sub) for name, sub in value.items()}
        elif key in SCHEMA_ONE:
            out[key] = strip(value)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strip(sub) for sub in value]
        else:
            out[key] = value
    return out


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    crd_path, version, out_path = argv[1:]
    with open(crd_path) as f:
        crd = next(d for d in yaml.safe_load_all(f) if d)
    if crd.get("kind") != "CustomResourceDefinition":
        print(f"{crd_path}: not a CustomResourceDefinition", file=sys.stderr)
        return 1
    versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not versions:
        print(f"{crd_path}: no version {version}", file=sys.stderr)
        return 1
    schema = strip(versions[0]["schema"]["openAPIV3Schema"])
    schema["x-stella-source"] = {
        "crd": crd["metadata"]["name"],
        "version": version,
        "operator_version": crd["metadata"].get("annotations", {}).get(
            "operator.prometheus.io/version", "unknown"
        ),
    }
    with open(out_path, "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
