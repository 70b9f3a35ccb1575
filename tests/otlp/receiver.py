#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for the end-to-end tests.

Listens on 127.0.0.1 (port 0 unless given), accepts `POST /v1/traces` with
an `application/x-protobuf` ExportTraceServiceRequest, decodes it with the
OpenTelemetry protobuf messages (PyPI `opentelemetry-proto`, pinned in
tests/python-requirements.txt) and appends one JSON line per span to the
output file: trace_id, span_id, parent_span_id (lowercase hex, empty for a
root), name, kind, service (the resource's service.name) and attributes.
Prints `OTLP_READY {"addr": "127.0.0.1:PORT"}` once it accepts requests.

With `--discard` instead of a file, spans are accepted and dropped without
decoding (the benchmark's collector, bench/lib.sh BENCH_TRACES).

Otherwise every POST is also recorded in OUTPUT_FILE.requests, one JSON line
each: the status answered, the sha256 of the body and the request headers
(names lowercased). `OTLP_RECEIVER_FAIL=N:STATUS[:RETRY_AFTER]` answers the
first N POSTs with STATUS (and that `Retry-After`) without decoding them:
a collector that is busy or refuses.

Usage: receiver.py OUTPUT_FILE|--discard [PORT]
"""

import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(value)
    return value


def spans_of(request):
    for resource_spans in request.resource_spans:
        service = ""
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = value_of(kv.value)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "service": service,
                    "status_code": span.status.code,
                    "attributes": {kv.key: value_of(kv.value) for kv in span.attributes},
                }


def main():
    output = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    fail = os.environ.get("OTLP_RECEIVER_FAIL", "")
    fail_left, fail_status, retry_after = 0, 0, None
    if fail:
        parts = fail.split(":")
        fail_left, fail_status = int(parts[0]), int(parts[1])
        retry_after = parts[2] if len(parts) > 2 else None
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if output == "--discard":
                self.reply()
                return
            nonlocal fail_left
            with lock:
                failing = fail_left > 0
                if failing:
                    fail_left -= 1
            status = fail_status if failing else 200
            with open(output + ".requests", "a", encoding="utf-8") as out:
                out.write(json.dumps({
                    "status": status,
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }) + "\n")
            if failing:
                self.send_response(fail_status)
                if retry_after is not None:
                    self.send_header("retry-after", retry_after)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception:  # noqa: BLE001 - any decode failure is a 400
                self.send_error(400)
                return
            with open(output, "a", encoding="utf-8") as out:
                for span in spans_of(request):
                    out.write(json.dumps(span) + "\n")
            self.reply()

        def reply(self):
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    host, bound = server.server_address[:2]
    print("OTLP_READY " + json.dumps({"addr": f"{host}:{bound}"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
