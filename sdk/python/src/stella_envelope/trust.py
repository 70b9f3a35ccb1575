"""Trust modes: what a service does with an envelope (SPEC.md section 6).

| mode              | valid envelope         | no envelope        | invalid envelope        |
|-------------------|------------------------|--------------------|-------------------------|
| ``ServiceEnforced``| ignored for authz     | service's own auth | ignored, logged         |
| ``Hybrid``        | identity from envelope | service's own auth | 401                     |
| ``GatewayEnforced``| identity from envelope| 401                | 401 (403 for audience)  |

:func:`decide` is that table as a function; :func:`problem_body` is the one
place a rejection becomes a response body, so every framework adapter
answers the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Union

from .encoding import rust_trim
from .errors import EnvelopeError, ErrorCode
from .verify import Absent, EnvelopeCheck, Invalid, Valid, VerifiedEnvelope

__all__ = [
    "TrustMode",
    "UseEnvelope",
    "ServiceAuth",
    "Reject",
    "Rejection",
    "Action",
    "decide",
    "problem_body",
    "PROBLEM_CONTENT_TYPE",
]

#: Content type of every rejection (RFC 9457).
PROBLEM_CONTENT_TYPE = "application/problem+json"

_REASONS = {401: "Unauthorized", 403: "Forbidden"}


class TrustMode(str, Enum):
    """How far a service trusts the gateway."""

    #: The service authorizes every request itself; envelopes are advisory.
    SERVICE_ENFORCED = "ServiceEnforced"
    #: A valid envelope is trusted; without one the service authorizes itself.
    HYBRID = "Hybrid"
    #: Only requests carrying a valid envelope are served.
    GATEWAY_ENFORCED = "GatewayEnforced"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> TrustMode:
        """Case-insensitive; ``_`` and ``-`` are ignored
        (``gateway_enforced`` works). Raises ``ValueError``, never showing
        the text."""
        folded = "".join(c for c in rust_trim(text) if c not in "_-")
        folded = folded.lower() if folded.isascii() else folded
        for mode in cls:
            if mode.value.lower() == folded:
                return mode
        raise ValueError("trust mode must be ServiceEnforced, Hybrid or GatewayEnforced")


@dataclass(frozen=True)
class Rejection:
    """A response the service sends instead of handling the request."""

    #: 401 or 403.
    status: int
    #: ``envelope_required``, ``envelope_invalid`` or ``envelope_audience_mismatch``.
    code: str
    #: The envelope check that failed, when one did.
    cause: EnvelopeError | None

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "Unauthorized")


@dataclass(frozen=True)
class UseEnvelope:
    """Serve the request as the identity in the envelope."""

    envelope: VerifiedEnvelope


@dataclass(frozen=True)
class ServiceAuth:
    """Authorize the request with the service's own authentication.
    ``ignored`` is the failure of an invalid envelope, to be logged."""

    ignored: EnvelopeError | None = None


@dataclass(frozen=True)
class Reject:
    """Answer with ``rejection``; do not call the handler."""

    rejection: Rejection


#: What the service must do with a request.
Action = Union[UseEnvelope, ServiceAuth, Reject]


def decide(mode: TrustMode, check: EnvelopeCheck) -> Action:
    """The trust-mode table of SPEC.md section 6 as a function."""
    if mode is TrustMode.SERVICE_ENFORCED:
        # A valid envelope is not exposed either: in this mode nothing the
        # gateway says is an authorization input.
        return ServiceAuth(check.error if isinstance(check, Invalid) else None)
    if isinstance(check, Valid):
        return UseEnvelope(check.envelope)
    if isinstance(check, Absent):
        if mode is TrustMode.HYBRID:
            return ServiceAuth(None)
        return Reject(Rejection(401, "envelope_required", None))
    error = check.error
    if mode is TrustMode.GATEWAY_ENFORCED and error.code is ErrorCode.AUDIENCE_MISMATCH:
        return Reject(Rejection(403, "envelope_audience_mismatch", error))
    return Reject(Rejection(401, "envelope_invalid", error))


def problem_body(rejection: Rejection) -> bytes:
    """The ``application/problem+json`` body of a rejection, byte for byte
    what the Rust middleware writes (serde_json's sorted, compact object).
    Names the failed check by its code; never echoes a header value."""
    body = {
        "type": "about:blank",
        "title": rejection.reason,
        "status": rejection.status,
        "error": rejection.code,
        "envelope_error": rejection.cause.code.value if rejection.cause else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def problem_headers(body: bytes) -> list[tuple[str, str]]:
    """Response headers of a rejection: the problem type, and ``no-store``
    so no cache keeps an answer about one caller's credentials."""
    return [
        ("content-type", PROBLEM_CONTENT_TYPE),
        ("cache-control", "no-store"),
        ("content-length", str(len(body))),
    ]
