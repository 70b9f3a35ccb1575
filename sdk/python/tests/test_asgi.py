"""The ASGI middleware in real Starlette and FastAPI applications (through
Starlette's TestClient) and behind a real uvicorn server on an ephemeral
port."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from stella_envelope import ConfigHandle, ServiceConfig
from stella_envelope.asgi import EnvelopeMiddleware
from stella_envelope.trust import Rejection, problem_body
from support import b64url, payload, seal_hs256, valid_vector, vectors, wait_until

NOW = vectors()["now"]
HS1 = valid_vector("hs256_bearer")["headers"]
ED1 = valid_vector("eddsa_dpop")["headers"]


def vector_env(mode: str, **more: str) -> dict[str, str]:
    keys = ";".join(f"{k['kid']}={k['verify']}" for k in vectors()["keys"])
    env = {
        "Router__AuthorizationTrustMode": mode,
        "Router__IdentityEnvelopeAcceptedKeys": keys,
        "Router__IdentityEnvelopeAudience": vectors()["verifier"]["audience"],
        "Router__IdentityEnvelopeIssuer": vectors()["verifier"]["issuer"],
    }
    env.update(more)
    return env


def config(mode: str, **more: str) -> ServiceConfig:
    return ServiceConfig.from_env(vector_env(mode, **more))


def describe(state: Any) -> dict[str, Any]:
    identity = state.stella_identity
    outcome = state.stella_outcome
    ignored = getattr(outcome, "ignored_invalid", None)
    return {
        "subject": identity.identity.subject if identity else None,
        "auth_method": identity.identity.auth_method.value if identity else None,
        "outcome": type(outcome).__name__,
        "ignored": ignored.code.value if ignored else None,
        "mode": state.stella_config.mode.value,
    }


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(describe(request.state))


async def socket_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(describe(websocket.state))
    await websocket.close()


lifespan_ran: list[str] = []


@asynccontextmanager
async def lifespan(app: Starlette) -> Any:
    lifespan_ran.append("started")
    yield {"from_lifespan": True}


def starlette_app(source: Any, clock: Any = lambda: NOW) -> Starlette:
    app = Starlette(
        routes=[
            Route("/orders/{id:path}", whoami, methods=["GET", "DELETE"]),
            WebSocketRoute("/orders/{id}", socket_whoami),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(EnvelopeMiddleware, config=source, clock=clock)
    return app


def client(source: Any) -> TestClient:
    return TestClient(starlette_app(source))


# --- GatewayEnforced -----------------------------------------------------------


def test_gateway_enforced_refuses_a_request_without_envelope_with_problem_json() -> None:
    response = client(config("GatewayEnforced")).get("/orders/42")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.content == problem_body(Rejection(401, "envelope_required", None))


@pytest.mark.parametrize("headers", [HS1, ED1], ids=["hs256", "eddsa"])
def test_gateway_enforced_serves_a_valid_envelope_as_its_identity(headers: list[list[str]]) -> None:
    response = client(config("GatewayEnforced")).get("/orders/42", headers=[tuple(h) for h in headers])
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == "user-7" and body["outcome"] == "Trusted" and body["mode"] == "GatewayEnforced"


INVALID = vectors()["invalid"]


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_gateway_enforced_refuses_every_invalid_vector_over_http(vector: dict[str, Any]) -> None:
    request = vector.get("request", vectors()["request"])
    response = client(config("GatewayEnforced")).request(
        request["method"], request["path"], headers=[tuple(h) for h in vector["headers"]]
    )
    audience = vector["expect_error"] == "audience_mismatch"
    assert response.status_code == (403 if audience else 401)
    problem = response.json()
    assert problem["error"] == ("envelope_audience_mismatch" if audience else "envelope_invalid")
    assert problem["envelope_error"] == vector["expect_error"]
    # Nothing the client sent is echoed back.
    for _, value in vector["headers"]:
        assert len(value) < 8 or value not in response.text


# --- Hybrid and ServiceEnforced ----------------------------------------------------


def test_hybrid_lets_a_request_without_envelope_through_to_service_auth() -> None:
    response = client(config("Hybrid")).get("/orders/42")
    assert response.status_code == 200
    assert response.json() == {
        "subject": None,
        "auth_method": None,
        "outcome": "NeedsServiceAuth",
        "ignored": None,
        "mode": "Hybrid",
    }


def test_hybrid_trusts_a_valid_envelope_and_refuses_an_invalid_one() -> None:
    app = client(config("Hybrid"))
    assert app.get("/orders/42", headers=[tuple(h) for h in ED1]).json()["auth_method"] == "dpop"
    tampered = [(n, "hs-9" if n.endswith("Kid") else v) for n, v in HS1]
    response = app.get("/orders/42", headers=tampered)
    assert response.status_code == 401
    assert response.json()["envelope_error"] == "unknown_kid"


def test_service_enforced_never_exposes_even_a_valid_envelope() -> None:
    response = client(config("ServiceEnforced")).get("/orders/42", headers=[tuple(h) for h in HS1])
    assert response.status_code == 200
    assert response.json()["subject"] is None
    assert response.json()["outcome"] == "NeedsServiceAuth"


def test_service_enforced_serves_and_logs_an_invalid_envelope(caplog: pytest.LogCaptureFixture) -> None:
    tampered = [(n, "hs-9" if n.endswith("Kid") else v) for n, v in HS1]
    with caplog.at_level(logging.WARNING, logger="stella_envelope"):
        response = client(config("ServiceEnforced")).get("/orders/42", headers=tampered)
    assert response.status_code == 200
    assert response.json()["ignored"] == "unknown_kid" and response.json()["subject"] is None
    assert "invalid envelope ignored (mode=ServiceEnforced code=unknown_kid)" in caplog.text


def test_a_disabled_service_ignores_envelopes_in_gateway_enforced_mode() -> None:
    response = client(config("GatewayEnforced", Router__Enabled="false")).get("/orders/42")
    assert response.status_code == 200 and response.json()["outcome"] == "NeedsServiceAuth"


def test_the_lifespan_and_its_state_pass_through() -> None:
    lifespan_ran.clear()

    async def read_state(request: Request) -> JSONResponse:
        return JSONResponse({"from_lifespan": request.state.from_lifespan, **describe(request.state)})

    app = Starlette(routes=[Route("/orders/42", read_state)], lifespan=lifespan)
    app.add_middleware(EnvelopeMiddleware, config=config("Hybrid"), clock=lambda: NOW)
    with TestClient(app) as test_client:
        body = test_client.get("/orders/42", headers=[tuple(h) for h in HS1]).json()
    assert lifespan_ran == ["started"]
    assert body["from_lifespan"] is True and body["subject"] == "user-7"


# --- WebSocket --------------------------------------------------------------------


def test_a_websocket_handshake_without_envelope_is_denied_in_gateway_enforced_mode() -> None:
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as denied:
        with client(config("GatewayEnforced")).websocket_connect("/orders/42"):
            pass
    assert denied.value.status_code == 401
    assert denied.value.json()["error"] == "envelope_required"


def test_a_websocket_handshake_with_a_valid_envelope_sees_the_identity() -> None:
    with client(config("GatewayEnforced")).websocket_connect("/orders/42", headers=dict(HS1)) as ws:
        assert ws.receive_json()["subject"] == "user-7"


def test_without_the_denial_extension_a_refused_websocket_is_closed_before_accept() -> None:
    import asyncio

    called: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    middleware = EnvelopeMiddleware(app, config=config("GatewayEnforced"), clock=lambda: NOW)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/orders/42", "raw_path": b"/orders/42", "headers": [], "extensions": {}}
    asyncio.run(middleware(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert called == []


# --- reload -----------------------------------------------------------------------------


def test_a_reloaded_handle_decides_the_next_request(tmp_path: Path) -> None:
    file = tmp_path / "envelope.env"
    file.write_text("Router__AuthorizationTrustMode=GatewayEnforced\n")
    handle = ConfigHandle.load({**vector_env("ServiceEnforced"), "Router__ConfigFile": str(file)})
    app = client(handle)
    assert app.get("/orders/42").status_code == 401
    file.write_text("Router__AuthorizationTrustMode=Hybrid\n")
    assert handle.reload().kind == "applied"
    assert app.get("/orders/42").json()["mode"] == "Hybrid"


# --- FastAPI ------------------------------------------------------------------------------


def test_fastapi_handlers_read_the_identity_from_request_state() -> None:
    api = FastAPI()

    @api.get("/orders/{order_id}")
    def get_order(order_id: int, request: FastAPIRequest) -> dict[str, Any]:
        identity = request.state.stella_identity
        return {"order": order_id, "tenant": identity.identity.tenant if identity else None}

    api.add_middleware(EnvelopeMiddleware, config=config("GatewayEnforced"), clock=lambda: NOW)
    test_client = TestClient(api)
    assert test_client.get("/orders/42", headers=[tuple(h) for h in HS1]).json() == {"order": 42, "tenant": "acme"}
    assert test_client.get("/orders/42").status_code == 401


# --- a real server ---------------------------------------------------------------------


LIVE_SECRET = b"uvicorn-test-secret-0123456789abcdef"


@pytest.fixture
def uvicorn_server() -> Iterator[tuple[str, int]]:
    """A real uvicorn on 127.0.0.1 port 0, with the wall clock."""
    env = {
        "Router__AuthorizationTrustMode": "GatewayEnforced",
        "Router__IdentityEnvelopeAcceptedKeys": f"live=hs256:{b64url(LIVE_SECRET)}",
        "Router__IdentityEnvelopeAudience": "orders",
    }
    app = starlette_app(ServiceConfig.from_env(env), clock=lambda: int(time.time()))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=10)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_real_server_checks_the_raw_path_as_the_gateway_signed_it(uvicorn_server: tuple[str, int]) -> None:
    now = int(time.time())
    headers = seal_hs256(LIVE_SECRET, "live", payload(now=now, path="/orders/a%2Fb"))

    def get(path: str, with_envelope: bool = True) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection(*uvicorn_server, timeout=10)
        try:
            connection.request("GET", path, headers=dict(headers) if with_envelope else {})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    status, body = get("/orders/a%2Fb?q=1")
    assert (status, body["subject"]) == (200, "user-7")
    # The decoded path differs from what was signed: refused.
    status, body = get("/orders/a/b")
    assert (status, body["envelope_error"]) == (401, "request_mismatch")
    status, body = get("/orders/a%2Fb", with_envelope=False)
    assert (status, body["error"]) == (401, "envelope_required")
