# Cold start of the gateway, for bench/lib.sh's coldstart (not run alone).
# argv: gateway-binary work-dir "config..." "port..." (space-separated lists,
# one config and its HTTP port per start); env COLDSTART_TOKEN: a Bearer
# token the /bearer/ route accepts.
# Per start: exec the gateway, read its stdout until GATEWAY_READY (time to
# ready), then send GET /bearer/x until it answers 200 (time to first 200,
# also from exec), then kill it. Starts are sequential; the Authority and the
# upstream stay up. Exit 1 if a start fails (no ready line within 30 s, or no
# 200 within 10 s after it); a missed target is printed, not an error.
import http.client, json, os, queue, signal, statistics, subprocess, sys, threading, time

binary, work, configs, ports = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
token = os.environ["COLDSTART_TOKEN"]
TARGET_S = 1.0
child = None


def stop(*_):
    if child is not None and child.poll() is None:
        child.kill()
        child.wait()
    sys.exit(1)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)


def first_200(port, deadline):
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=2)
        try:
            conn.request("GET", "/bearer/x", headers={"Authorization": "Bearer " + token})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return time.monotonic(), 200
            last = response.status
        except OSError as err:
            last = type(err).__name__
        finally:
            conn.close()
        time.sleep(0.002)
    sys.exit(f"bench: cold start: no 200 on /bearer/x within 10 s of ready (last: {last})")


rows = []
for i, (config, port) in enumerate(zip(configs, ports), 1):
    err = open(os.path.join(work, f"coldstart-{i}.err"), "wb")
    started = time.monotonic()
    child = subprocess.Popen([binary, "run", "--config", config], stdout=subprocess.PIPE, stderr=err)
    lines = queue.Queue()
    def read(out=child.stdout):
        for line in out:
            lines.put(line)
        lines.put(b"")  # end of output: the gateway exited

    threading.Thread(target=read, daemon=True).start()
    deadline = started + 30
    ready_line = None
    while ready_line is None and time.monotonic() < deadline:
        try:
            raw = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            break
        if raw.startswith(b"GATEWAY_READY "):
            ready_line = raw
        elif not raw:
            break
    ready = time.monotonic()
    if ready_line is None:
        child.kill()
        child.wait()
        err.close()
        tail = open(err.name, errors="replace").read()[-2000:]
        sys.exit(f"bench: cold start {i}: no GATEWAY_READY line (exited, or 30 s passed); its stderr ends with:\n{tail}")
    info = json.loads(ready_line.split(b" ", 1)[1])
    ok, _ = first_200(port, ready + 10)
    child.kill()
    child.wait()
    child = None
    rows.append((ready - started, ok - started, info.get("startup_ms"), info.get("keys_loaded")))

print(f"\nCold start: {len(rows)} starts of {binary}, a fresh configuration each, Authority up")
print(f"{'start':<7}{'ready ms':>10}{'first 200 ms':>14}{'own startup_ms':>16}{'keys_loaded':>13}")
for i, (ready, ok, own, keys) in enumerate(rows, 1):
    print(f"{i:<7}{ready * 1000:>10.1f}{ok * 1000:>14.1f}{own if own is not None else '-':>16}{str(keys):>13}")
ready = [r[0] for r in rows]
ok = [r[1] for r in rows]
verdict = lambda s: "PASS" if s < TARGET_S else "MISS"
print(f"to GATEWAY_READY: median {statistics.median(ready) * 1000:.1f} ms, max {max(ready) * 1000:.1f} ms"
      f"   (target < {TARGET_S * 1000:.0f} ms: {verdict(max(ready))} on the max)")
print(f"to first 200 on /bearer/: median {statistics.median(ok) * 1000:.1f} ms, max {max(ok) * 1000:.1f} ms")
