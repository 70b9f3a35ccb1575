"""The trust-mode table (SPEC.md section 6) and the rejection body."""

from __future__ import annotations

import json
import logging

import pytest

from stella_envelope import (
    Absent,
    EnvelopeError,
    ErrorCode,
    Invalid,
    NeedsServiceAuth,
    Reject,
    Rejection,
    ServiceAuth,
    ServiceConfig,
    Trusted,
    TrustMode,
    UseEnvelope,
    Valid,
    decide,
    evaluate,
)
from stella_envelope.trust import problem_body, problem_headers
from support import valid_vector, vector_verifier, vectors

NOW = vectors()["now"]
REQUEST = vectors()["request"]
SE, HY, GE = TrustMode.SERVICE_ENFORCED, TrustMode.HYBRID, TrustMode.GATEWAY_ENFORCED

BAD = EnvelopeError(ErrorCode.BAD_SIGNATURE, "envelope signature does not verify with key hs-1")
AUD = EnvelopeError(ErrorCode.AUDIENCE_MISMATCH, "envelope audience billing is not this service (orders)")


def valid() -> Valid:
    envelope = vector_verifier().verify(
        valid_vector("hs256_bearer")["headers"], REQUEST["method"], REQUEST["path"], NOW
    )
    assert envelope is not None
    return Valid(envelope)


# mode, check, expected (action class, status, error code, envelope_error)
TABLE = [
    (SE, "valid", ServiceAuth, None, None, None),
    (SE, "absent", ServiceAuth, None, None, None),
    (SE, "invalid", ServiceAuth, None, None, "bad_signature"),
    (SE, "audience", ServiceAuth, None, None, "audience_mismatch"),
    (HY, "valid", UseEnvelope, None, None, None),
    (HY, "absent", ServiceAuth, None, None, None),
    (HY, "invalid", Reject, 401, "envelope_invalid", "bad_signature"),
    # Only GatewayEnforced singles out the audience.
    (HY, "audience", Reject, 401, "envelope_invalid", "audience_mismatch"),
    (GE, "valid", UseEnvelope, None, None, None),
    (GE, "absent", Reject, 401, "envelope_required", None),
    (GE, "invalid", Reject, 401, "envelope_invalid", "bad_signature"),
    (GE, "audience", Reject, 403, "envelope_audience_mismatch", "audience_mismatch"),
]


@pytest.mark.parametrize(
    ("mode", "check", "action", "status", "code", "cause"),
    TABLE,
    ids=[f"{row[0].value}-{row[1]}" for row in TABLE],
)
def test_trust_mode_table(
    mode: TrustMode, check: str, action: type, status: int | None, code: str | None, cause: str | None
) -> None:
    checks = {"valid": valid(), "absent": Absent(), "invalid": Invalid(BAD), "audience": Invalid(AUD)}
    result = decide(mode, checks[check])
    assert type(result) is action
    if isinstance(result, Reject):
        assert (result.rejection.status, result.rejection.code) == (status, code)
        got = result.rejection.cause.code.value if result.rejection.cause else None
        assert got == cause
    elif isinstance(result, ServiceAuth):
        assert (result.ignored.code.value if result.ignored else None) == cause
    else:
        assert isinstance(result, UseEnvelope)
        assert result.envelope.identity.subject == "user-7"


def test_the_problem_body_is_the_rust_middlewares_byte_for_byte() -> None:
    body = problem_body(Rejection(401, "envelope_invalid", BAD))
    assert body == (
        b'{"envelope_error":"bad_signature","error":"envelope_invalid",'
        b'"status":401,"title":"Unauthorized","type":"about:blank"}'
    )
    required = json.loads(problem_body(Rejection(401, "envelope_required", None)))
    assert required["envelope_error"] is None and required["error"] == "envelope_required"
    forbidden = json.loads(problem_body(Rejection(403, "envelope_audience_mismatch", AUD)))
    assert forbidden["title"] == "Forbidden" and forbidden["status"] == 403
    headers = dict(problem_headers(body))
    assert headers == {
        "content-type": "application/problem+json",
        "cache-control": "no-store",
        "content-length": str(len(body)),
    }


def test_the_problem_body_never_echoes_the_error_message() -> None:
    body = problem_body(Rejection(403, "envelope_audience_mismatch", AUD))
    assert b"billing" not in body


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("ServiceEnforced", SE),
        ("hybrid", HY),
        ("GATEWAYENFORCED", GE),
        ("gateway_enforced", GE),
        (" Gateway-Enforced ", GE),
    ],
)
def test_trust_modes_parse_case_insensitively(text: str, mode: TrustMode) -> None:
    assert TrustMode.parse(text) is mode


def test_an_unknown_trust_mode_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as e:
        TrustMode.parse("Enforced-By-Nobody")
    assert "Nobody" not in str(e.value)


def config(mode: TrustMode, enabled: bool = True) -> ServiceConfig:
    return ServiceConfig(enabled=enabled, mode=mode, verifier=vector_verifier())


def test_evaluate_hides_a_valid_envelope_in_service_enforced_mode() -> None:
    headers = valid_vector("hs256_bearer")["headers"]
    outcome = evaluate(config(SE), headers, REQUEST["method"], REQUEST["path"], NOW)
    assert outcome == NeedsServiceAuth(None)
    assert outcome.identity is None
    trusted = evaluate(config(HY), headers, REQUEST["method"], REQUEST["path"], NOW)
    assert isinstance(trusted, Trusted) and trusted.identity.identity.tenant == "acme"


def test_evaluate_logs_an_ignored_invalid_envelope_by_code_only(caplog: pytest.LogCaptureFixture) -> None:
    headers = [tuple(h) for h in valid_vector("hs256_bearer")["headers"]]
    headers[3] = (headers[3][0], "PROBE-kid")
    with caplog.at_level(logging.WARNING, logger="stella_envelope"):
        outcome = evaluate(config(SE), headers, REQUEST["method"], REQUEST["path"], NOW)
    assert isinstance(outcome, NeedsServiceAuth)
    assert outcome.ignored_invalid is not None
    assert outcome.ignored_invalid.code is ErrorCode.UNKNOWN_KID
    assert "code=unknown_kid" in caplog.text and "mode=ServiceEnforced" in caplog.text
    assert "PROBE" not in caplog.text


def test_a_disabled_service_ignores_envelopes_entirely() -> None:
    headers = [tuple(h) for h in valid_vector("hs256_bearer")["headers"]][:3]  # partial: invalid
    for mode in TrustMode:
        assert evaluate(config(mode, enabled=False), headers, "GET", "/", NOW) == NeedsServiceAuth(None)
        assert evaluate(config(mode, enabled=False), [], "GET", "/", NOW) == NeedsServiceAuth(None)


def test_an_envelope_without_any_configured_key_is_an_unknown_kid() -> None:
    no_keys = ServiceConfig(enabled=True, mode=SE, verifier=None)
    outcome = evaluate(no_keys, valid_vector("hs256_bearer")["headers"], "GET", "/orders/42", NOW)
    assert isinstance(outcome, NeedsServiceAuth)
    assert outcome.ignored_invalid is not None
    assert outcome.ignored_invalid.code is ErrorCode.UNKNOWN_KID
