"""The WSGI middleware in a real Flask application (Werkzeug's test client)
and a real Django application."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request

from stella_envelope import ConfigHandle, ServiceConfig
from stella_envelope.trust import Rejection, problem_body
from stella_envelope.wsgi import EnvelopeWSGIMiddleware
from support import valid_vector, vectors

NOW = vectors()["now"]
HS1 = [tuple(h) for h in valid_vector("hs256_bearer")["headers"]]
ED1 = [tuple(h) for h in valid_vector("eddsa_dpop")["headers"]]


def vector_env(mode: str, **more: str) -> dict[str, str]:
    keys = ";".join(f"{k['kid']}={k['verify']}" for k in vectors()["keys"])
    return {
        "Router__AuthorizationTrustMode": mode,
        "Router__IdentityEnvelopeAcceptedKeys": keys,
        "Router__IdentityEnvelopeAudience": "orders",
        "Router__IdentityEnvelopeIssuer": "stella-gateway-local",
        **more,
    }


def config(mode: str, **more: str) -> ServiceConfig:
    return ServiceConfig.from_env(vector_env(mode, **more))


def describe(environ: dict[str, Any]) -> dict[str, Any]:
    identity = environ["stella.identity"]
    outcome = environ["stella.outcome"]
    ignored = getattr(outcome, "ignored_invalid", None)
    return {
        "subject": identity.identity.subject if identity else None,
        "outcome": type(outcome).__name__,
        "ignored": ignored.code.value if ignored else None,
        "mode": environ["stella.config"].mode.value,
    }


def flask_app(source: Any, hook: Any = None) -> Flask:
    app = Flask(__name__)

    @app.route("/orders/<path:rest>", methods=["GET", "DELETE"])
    def whoami(rest: str) -> Any:
        if hook is not None:
            hook()
        return jsonify(describe(request.environ))

    app.wsgi_app = EnvelopeWSGIMiddleware(app.wsgi_app, config=source, clock=lambda: NOW)  # type: ignore[method-assign]
    return app


def get(source: Any, path: str = "/orders/42", headers: Any = (), method: str = "GET") -> Any:
    return flask_app(source).test_client().open(path, method=method, headers=list(headers))


# --- trust modes --------------------------------------------------------------------


def test_gateway_enforced_refuses_a_request_without_envelope() -> None:
    response = get(config("GatewayEnforced"))
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.data == problem_body(Rejection(401, "envelope_required", None))


@pytest.mark.parametrize("headers", [HS1, ED1], ids=["hs256", "eddsa"])
def test_gateway_enforced_serves_a_valid_envelope_as_its_identity(headers: Any) -> None:
    response = get(config("GatewayEnforced"), headers=headers)
    assert response.status_code == 200
    assert response.json == {"subject": "user-7", "outcome": "Trusted", "ignored": None, "mode": "GatewayEnforced"}


INVALID = vectors()["invalid"]


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_gateway_enforced_refuses_every_invalid_vector(vector: dict[str, Any]) -> None:
    request_ = vector.get("request", vectors()["request"])
    response = get(config("GatewayEnforced"), request_["path"], [tuple(h) for h in vector["headers"]], request_["method"])
    audience = vector["expect_error"] == "audience_mismatch"
    assert response.status_code == (403 if audience else 401)
    expected = {vector["expect_error"]}
    if vector["expect_error"] == "duplicate_header":
        # WSGI joins a repeated header ("HS256, HS256"): still refused, by
        # the check the joined value fails.
        expected.add("malformed_header")
    assert response.json["envelope_error"] in expected


def test_hybrid_trusts_valid_refuses_invalid_and_passes_absent() -> None:
    assert get(config("Hybrid"), headers=HS1).json["subject"] == "user-7"
    assert get(config("Hybrid")).json["outcome"] == "NeedsServiceAuth"
    tampered = [(n, "hs-9" if n.endswith("Kid") else v) for n, v in HS1]
    assert get(config("Hybrid"), headers=tampered).status_code == 401


def test_service_enforced_never_exposes_a_valid_envelope_and_reports_an_ignored_one() -> None:
    assert get(config("ServiceEnforced"), headers=HS1).json == {
        "subject": None,
        "outcome": "NeedsServiceAuth",
        "ignored": None,
        "mode": "ServiceEnforced",
    }
    tampered = [(n, "1" if n.endswith("Exp") else v) for n, v in HS1]
    response = get(config("ServiceEnforced"), headers=tampered)
    assert response.status_code == 200 and response.json["ignored"] == "bad_signature"


def test_a_duplicated_header_is_refused_through_wsgi() -> None:
    # Werkzeug joins the two field lines as "hs-1, hs-1" (gunicorn as
    # "hs-1,hs-1", an unknown kid): refused either way.
    response = get(config("Hybrid"), headers=HS1 + [("x-stellaops-identity-envelope-kid", "hs-1")])
    assert response.status_code == 401
    assert response.json["envelope_error"] == "malformed_header"


def test_a_percent_encoded_path_is_checked_as_received() -> None:
    # The vectors sign /orders/42; "/orders/%34%32" decodes to it but is not it.
    response = get(config("GatewayEnforced"), path="/orders/%34%32", headers=HS1)
    assert response.status_code == 401 and response.json["envelope_error"] == "request_mismatch"


def test_without_a_request_uri_the_path_is_rebuilt_from_script_name_and_path_info() -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["stella.identity"])
        start_response("204 No Content", [])
        return []

    middleware = EnvelopeWSGIMiddleware(app, config("GatewayEnforced"), clock=lambda: NOW)
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/orders",
        "PATH_INFO": "/42",
        **{"HTTP_" + n.upper().replace("-", "_"): v for n, v in HS1},
    }
    statuses: list[str] = []
    middleware(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["204 No Content"]
    assert seen[0] is not None and seen[0].path == "/orders/42"


# --- one configuration per request ------------------------------------------------------


def test_a_request_in_flight_keeps_the_configuration_it_started_with(tmp_path: Path) -> None:
    file = tmp_path / "envelope.env"
    file.write_text("Router__AuthorizationTrustMode=GatewayEnforced\n")
    handle = ConfigHandle.load({**vector_env("ServiceEnforced"), "Router__ConfigFile": str(file)})
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    app = flask_app(handle, hook=hold)
    responses: list[Any] = []
    worker = threading.Thread(target=lambda: responses.append(app.test_client().get("/orders/42", headers=HS1)))
    worker.start()
    try:
        assert entered.wait(10)
        file.write_text("Router__AuthorizationTrustMode=Hybrid\n")
        assert handle.reload().kind == "applied"
    finally:
        release.set()
        worker.join(10)
    # Decided and answered with GatewayEnforced, although Hybrid was applied
    # while it ran; the next request gets Hybrid.
    assert responses[0].status_code == 200
    assert responses[0].json["mode"] == "GatewayEnforced" and responses[0].json["outcome"] == "Trusted"
    assert flask_app(handle).test_client().get("/orders/42").json["mode"] == "Hybrid"


# --- Django --------------------------------------------------------------------------------


def django_view(request: Any, rest: str) -> Any:
    from django.http import JsonResponse

    identity = request.META["stella.identity"]
    return JsonResponse({"subject": identity.identity.subject if identity else None, "rest": rest})


@pytest.fixture(scope="module")
def django_app() -> Any:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import path

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["localhost"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    globals()["urlpatterns"] = [path("orders/<path:rest>", django_view)]
    return get_wsgi_application()


def test_django_views_read_the_identity_from_request_meta(django_app: Any) -> None:
    from werkzeug.test import Client

    application = EnvelopeWSGIMiddleware(django_app, config("GatewayEnforced"), clock=lambda: NOW)
    test_client = Client(application)
    response = test_client.get("/orders/42", headers=HS1)
    assert response.status_code == 200 and response.json == {"subject": "user-7", "rest": "42"}
    assert test_client.get("/orders/42").status_code == 401
