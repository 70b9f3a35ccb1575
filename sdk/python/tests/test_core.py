"""Unit tests of the pure core: strict decoders, header extraction, payload
types, the order and boundaries of the checks, proof-of-check."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest

from stella_envelope import EnvelopeError, ErrorCode, VerifiedEnvelope, extract_headers
from stella_envelope.encoding import (
    DecodeError,
    b64url_decode,
    b64url_encode,
    loads_strict_object,
    parse_canonical_decimal,
)
from stella_envelope.format import HEADER_NAMES, signing_input
from stella_envelope.keys import Key, Keyring
from stella_envelope.verify import Verifier, VerifierSettings
from support import (
    ed25519_public_spec,
    payload,
    seal_eddsa,
    seal_hs256,
    seal_raw,
    vector_verifier,
)

NOW = 1_767_225_600
SECRET = b"unit-test-secret-unit-test-secret-0123"


def verifier(**settings: Any) -> Verifier:
    ring = Keyring([Key.hmac("k1", SECRET)])
    return Verifier(ring, VerifierSettings(**{"audience": "orders", **settings}))


def code_of(headers: Any, method: str = "GET", path: str = "/orders/42", now: int = NOW, v: Verifier | None = None) -> str | None:
    try:
        (v or verifier()).verify(headers, method, path, now)
    except EnvelopeError as e:
        return e.code.value
    return None


# --- base64url -------------------------------------------------------------


def test_base64url_round_trips() -> None:
    for data in (b"", b"A", b"hello", bytes(range(256))):
        assert b64url_decode(b64url_encode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "aGVsbG8=",  # padding
        "aGVsbG+",  # standard alphabet
        "aGVsbG/",
        "QR",  # non-zero unused bits ("QQ" is canonical for "A")
        "QUF",  # ditto for two bytes ("QUE" is canonical)
        "Q",  # 1 mod 4
        " QQ",  # whitespace
        "QQ\n",
        "Q\u0661",  # a non-ASCII digit
    ],
)
def test_base64url_refuses_every_non_canonical_form(text: str) -> None:
    with pytest.raises(DecodeError):
        b64url_decode(text)


def test_base64url_accepts_the_canonical_neighbours() -> None:
    assert b64url_decode("QQ") == b"A"
    assert b64url_decode("QUE") == b"AA"


def test_rfc8705_example_thumbprint_is_not_canonical() -> None:
    with pytest.raises(DecodeError):
        b64url_decode("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2")
    assert len(b64url_decode("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0")) == 32


# --- canonical decimals ------------------------------------------------------


def test_canonical_decimals_parse() -> None:
    assert parse_canonical_decimal("0") == 0
    assert parse_canonical_decimal("1700000000") == 1_700_000_000
    assert parse_canonical_decimal("9" * 15) == 10**15 - 1


@pytest.mark.parametrize(
    "text", ["", "01", "+1", "-1", "1.0", " 1", "1 ", "1e3", "0x10", "1_0", "1" * 16, "\u0661"]
)
def test_non_canonical_decimals_are_refused(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_canonical_decimal(text)


# --- strict JSON --------------------------------------------------------------


def test_json_duplicates_are_found_at_any_depth_and_after_unescaping() -> None:
    assert loads_strict_object(b'{"a":1,"b":[1,{"c":2}]}') == {"a": 1, "b": [1, {"c": 2}]}
    for bad in (b'{"a":1,"a":2}', b'{"a":{"x":1,"x":1}}', b'{"a":1,"\\u0061":2}'):
        with pytest.raises(DecodeError, match="duplicate"):
            loads_strict_object(bad)


@pytest.mark.parametrize(
    "data",
    [
        b"[1]",
        b'{"a":1} x',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":"\\ud800"}',  # lone surrogate
        b'{"\\udc00":1}',
        "\ufeff{}".encode(),  # byte order mark
        '{"a":1}'.encode("utf-16"),  # json.loads would guess UTF-16 from bytes
        b'{"a":"\xff"}',
        b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",  # deeper than 16
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeper than the stack
    ],
)
def test_json_that_serde_refuses_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        loads_strict_object(data)


# --- header extraction -------------------------------------------------------


def fields(value: str = "x") -> list[tuple[str, str]]:
    return [(name, value) for name in HEADER_NAMES]


def test_no_envelope_header_is_no_envelope() -> None:
    assert extract_headers([("accept", "*/*")]) is None
    assert extract_headers({}) is None


def test_header_names_match_case_insensitively_as_str_or_bytes() -> None:
    found = extract_headers([(n.upper().encode(), b"v") for n in HEADER_NAMES])
    assert found is not None and found.kid == "v"
    found = extract_headers({n.lower(): "w" for n in HEADER_NAMES})
    assert found is not None and found.envelope == "w"


def test_only_ascii_case_folding_is_applied_to_names() -> None:
    # U+212A KELVIN SIGN lowercases to "k" in Python, never in HTTP.
    kelvin = "X-StellaOps-Identity-Envelope-\u212aid"
    headers = [(n, "v") for n in HEADER_NAMES if not n.endswith("Kid")] + [(kelvin, "v")]
    with pytest.raises(EnvelopeError) as e:
        extract_headers(headers)
    assert e.value.code is ErrorCode.MISSING_HEADER


def test_partial_and_duplicate_headers_are_told_apart() -> None:
    with pytest.raises(EnvelopeError) as e:
        extract_headers([("x-stellaops-identity-envelope", "e30")])
    assert e.value.code is ErrorCode.MISSING_HEADER
    assert "X-StellaOps-Identity-Envelope-Signature" in str(e.value)
    with pytest.raises(EnvelopeError) as e:
        extract_headers(fields() + [("X-STELLAOPS-IDENTITY-ENVELOPE-KID", "y")])
    assert e.value.code is ErrorCode.DUPLICATE_HEADER


@pytest.mark.parametrize(
    ("index", "length", "code"),
    [
        (0, 16384, None),
        (0, 16385, "header_too_large"),
        (2, 256, None),
        (2, 257, "header_too_large"),
    ],
)
def test_header_size_limits_are_exact(index: int, length: int, code: str | None) -> None:
    headers = fields()
    headers[index] = (HEADER_NAMES[index], "A" * length)
    if code is None:
        assert extract_headers(headers) is not None
    else:
        with pytest.raises(EnvelopeError) as e:
            extract_headers(headers)
        assert e.value.code.value == code


@pytest.mark.parametrize("value", ["a b", "a\tb", "a\x7fb", "caf\xe9", "\u20ac", "a\r\nb"])
def test_header_values_must_be_visible_ascii(value: str) -> None:
    headers = fields()
    headers[3] = (HEADER_NAMES[3], value)
    with pytest.raises(EnvelopeError) as e:
        extract_headers(headers)
    assert e.value.code is ErrorCode.MALFORMED_HEADER
    assert value not in str(e.value)


def test_an_empty_header_value_passes_extraction_and_fails_later() -> None:
    # As in Rust: "all bytes visible" holds for no bytes; check 2 refuses it.
    headers = fields()
    headers[2] = (HEADER_NAMES[2], "")
    assert extract_headers(headers) is not None
    assert code_of(headers) == "unsupported_alg"


def test_the_first_offending_field_line_decides() -> None:
    # A too-large Alg before a duplicate Alg: too large, as in Rust.
    headers = fields()
    headers[2] = (HEADER_NAMES[2], "A" * 300)
    with pytest.raises(EnvelopeError) as e:
        extract_headers(headers + [(HEADER_NAMES[2], "HS256")])
    assert e.value.code is ErrorCode.HEADER_TOO_LARGE


def test_signing_input_is_the_documented_byte_string() -> None:
    assert signing_input("HS256", "k1", "10", "70", "e30") == (
        b"StellaOps-Identity-Envelope/1\nHS256\nk1\n10\n70\ne30"
    )


# --- payload types (each signed, so only the payload check can refuse) --------


def signed(**overrides: Any) -> list[tuple[str, str]]:
    return seal_hs256(SECRET, "k1", payload(now=NOW, **overrides))


def signed_text(text: str) -> list[tuple[str, str]]:
    return seal_hs256(SECRET, "k1", text)


def without(member: str) -> str:
    doc = payload(now=NOW)
    del doc[member]
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("ver true", signed(ver=True)),
        ("ver 1.0", signed(ver=1.0)),
        ("ver string", signed(ver="1")),
        ("ver negative", signed(ver=-1)),
        ("ver beyond u32", signed(ver=2**32)),
        ("iat float", signed(iat=NOW - 1.0)),
        ("iat true", signed(iat=True)),
        ("exp negative", signed(exp=-5)),
        ("exp beyond u64", signed(exp=2**64)),
        ("sub number", signed(sub=7)),
        ("tenant list", signed(tenant=["acme"])),
        ("scopes string", signed(scopes="orders.read")),
        ("scopes with a number", signed(scopes=["a", 1])),
        ("roles null", signed(roles=None)),
        ("auth_method unknown", signed(auth_method="password")),
        ("auth_method upper case", signed(auth_method="BEARER")),
        ("auth_method null", signed(auth_method=None)),
        ("cnf null", signed(cnf=None)),
        ("cnf extra member", signed(cnf={"jkt": None, "x5t#S256": None, "spiffe_id": None, "x": None})),
        ("cnf missing member", signed(cnf={"jkt": None, "x5t#S256": None})),
        ("cnf number", signed(cnf={"jkt": 1, "x5t#S256": None, "spiffe_id": None})),
        ("method null", signed(method=None)),
        ("request_id missing", signed_text(without("request_id"))),
        # The SPEC says "exactly these members": a nullable one must be there.
        ("sub missing", signed_text(without("sub"))),
        ("unknown member", signed(admin=True)),
        ("not an object", signed_text("[1,2]")),
        ("trailing data", signed_text(json.dumps(payload(now=NOW)) + " {}")),
        ("duplicate member escaped", signed_text(json.dumps(payload(now=NOW))[:-1] + ',"\\u0073ub":"x"}')),
    ],
)
def test_payload_members_must_have_their_exact_types(case: str, headers: list[tuple[str, str]]) -> None:
    assert code_of(headers) == "malformed_payload", case


def test_payload_with_version_two_is_unsupported_not_malformed() -> None:
    assert code_of(signed(ver=2)) == "unsupported_version"


def test_a_payload_with_extra_whitespace_and_any_member_order_verifies() -> None:
    doc = payload(now=NOW)
    text = json.dumps(dict(reversed(list(doc.items()))), indent=2)
    assert code_of(signed_text(text)) is None


# --- check order and boundaries ---------------------------------------------


def test_checks_run_in_the_spec_order() -> None:
    good = signed()
    as_dict = dict(good)

    def with_(name: str, value: str) -> list[tuple[str, str]]:
        return [(n, value if n == name else v) for n, v in good]

    # An unknown alg wins over an unknown kid and a bad timestamp.
    bad = with_("X-StellaOps-Identity-Envelope-Alg", "none")
    bad = [(n, "k9" if n.endswith("Kid") else v) for n, v in bad]
    assert code_of(bad) == "unsupported_alg"
    # An unknown kid wins over a malformed timestamp.
    bad = [(n, "01" if n.endswith("Iat") else v) for n, v in with_("X-StellaOps-Identity-Envelope-Kid", "k9")]
    assert code_of(bad) == "unknown_kid"
    # A malformed timestamp wins over a malformed signature.
    bad = [(n, "x=" if n.endswith("Signature") else v) for n, v in with_("X-StellaOps-Identity-Envelope-Exp", "1.5")]
    assert code_of(bad) == "malformed_timestamp"
    # The signature is checked before the payload is even decoded.
    assert code_of(with_("X-StellaOps-Identity-Envelope", as_dict["X-StellaOps-Identity-Envelope"] + "x")) == "bad_signature"
    # Audience before request binding; issuer before audience.
    assert code_of(signed(aud="billing", method="POST")) == "audience_mismatch"
    assert code_of(signed(aud="billing"), v=verifier(issuer="gw")) == "issuer_mismatch"


@pytest.mark.parametrize(
    ("iat", "exp", "now", "code"),
    [
        (NOW - 60, NOW, NOW + 30, None),  # exactly exp + skew
        (NOW - 60, NOW, NOW + 31, "expired"),
        (NOW + 30, NOW + 90, NOW, None),  # exactly now + skew
        (NOW + 31, NOW + 91, NOW, "issued_in_future"),
        (NOW, NOW + 300, NOW, None),  # exactly the maximum lifetime
        (NOW, NOW + 301, NOW, "bad_lifetime"),
        (NOW, NOW, NOW, "bad_lifetime"),  # iat < exp is required
        (NOW, NOW - 1, NOW, "bad_lifetime"),
    ],
)
def test_time_checks_hold_at_their_boundaries(iat: int, exp: int, now: int, code: str | None) -> None:
    assert code_of(signed(iat=iat, exp=exp), now=now) == code


def test_timestamps_in_headers_must_equal_the_payloads() -> None:
    doc = payload(now=NOW)
    text = json.dumps(doc)
    headers = signed_text(text)
    # The same payload, signed with an Exp header one second later.
    resigned = seal_raw(
        lambda m: hmac.digest(SECRET, m, hashlib.sha256),
        "HS256",
        "k1",
        dict(headers)["X-StellaOps-Identity-Envelope"],
        str(doc["iat"]),
        str(doc["exp"] + 1),
    )
    assert code_of(resigned) == "timestamp_mismatch"


def test_without_an_issuer_setting_any_issuer_is_accepted() -> None:
    assert code_of(signed(iss="any-gateway")) is None
    assert code_of(signed(iss="any-gateway"), v=verifier(issuer="stella")) == "issuer_mismatch"


def test_method_and_path_compare_byte_for_byte() -> None:
    headers = signed(method="GET", path="/orders/a%2Fb")
    assert code_of(headers, path="/orders/a%2Fb") is None
    assert code_of(headers, path="/orders/a/b") == "request_mismatch"
    assert code_of(headers, path="/orders/a%2fb") == "request_mismatch"
    assert code_of(headers, method="get", path="/orders/a%2Fb") == "request_mismatch"


def test_eddsa_keys_verify_and_never_accept_an_hmac_over_their_public_key() -> None:
    seed = bytes(range(32))
    spec = ed25519_public_spec(seed)
    ring = Keyring([Key.parse("ed", spec)])
    v = Verifier(ring, VerifierSettings("orders"))
    assert code_of(seal_eddsa(seed, "ed", payload(now=NOW)), v=v) is None
    # Key confusion: an HMAC keyed with the public key bytes, claimed as HS256.
    public_bytes = base64.urlsafe_b64decode(spec.split(":")[1] + "=")
    forged = seal_hs256(public_bytes, "ed", payload(now=NOW))
    assert code_of(forged, v=v) == "alg_not_allowed_for_key"


# --- proof of check ------------------------------------------------------------


def test_only_the_verifier_makes_a_verified_envelope() -> None:
    verified = verifier().verify(signed(), "GET", "/orders/42", NOW)
    assert verified is not None and verified.subject == "user-7"
    with pytest.raises(TypeError):
        VerifiedEnvelope(  # type: ignore[call-arg]
            identity=verified.identity,
            issuer="x",
            audience="orders",
            request_id="r",
            kid="k1",
            issued_at=0,
            expires_at=1,
            method="GET",
            path="/",
        )
    with pytest.raises((TypeError, ValueError)):
        dataclasses.replace(verified, audience="billing")


def test_error_messages_never_echo_unsigned_header_values() -> None:
    probe = "PROBE-" + "Z" * 20
    cases = [
        [(n, probe if n.endswith("Kid") else v) for n, v in signed()],
        [(n, probe if n.endswith("Alg") else v) for n, v in signed()],
        [(n, probe if n.endswith("Signature") else v) for n, v in signed()],
        [(n, probe if n.endswith("Iat") else v) for n, v in signed()],
    ]
    for headers in cases:
        with pytest.raises(EnvelopeError) as e:
            verifier().verify(headers, "GET", "/orders/42", NOW)
        assert probe not in str(e.value) and probe not in repr(e.value)


def test_vector_verifier_is_configured_as_the_vectors_say() -> None:
    v = vector_verifier()
    assert list(v.keyring) == ["ed-1", "hs-1", "hs-2"]
    assert v.settings.issuer == "stella-gateway-local"
