#!/usr/bin/env python3
"""Fails on an import cycle between the top-level modules of one crate.

Each crate's `src/` is read as a graph: a node per top-level module (a file
`src/x.rs` or a folder `src/x/`), an edge from x to y when code under x names
`crate::y` (also inside `use crate::{..}` groups). Cargo already forbids
cycles between crates; this keeps the modules inside each crate layered too
(docs/architecture.md). Test modules count: a cycle only in tests still
tangles the code a reader has to hold in mind.

Usage: scripts/check-module-cycles.py [CRATE_SRC_DIR...]
(default: every src/ folder of the workspace's crates). Exit 1 on a cycle,
printing it; 0 otherwise, with one line per crate.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_dirs():
    dirs = []
    for base in ("crates", "."):
        top = os.path.join(ROOT, base)
        for name in sorted(os.listdir(top)):
            src = os.path.join(top, name, "src")
            if os.path.isfile(os.path.join(src, "lib.rs")) or os.path.isfile(
                os.path.join(src, "main.rs")
            ):
                dirs.append(src)
    for extra in ("tests/support/src", "tests/load/src", "samples/echo/src"):
        src = os.path.join(ROOT, extra)
        if os.path.isdir(src) and src not in dirs:
            dirs.append(src)
    return dirs


COMMENT = re.compile(r"//[^\n]*")
PATH = re.compile(r"\bcrate::(\{[^;]*?\}|[a-z_][a-z0-9_]*)", re.S)
GROUP_NAME = re.compile(r"(?:^|[{,\s])([a-z_][a-z0-9_]*)\s*(?:::|,|\}|$)")


def graph(src):
    modules = set()
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs"):
            continue
        if entry.endswith(".rs"):
            modules.add(entry[:-3])
        elif os.path.isdir(path) and any(
            f.endswith(".rs") for _, _, fs in os.walk(path) for f in fs
        ):
            modules.add(entry)
    edges = {m: set() for m in modules}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            top = rel.split(os.sep)[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top not in modules:
                continue
            with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                text = COMMENT.sub("", fh.read())
            for m in PATH.finditer(text):
                target = m.group(1)
                names = GROUP_NAME.findall(target) if target.startswith("{") else [target]
                for name in names:
                    if name in modules and name != top:
                        edges[top].add(name)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv):
    dirs = argv or default_dirs()
    failed = False
    for src in dirs:
        edges = graph(src)
        found = cycles(edges)
        name = os.path.relpath(os.path.dirname(src), ROOT)
        if found:
            failed = True
            for comp in found:
                inner = {m: sorted(edges[m] & set(comp)) for m in comp}
                print(f"{name}: import cycle between modules {', '.join(comp)}")
                for m in comp:
                    print(f"  {m} -> {', '.join(inner[m])}")
        else:
            print(f"{name}: {len(edges)} modules, no import cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
