"""Sample service behind Stella Gateway in Python: Starlette on uvicorn, with
the envelope verified by the stella-envelope SDK (sdk/python).

The SDK reads the Router__* variables (envelope/SPEC.md section 7): trust
mode, accepted keys, audience, issuer, and Router__ConfigFile, reloaded when
the file changes and on SIGHUP. SAMPLE_LISTEN is the address to bind
(host:port, default 127.0.0.1:0, an ephemeral port); once listening the
service prints one line, SAMPLE_READY {"addr": ...}, on stdout.

Routes: GET /health (outside the envelope check, for health checks), and
GET /python/whoami and GET|POST /python/orders/{order_id}, which answer with
the identity the gateway vouched for. Rejections (401 envelope_required,
envelope_invalid, ...) are answered by the SDK's middleware.
"""

import json
import logging
import os
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from stella_envelope import load_or_exit, start_reload_triggers
from stella_envelope.asgi import EnvelopeMiddleware

LANGUAGE = "python"

logging.basicConfig(level=logging.INFO)  # the SDK's reload lines, on stderr
handle = load_or_exit()  # every problem as "VARIABLE: problem", exit 2
start_reload_triggers(handle, sighup=True)


def identity_json(envelope):
    who, cnf = envelope.identity, envelope.identity.confirmation
    return {
        "subject": who.subject,
        "tenant": who.tenant,
        "client_id": who.client_id,
        "scopes": list(who.scopes),
        "roles": list(who.roles),
        "auth_method": who.auth_method.value,
        "cnf": {"jkt": cnf.jkt, "x5t#S256": cnf.x5t_s256, "spiffe_id": cnf.spiffe_id},
        "kid": envelope.kid,
        "issuer": envelope.issuer,
        "audience": envelope.audience,
        "request_id": envelope.request_id,
    }


def answer(request, **body):
    envelope = request.state.stella_identity  # None unless valid and trusted
    if envelope is None:
        # Hybrid (or ServiceEnforced) without a trusted envelope: a real
        # service authenticates the caller itself here; this one has no
        # authentication of its own.
        problem = {"type": "about:blank", "title": "Unauthorized", "status": 401,
                   "error": "service_auth_required"}
        return JSONResponse(problem, 401, media_type="application/problem+json")
    mode = request.state.stella_config.mode.value
    return JSONResponse({"language": LANGUAGE, "mode": mode, **body,
                         "identity": identity_json(envelope)})


async def whoami(request):
    return answer(request)


async def order(request):
    return answer(request, order=request.path_params["order_id"], method=request.method)


async def health(request):
    return JSONResponse({"status": "ok"})


# The envelope check covers everything under /python; the path it checks is
# the one received (raw_path), /python included, as the gateway signed it.
api = Starlette(
    routes=[Route("/whoami", whoami), Route("/orders/{order_id}", order, methods=["GET", "POST"])],
    middleware=[Middleware(EnvelopeMiddleware, config=handle)],
)
app = Starlette(routes=[Route("/health", health), Mount("/python", app=api)])

if __name__ == "__main__":
    host, _, port = os.environ.get("SAMPLE_LISTEN", "127.0.0.1:0").rpartition(":")
    sock = socket.create_server((host, int(port)))  # bound and listening
    addr = "%s:%d" % sock.getsockname()[:2]
    ready = {"addr": addr, "language": LANGUAGE, "mode": handle.current().mode.value}
    print("SAMPLE_READY " + json.dumps(ready, separators=(",", ":")), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
