"""Keys from a JWKS URL (SPEC.md section 7.6): the document rules, the
variables, and the fetcher against a real HTTP server on an ephemeral port
whose JWKS the test controls and whose fetches it counts."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from stella_envelope import (
    ConfigHandle,
    ConfigurationError,
    JwksKeys,
    JwksProblem,
    JwksSettings,
    NeedsServiceAuth,
    ServiceConfig,
    Trusted,
    evaluate,
    parse_jwks,
)
from stella_envelope.asgi import EnvelopeMiddleware
from stella_envelope.encoding import b64url_decode
from stella_envelope.errors import ConfigError
from stella_envelope.jwks import fetch_jwks
from stella_envelope.trust import Rejection
from support import (
    b64url,
    ed25519_public_spec,
    payload,
    seal_eddsa,
    seal_hs256,
    vector_key_spec,
    vectors,
    wait_until,
)

# The vectors' Ed25519 key, as the gateway would publish it, and two more.
VECTOR_SEED = b64url_decode(next(k["sign"] for k in vectors()["keys"] if k["kid"] == "ed-1").split(":", 1)[1])
SEED_2 = bytes([2]) * 32
SEED_3 = bytes([3]) * 32


def public_x(seed: bytes) -> str:
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return b64url(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def jwk(seed: bytes, kid: str, **more: Any) -> dict[str, Any]:
    """A key as the gateway publishes it (RFC 8037 OKP)."""
    key: dict[str, Any] = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": public_x(seed),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    }
    key.update(more)
    return {k: v for k, v in key.items() if v is not None}


def document(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


ES256_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "es-1",
    "alg": "ES256",
    "use": "sig",
}


# --- the document --------------------------------------------------------------


def test_a_gateway_document_yields_its_ed25519_keys() -> None:
    ring = parse_jwks(document(jwk(VECTOR_SEED, "ed-1"), jwk(SEED_2, "k2")))
    assert list(ring) == ["ed-1", "k2"]
    assert ring["k2"].kind == "ed25519 public"


@pytest.mark.parametrize(
    "skipped",
    [
        ES256_KEY,
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa-1"},
        jwk(SEED_3, "x-1", crv="X25519", alg=None),
        jwk(SEED_3, "enc-1", use="enc"),
        jwk(SEED_3, "other-alg", alg="ES256"),
        jwk(SEED_3, None),
        jwk(SEED_3, "not a kid!"),
    ],
)
def test_keys_it_does_not_use_are_skipped_and_the_others_kept(skipped: dict[str, Any]) -> None:
    ring = parse_jwks(document(skipped, jwk(SEED_2, "k2")))
    assert list(ring) == ["k2"]


def test_alg_and_use_may_be_left_out() -> None:
    assert list(parse_jwks(document(jwk(SEED_2, "k2", alg=None, use=None)))) == ["k2"]


def test_an_empty_key_set_is_a_good_document() -> None:
    assert len(parse_jwks(b'{"keys":[]}')) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (document(jwk(SEED_2, "k2"), jwk(SEED_3, "k2")), "key id k2 appears more than once"),
        (document(jwk(SEED_2, "k2"), {**ES256_KEY, "kid": "k2"}), "key id k2 appears more than once"),
        (document({**jwk(SEED_2, "k2"), "x": b64url(bytes(31))}), "key k2 has no x of 32 bytes"),
        (document({**jwk(SEED_2, "k2"), "x": public_x(SEED_2) + "="}), "key k2 has no x of 32 bytes"),
        (document({**jwk(SEED_2, "k2"), "x": None}), "key k2 has no x of 32 bytes"),
        (document({**jwk(SEED_2, "k2"), "d": b64url(SEED_2)}), "key k2 is a private key"),
        (document({**jwk(SEED_2, "k2"), "kid": 7}), "keys[0] has a kid that is not a string"),
        (b'{"keys":[1]}', "keys[0] is not an object"),
        (b'{"keys":{}}', "document has no keys array"),
        (b'{"other":[]}', "document has no keys array"),
        (b"[]", "document is not a strict json object"),
        (b"not json", "document is not a strict json object"),
        (b'{"keys":[],"keys":[]}', "document is not a strict json object"),
        (b"{" + b" " * (64 * 1024) + b'"keys":[]}', "document is larger than 65536 bytes"),
    ],
)
def test_a_bad_document_is_refused_whole(body: bytes, why: str) -> None:
    with pytest.raises(JwksProblem) as e:
        parse_jwks(body)
    assert str(e.value).startswith(why)
    assert public_x(SEED_2) not in str(e.value) and b64url(SEED_2) not in str(e.value)


# --- the variables --------------------------------------------------------------


def env(**more: str) -> dict[str, str]:
    return {"Router__IdentityEnvelopeAudience": "orders", **more}


def errors_of(variables: dict[str, str], file_text: str | None = None) -> list[ConfigError]:
    with pytest.raises(ConfigurationError) as e:
        ServiceConfig.from_env_and_file(variables, file_text)
    return list(e.value.errors)


def test_the_jwks_variables_are_read_with_their_defaults() -> None:
    config = ServiceConfig.from_env_and_file(
        env(Router__IdentityEnvelopeJwksUrl=" http://gateway:9901/.well-known/stella/keys.json "), None
    )
    assert config.jwks == JwksSettings("http://gateway:9901/.well-known/stella/keys.json", 300, 30)
    config = ServiceConfig.from_env_and_file(
        env(
            ROUTER__IDENTITY_ENVELOPE_JWKS_URL="https://gw/keys.json",
            Router__IdentityEnvelopeJwksRefreshSeconds="10",
            Router__IdentityEnvelopeJwksCooldownSeconds="3600",
        ),
        None,
    )
    assert config.jwks == JwksSettings("https://gw/keys.json", 10, 3600)
    assert ServiceConfig.from_env_and_file(env(Router__IdentityEnvelopeJwksUrl="  "), None).jwks is None


def test_a_jwks_url_is_a_key_source_for_the_enforcing_modes() -> None:
    for mode in ("Hybrid", "GatewayEnforced"):
        config = ServiceConfig.from_env_and_file(
            env(Router__AuthorizationTrustMode=mode, Router__IdentityEnvelopeJwksUrl="http://gw/keys.json"), None
        )
        assert config.verifier is not None and config.accepted_kids == ()
    (error,) = errors_of(env(Router__AuthorizationTrustMode="Hybrid"))
    assert str(error) == (
        "Router__IdentityEnvelopeSigningKey: Hybrid needs Router__IdentityEnvelopeSigningKey, "
        "Router__IdentityEnvelopeAcceptedKeys or Router__IdentityEnvelopeJwksUrl"
    )
    (error,) = errors_of({"Router__IdentityEnvelopeJwksUrl": "http://gw/keys.json"})
    assert str(error) == "Router__IdentityEnvelopeAudience: is required when envelope keys are configured"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("Router__IdentityEnvelopeJwksUrl", "ftp://SECRETHOST/keys", "must be an http or https URL with a host"),
        ("Router__IdentityEnvelopeJwksUrl", "SECRETHOST/keys.json", "must be an http or https URL with a host"),
        ("Router__IdentityEnvelopeJwksUrl", "http:///SECRETPATH", "must be an http or https URL with a host"),
        ("Router__IdentityEnvelopeJwksUrl", "http://SECRETHOST:99999/", "must be an http or https URL with a host"),
        ("Router__IdentityEnvelopeJwksUrl", "http://SECRET HOST/", "must be an http or https URL with a host"),
        ("Router__IdentityEnvelopeJwksUrl", "http://u:SECRET@gw/keys", "must not carry credentials (user:password@)"),
        ("Router__IdentityEnvelopeJwksRefreshSeconds", "9", "must be a whole number of seconds from 10 to 86400"),
        ("Router__IdentityEnvelopeJwksRefreshSeconds", "86401", "must be a whole number of seconds from 10 to 86400"),
        ("Router__IdentityEnvelopeJwksRefreshSeconds", "5m", "must be a whole number of seconds from 10 to 86400"),
        ("Router__IdentityEnvelopeJwksCooldownSeconds", "0", "must be a whole number of seconds up to 3600"),
        ("Router__IdentityEnvelopeJwksCooldownSeconds", "3601", "must be a whole number of seconds up to 3600"),
    ],
)
def test_bad_jwks_settings_name_the_variable_never_the_value(variable: str, value: str, problem: str) -> None:
    variables = env(Router__IdentityEnvelopeJwksUrl="http://gw/keys.json")
    variables[variable] = value
    (error,) = errors_of(variables)
    assert (error.variable, error.problem) == (variable, problem)
    assert "SECRET" not in str(error)


def test_the_jwks_variables_may_be_set_in_the_config_file() -> None:
    text = "Router__IdentityEnvelopeJwksUrl=http://gw/keys.json\nRouter__IdentityEnvelopeJwksCooldownSeconds=5\n"
    config = ServiceConfig.from_env_and_file(env(), text)
    assert config.jwks == JwksSettings("http://gw/keys.json", 300, 5)
    (error,) = errors_of(env(), "Router__IdentityEnvelopeJwksUrl=gw/keys.json\n")
    assert str(error) == (
        "Router__IdentityEnvelopeJwksUrl: must be an http or https URL with a host "
        "(set in Router__ConfigFile line 1)"
    )


def test_a_changed_jwks_url_is_a_changed_configuration() -> None:
    a = ServiceConfig.from_env_and_file(env(Router__IdentityEnvelopeJwksUrl="http://a/keys.json"), None)
    b = ServiceConfig.from_env_and_file(env(Router__IdentityEnvelopeJwksUrl="http://b/keys.json"), None)
    assert a.same_settings(a) and not a.same_settings(b)


# --- fetching, against a real server -------------------------------------------


class JwksServer:
    """A JWKS endpoint the test controls: what it answers, how slowly, and
    how many GETs it has served."""

    def __init__(self) -> None:
        self.body = document()
        self.status = 200
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        self.fetches = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    server.fetches += 1
                    body, status, delay, headers = server.body, server.status, server.delay, dict(server.headers)
                if delay:
                    time.sleep(delay)  # the server is slow, not the test
                self.send_response(status)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up on purpose (a refused large body)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/.well-known/stella/keys.json"

    def serve(self, body: bytes, status: int = 200) -> None:
        with self._lock:
            self.body, self.status = body, status

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server() -> Iterator[JwksServer]:
    running = JwksServer()
    yield running
    running.close()


@pytest.fixture
def make_handle() -> Iterator[Any]:
    handles: list[ConfigHandle] = []

    def make(**variables: str) -> ConfigHandle:
        handle = ConfigHandle.load(
            {
                "Router__AuthorizationTrustMode": "GatewayEnforced",
                "Router__IdentityEnvelopeAudience": "orders",
                **variables,
            }
        )
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.close()


def first_fetch(handle: ConfigHandle) -> None:
    jwks = handle.jwks
    assert jwks is not None
    assert wait_until(lambda: jwks.fetches >= 1), "the first JWKS fetch never ended"


def decide(handle: ConfigHandle, seed: bytes, kid: str) -> Any:
    now = int(time.time())
    config, jwks = handle.current_with_jwks()
    return evaluate(config, seal_eddsa(seed, kid, payload(now=now)), "GET", "/orders/42", now, jwks=jwks)


def refused_with(result: Any) -> str | None:
    if isinstance(result, Rejection):
        return result.cause.code.value if result.cause else result.code
    return None


def test_an_envelope_signed_with_a_jwks_key_is_accepted(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    result = decide(handle, VECTOR_SEED, "ed-1")  # may wait for the first fetch
    assert isinstance(result, Trusted) and result.envelope.kid == "ed-1"
    assert refused_with(decide(handle, SEED_2, "ed-1")) == "bad_signature"
    assert server.fetches == 1


def test_a_rotated_key_is_picked_up_by_an_unknown_kid_refetch(
    server: JwksServer, make_handle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)
    server.serve(document(jwk(VECTOR_SEED, "ed-1"), jwk(SEED_2, "k2")))
    with caplog.at_level(logging.INFO, logger="stella_envelope"):
        result = decide(handle, SEED_2, "k2")
    assert isinstance(result, Trusted) and result.envelope.kid == "k2"
    assert server.fetches == 2
    assert "envelope JWKS fetched from Router__IdentityEnvelopeJwksUrl: kids=ed-1,k2" in caplog.text
    assert public_x(SEED_2) not in caplog.text


def test_unknown_kids_refetch_at_most_once_per_cooldown(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(
        Router__IdentityEnvelopeJwksUrl=server.url, Router__IdentityEnvelopeJwksCooldownSeconds="3600"
    )
    first_fetch(handle)
    assert refused_with(decide(handle, SEED_2, "k2")) == "unknown_kid"
    assert server.fetches == 2  # the one refetch of this cooldown
    server.serve(document(jwk(SEED_2, "k2")))
    started = time.monotonic()
    for kid in ("k2", "k3", "k4"):
        assert refused_with(decide(handle, SEED_2, kid)) == "unknown_kid"
    assert time.monotonic() - started < 1.0  # refused at once, not after a wait
    assert server.fetches == 2


def test_an_hs256_envelope_with_an_unknown_kid_fetches_nothing(server: JwksServer, make_handle: Any) -> None:
    # A JWKS never lists an HS256 key: fetching for one would only let
    # callers make the service fetch at will.
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)
    now = int(time.time())
    config, jwks = handle.current_with_jwks()
    headers = seal_hs256(b"an-hs256-secret-of-at-least-32-bytes!", "k9", payload(now=now))
    assert refused_with(evaluate(config, headers, "GET", "/orders/42", now, jwks=jwks)) == "unknown_kid"
    assert server.fetches == 1


def test_concurrent_unknown_kids_share_one_fetch(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)
    server.serve(document(jwk(VECTOR_SEED, "ed-1"), jwk(SEED_2, "k2")))
    server.delay = 0.3
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(decide(handle, SEED_2, "k2"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(r, Trusted) for r in results) and len(results) == 8
    assert server.fetches == 2


def test_a_refetch_after_the_cooldown_is_allowed_again(server: JwksServer) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    keys = JwksKeys(JwksSettings(server.url, refresh_seconds=3600, cooldown_seconds=0.3))
    try:
        assert wait_until(lambda: keys.fetches == 1)
        first = keys.refetch_for_unknown_kid()
        assert first is not None and first.wait(5)
        assert keys.refetch_for_unknown_kid() is None  # within the cooldown
        assert wait_until(lambda: keys.refetch_for_unknown_kid() is not None, timeout=5)
        assert wait_until(lambda: server.fetches == 3)
    finally:
        keys.close()


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        (b"oops", 500, "http status 500"),
        (b"", 302, "http status 302"),
        (b"{not json", 200, "document is not a strict json object"),
        (document(jwk(SEED_2, "k2"), jwk(SEED_3, "k2")), 200, "key id k2 appears more than once"),
        (document({**jwk(SEED_2, "k2"), "x": b64url(bytes(16))}), 200, "key k2 has no x of 32 bytes"),
        (b" " * (64 * 1024 + 1), 200, "document is larger than 65536 bytes"),
    ],
)
def test_a_failed_fetch_keeps_the_last_good_keys(
    server: JwksServer, make_handle: Any, caplog: pytest.LogCaptureFixture, body: bytes, status: int, why: str
) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)
    server.serve(body, status)
    with caplog.at_level(logging.WARNING, logger="stella_envelope"):
        assert refused_with(decide(handle, SEED_2, "k2")) == "unknown_kid"
    assert server.fetches == 2
    assert handle.jwks is not None and handle.jwks.last_error is not None
    assert handle.jwks.last_error.startswith(why)
    assert isinstance(decide(handle, VECTOR_SEED, "ed-1"), Trusted)
    assert "envelope JWKS fetch from Router__IdentityEnvelopeJwksUrl failed, keeping 1 keys" in caplog.text
    assert server.url not in caplog.text and public_x(SEED_2) not in caplog.text


def test_a_bad_key_among_skipped_ones_still_uses_the_good_ones(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(ES256_KEY, jwk(SEED_3, "enc", use="enc"), jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    assert isinstance(decide(handle, VECTOR_SEED, "ed-1"), Trusted)
    assert refused_with(decide(handle, SEED_3, "enc")) == "unknown_kid"


def test_until_a_first_fetch_succeeds_jwks_kids_are_unknown_and_it_is_retried(server: JwksServer) -> None:
    server.serve(b"down", 503)
    keys = JwksKeys(JwksSettings(server.url, refresh_seconds=3600, cooldown_seconds=0.2))
    try:
        assert wait_until(lambda: keys.fetches >= 1)
        assert keys.fetched_at is None and len(keys.keys()) == 0 and keys.last_error == "http status 503"
        server.serve(document(jwk(SEED_2, "k2")))
        # Retried after the cooldown, without any request asking.
        assert wait_until(lambda: "k2" in keys.keys(), timeout=5)
        assert keys.last_error is None and keys.fetched_at is not None
    finally:
        keys.close()


def test_a_slow_server_times_out() -> None:
    slow = JwksServer()
    slow.delay = 1.0
    try:
        started = time.monotonic()
        with pytest.raises(JwksProblem) as e:
            fetch_jwks(slow.url, timeout=0.3)
        assert str(e.value) == "timed out after 0.3 s"
        assert time.monotonic() - started < 0.9
    finally:
        slow.close()


def test_a_static_key_wins_over_a_jwks_key_with_the_same_kid(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(jwk(SEED_2, "ed-1"), jwk(SEED_3, "k3")))
    handle = make_handle(
        Router__IdentityEnvelopeJwksUrl=server.url,
        Router__IdentityEnvelopeAcceptedKeys=f"ed-1={vector_key_spec('ed-1')}",
    )
    assert isinstance(decide(handle, SEED_3, "k3"), Trusted)  # JWKS keys are in use
    assert isinstance(decide(handle, VECTOR_SEED, "ed-1"), Trusted)
    assert refused_with(decide(handle, SEED_2, "ed-1")) == "bad_signature"


def test_a_reload_to_another_url_uses_the_new_one(server: JwksServer, tmp_path: Path, make_handle: Any) -> None:
    other = JwksServer()
    try:
        server.serve(document(jwk(VECTOR_SEED, "ed-1")))
        other.serve(document(jwk(SEED_2, "k2")))
        file = tmp_path / "envelope.env"
        file.write_text(f"Router__IdentityEnvelopeJwksUrl={server.url}\n")
        handle = make_handle(Router__ConfigFile=str(file))
        assert isinstance(decide(handle, VECTOR_SEED, "ed-1"), Trusted)
        old = handle.jwks
        file.write_text(f"Router__IdentityEnvelopeJwksUrl={other.url}\n")
        assert handle.reload().kind == "applied"
        assert isinstance(decide(handle, SEED_2, "k2"), Trusted)
        assert refused_with(decide(handle, VECTOR_SEED, "ed-1")) == "unknown_kid"
        assert other.fetches >= 1 and handle.jwks is not old
        # Only the intervals change: the fetcher and its keys stay.
        file.write_text(
            f"Router__IdentityEnvelopeJwksUrl={other.url}\nRouter__IdentityEnvelopeJwksRefreshSeconds=60\n"
        )
        kept = handle.jwks
        assert handle.reload().kind == "applied"
        assert handle.jwks is kept and kept is not None and kept.settings.refresh_seconds == 60
    finally:
        other.close()


def test_service_enforced_never_waits_for_a_refetch(server: JwksServer, make_handle: Any) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__AuthorizationTrustMode="ServiceEnforced", Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)
    result = decide(handle, SEED_2, "k2")
    assert isinstance(result, NeedsServiceAuth) and result.ignored_invalid is not None
    assert result.ignored_invalid.code.value == "unknown_kid"
    assert server.fetches == 1


def test_a_fixed_configuration_with_a_jwks_url_needs_a_handle() -> None:
    config = ServiceConfig.from_env_and_file(
        env(Router__IdentityEnvelopeJwksUrl="http://gw/keys.json"), None
    )
    with pytest.raises(ValueError, match="needs a ConfigHandle"):
        EnvelopeMiddleware(Starlette(), config=config)


def test_an_asgi_application_waits_for_the_refetch_without_blocking_the_loop(
    server: JwksServer, make_handle: Any
) -> None:
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    handle = make_handle(Router__IdentityEnvelopeJwksUrl=server.url)
    first_fetch(handle)

    async def whoami(request: Request) -> JSONResponse:
        identity = request.state.stella_identity
        return JSONResponse({"kid": identity.kid if identity else None})

    app = Starlette(routes=[Route("/orders/42", whoami)])
    app.add_middleware(EnvelopeMiddleware, config=handle)
    server.serve(document(jwk(SEED_2, "k2")))
    now = int(time.time())
    with TestClient(app) as client:
        response = client.get("/orders/42", headers=seal_eddsa(SEED_2, "k2", payload(now=now)))
    assert (response.status_code, response.json()) == (200, {"kid": "k2"})
    assert server.fetches == 2


def test_the_vector_key_spec_is_the_published_key() -> None:
    # The JWKS the tests publish for ed-1 is the vectors' key, not a lookalike.
    assert vector_key_spec("ed-1") == ed25519_public_spec(VECTOR_SEED)


def test_plain_http_to_another_host_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    cases = [
        ("http://gateway.internal:9090/keys.json", True),
        ("https://gateway.internal/keys.json", False),
        ("http://127.0.0.1:9090/keys.json", False),
    ]
    for url, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stella_envelope"):
            keys = JwksKeys(JwksSettings(url), fetch=lambda _url: b'{"keys":[]}')
            keys.close()
        assert ("is plain http to another host" in caplog.text) is warned, url
        assert url not in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_fetches_with_its_own_thread(server: JwksServer) -> None:
    # gunicorn --preload: the handle is made in the master, requests are
    # served in forked workers, where the master's thread does not exist.
    server.serve(document(jwk(VECTOR_SEED, "ed-1")))
    keys = JwksKeys(JwksSettings(server.url, refresh_seconds=3600, cooldown_seconds=3600))
    try:
        assert wait_until(lambda: keys.fetches == 1)
        server.serve(document(jwk(SEED_2, "k2")))
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if its refetch worked
            done = keys.refetch_for_unknown_kid()
            ok = done is not None and done.wait(5) and "k2" in keys.keys()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert server.fetches == 2
        assert "k2" not in keys.keys()  # the parent's keys are its own
    finally:
        keys.close()


def test_a_retuned_refresh_interval_applies_from_the_last_fetch(server: JwksServer) -> None:
    server.serve(document(jwk(SEED_2, "k2")))
    keys = JwksKeys(JwksSettings(server.url, refresh_seconds=3600, cooldown_seconds=30))
    try:
        assert wait_until(lambda: keys.fetches == 1)
        keys.retune(0.2, 30)
        assert wait_until(lambda: server.fetches >= 3, timeout=5)  # refreshed, again and again
    finally:
        keys.close()
