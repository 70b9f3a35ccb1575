"""ASGI middleware (Starlette, FastAPI, any ASGI 3 application).

    app.add_middleware(EnvelopeMiddleware, config=handle)

For every HTTP request and WebSocket handshake it takes one configuration
snapshot, checks the envelope, applies the trust mode, and either answers
the rejection itself or calls the application with, in ``scope["state"]``
(``request.state`` in Starlette):

- ``stella_identity``: the :class:`~stella_envelope.verify.VerifiedEnvelope`
  when the envelope is valid *and* the trust mode lets the service use it,
  else ``None``;
- ``stella_outcome``: the :data:`~stella_envelope.middleware.EnvelopeOutcome`;
- ``stella_config``: the :class:`~stella_envelope.config.ServiceConfig` the
  request was decided with.

The path checked is the one the server received (``raw_path``, percent
encoding kept), as the gateway signed it; ``path`` is already decoded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from .middleware import Middleware, evaluate_async
from .trust import Rejection, problem_body, problem_headers

__all__ = ["EnvelopeMiddleware", "STATE_IDENTITY", "STATE_OUTCOME", "STATE_CONFIG"]

STATE_IDENTITY = "stella_identity"
STATE_OUTCOME = "stella_outcome"
STATE_CONFIG = "stella_config"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 3986 pchar and "/", what a server leaves unescaped in a path.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def _request_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        # Some servers have kept the query in raw_path; it is never signed.
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    # No raw_path (the ASGI spec makes it optional): re-encode the decoded
    # path. Exact for every path the gateway writes without escapes; a
    # server that drops raw_path cannot tell "%2F" from "/".
    return quote(scope.get("path", ""), safe=_PATH_SAFE)


class EnvelopeMiddleware(Middleware[ASGIApp]):
    """Applies the configured trust mode to every request (see
    :class:`~stella_envelope.middleware.Middleware` for the arguments).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # The one read of the configuration for this request.
        config, jwks = self._live()
        method = scope.get("method", "GET") if kind == "http" else "GET"
        result = await evaluate_async(
            config, scope.get("headers", ()), method, _request_path(scope), self._clock(), jwks=jwks
        )
        if isinstance(result, Rejection):
            if kind == "http":
                await _send_problem(send, result, "http.response")
            else:
                await _deny_websocket(scope, receive, send, result)
            return
        # Every key is written, so nothing set before this request (lifespan
        # state, an outer middleware) can pass for an identity.
        state = scope.setdefault("state", {})
        state[STATE_IDENTITY] = result.identity
        state[STATE_OUTCOME] = result
        state[STATE_CONFIG] = config
        await self.app(scope, receive, send)


async def _send_problem(send: Send, rejection: Rejection, prefix: str) -> None:
    body = problem_body(rejection)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in problem_headers(body)]
    await send({"type": f"{prefix}.start", "status": rejection.status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body, "more_body": False})


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, rejection: Rejection) -> None:
    """Refuses a WebSocket handshake: with the problem response when the
    server can send one (the ``websocket.http.response`` extension), else by
    closing before accepting, which servers answer with 403."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await _send_problem(send, rejection, "websocket.http.response")
    else:
        await send({"type": "websocket.close", "code": 1008})
