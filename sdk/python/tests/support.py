"""Test support: the shared vectors file, a verifier configured as the vectors
say, and a minimal envelope signer (services never sign, so the package has
none; tests need fresh envelopes for other keys, paths and times).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stella_envelope import Key, Keyring, Verifier, VerifierSettings

#: The vectors the Rust crate checks, read in place (never copied), so a
#: vector added there is run here too.
VECTORS_PATH = (Path(__file__).resolve().parents[1] / ".." / ".." / "envelope" / "testdata" / "vectors.json").resolve()

HEADERS = (
    "X-StellaOps-Identity-Envelope",
    "X-StellaOps-Identity-Envelope-Signature",
    "X-StellaOps-Identity-Envelope-Alg",
    "X-StellaOps-Identity-Envelope-Kid",
    "X-StellaOps-Identity-Envelope-Iat",
    "X-StellaOps-Identity-Envelope-Exp",
)


@lru_cache(maxsize=1)
def vectors() -> dict[str, Any]:
    with VECTORS_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def vector_keyring() -> Keyring:
    return Keyring(Key.parse(k["kid"], k["verify"]) for k in vectors()["keys"])


def vector_verifier() -> Verifier:
    s = vectors()["verifier"]
    return Verifier(
        vector_keyring(),
        VerifierSettings(
            audience=s["audience"],
            issuer=s["issuer"],
            clock_skew_secs=s["clock_skew_seconds"],
            max_lifetime_secs=s["max_lifetime_seconds"],
        ),
    )


def vector_key_spec(kid: str) -> str:
    return next(k["verify"] for k in vectors()["keys"] if k["kid"] == kid)


def valid_vector(name: str) -> dict[str, Any]:
    return next(v for v in vectors()["valid"] if v["name"] == name)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_spec(secret: bytes) -> str:
    return "hs256:" + b64url(secret)


def ed25519_public_spec(seed: bytes) -> str:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return "ed25519-public:" + b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def payload(
    *,
    now: int,
    audience: str = "orders",
    issuer: str = "stella-gateway-local",
    method: str = "GET",
    path: str = "/orders/42",
    lifetime: int = 60,
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ver": 1,
        "iss": issuer,
        "aud": audience,
        "sub": "user-7",
        "tenant": "acme",
        "client_id": "svc-bearer",
        "scopes": ["orders.read"],
        "roles": ["clerk"],
        "auth_method": "bearer",
        "cnf": {"jkt": None, "x5t#S256": None, "spiffe_id": None},
        "method": method,
        "path": path,
        "request_id": "req-test",
        "iat": now - 1,
        "exp": now - 1 + lifetime,
    }
    body.update(overrides)
    return body


def seal_raw(
    sign: Callable[[bytes], bytes], alg: str, kid: str, envelope: str, iat: str, exp: str
) -> list[tuple[str, str]]:
    message = "\n".join(("StellaOps-Identity-Envelope/1", alg, kid, iat, exp, envelope)).encode()
    return list(zip(HEADERS, (envelope, b64url(sign(message)), alg, kid, iat, exp)))


def seal_hs256(secret: bytes, kid: str, body: dict[str, Any] | str) -> list[tuple[str, str]]:
    """Headers for ``body`` (a payload dict, or raw JSON text to test the
    parser with what ``json.dumps`` never writes)."""
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    iat, exp = _times(text)
    return seal_raw(
        lambda m: hmac.digest(secret, m, hashlib.sha256), "HS256", kid, b64url(text.encode()), iat, exp
    )


def seal_eddsa(seed: bytes, kid: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    text = json.dumps(body, separators=(",", ":"))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    iat, exp = _times(text)
    return seal_raw(key.sign, "EdDSA", kid, b64url(text.encode()), iat, exp)


def _times(text: str) -> tuple[str, str]:
    # The headers repeat the payload's iat/exp; a payload whose members are
    # deliberately wrong still gets plausible headers.
    try:
        doc = json.loads(text)
        iat, exp = doc["iat"], doc["exp"]
        if type(iat) is int and type(exp) is int and 0 <= iat < 10**15 and 0 <= exp < 10**15:
            return str(iat), str(exp)
    except (ValueError, KeyError, TypeError):
        pass
    now = int(time.time())
    return str(now - 1), str(now + 59)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Polls ``predicate`` until it holds or ``timeout`` passes; returns
    whether it held. A bounded wait, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
