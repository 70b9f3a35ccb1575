# Sends each token of a file exactly once as a Bearer token, for
# bench/tokens.sh (not run alone).
# argv: port path tokens-file connections
# CONNECTIONS keep-alive HTTP/1.1 connections (asyncio, raw sockets) share
# the tokens; every answer's status is checked. Prints one line:
#   SENT {"requests": N, "ok": N, "statuses": {...}, "seconds": S}
# and exits 1 if any answer is not 200 or a connection fails.
import asyncio, json, sys, time

port, path, tokens_file, conns = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
tokens = open(tokens_file, "rb").read().split()
statuses = {}


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def worker(next_index):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in next_index:
            writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         + tokens[i] + b"\r\n\r\n")
            status = await asyncio.wait_for(read_response(reader), 30)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def main():
    shared = iter(range(len(tokens)))  # one iterator: each index goes to one worker
    started = time.monotonic()
    results = await asyncio.gather(*(worker(shared) for _ in range(conns)), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    seconds = time.monotonic() - started
    sent = sum(statuses.values())
    print("SENT " + json.dumps({"requests": sent, "ok": statuses.get(200, 0),
                                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                                "seconds": round(seconds, 2), "connection_errors": errors[:5]}), flush=True)
    return 0 if sent == len(tokens) and statuses.get(200, 0) == sent and not errors else 1


sys.exit(asyncio.run(main()))
