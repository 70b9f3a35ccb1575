"""Envelope verification, the service's side (SPEC.md section 5).

A pure function of the received headers, the request, the keyring and
``now``: no clock, no I/O, so every check is tested with an injected time.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import Any, Union

from .encoding import DecodeError, b64url_decode, parse_canonical_decimal
from .errors import EnvelopeError, ErrorCode
from .format import (
    VERSION,
    AuthMethod,
    Confirmation,
    EnvelopeHeaders,
    HeaderFields,
    decode_payload,
    extract_headers,
    signing_input,
)
from .keys import Alg, Keyring

__all__ = [
    "DEFAULT_CLOCK_SKEW_SECS",
    "DEFAULT_MAX_LIFETIME_SECS",
    "Identity",
    "VerifiedEnvelope",
    "VerifierSettings",
    "Verifier",
    "Absent",
    "Valid",
    "Invalid",
    "EnvelopeCheck",
    "check_request",
]

#: Default allowance for clock differences between gateway and service.
DEFAULT_CLOCK_SKEW_SECS = 30
#: Default upper bound on ``exp - iat``.
DEFAULT_MAX_LIFETIME_SECS = 300


@dataclass(frozen=True)
class VerifierSettings:
    """What a service accepts besides the keys."""

    #: This service's name; the envelope's ``aud`` must equal it.
    audience: str
    #: The gateway id expected in ``iss``; any issuer when ``None``.
    issuer: str | None = None
    clock_skew_secs: int = DEFAULT_CLOCK_SKEW_SECS
    max_lifetime_secs: int = DEFAULT_MAX_LIFETIME_SECS


@dataclass(frozen=True)
class Identity:
    """The caller's effective identity as decided by the gateway."""

    #: ``sub``; ``None`` for anonymous callers.
    subject: str | None
    tenant: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    auth_method: AuthMethod
    confirmation: Confirmation

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_role(self, role: str) -> bool:
        return role in self.roles


# Only this module holds it, so only `Verifier` can build a VerifiedEnvelope:
# code that hands one on cannot have skipped a check.
_SEAL = object()


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope that passed every check. Only :class:`Verifier` makes one."""

    identity: Identity
    issuer: str
    audience: str
    request_id: str
    kid: str
    issued_at: int
    expires_at: int
    #: The request method and path the envelope was checked against (equal to
    #: the payload's, byte for byte).
    method: str
    path: str
    # An InitVar, so `dataclasses.replace` cannot copy it onto an altered
    # envelope either.
    _seal: InitVar[object] = None

    def __post_init__(self, _seal: object) -> None:
        if _seal is not _SEAL:
            raise TypeError("a VerifiedEnvelope is only made by Verifier.verify")

    @property
    def subject(self) -> str | None:
        return self.identity.subject

    def to_payload(self) -> dict[str, Any]:
        """The payload as the gateway signed it (SPEC.md section 2)."""
        ident = self.identity
        return {
            "ver": VERSION,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": ident.subject,
            "tenant": ident.tenant,
            "client_id": ident.client_id,
            "scopes": list(ident.scopes),
            "roles": list(ident.roles),
            "auth_method": ident.auth_method.value,
            "cnf": {
                "jkt": ident.confirmation.jkt,
                "x5t#S256": ident.confirmation.x5t_s256,
                "spiffe_id": ident.confirmation.spiffe_id,
            },
            "method": self.method,
            "path": self.path,
            "request_id": self.request_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }


class Verifier:
    """Verifies envelopes against a keyring of accepted keys. Immutable."""

    __slots__ = ("_keyring", "_settings")

    def __init__(self, keyring: Keyring, settings: VerifierSettings) -> None:
        self._keyring = keyring
        self._settings = settings

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def settings(self) -> VerifierSettings:
        return self._settings

    def __repr__(self) -> str:
        return f"Verifier(kids={list(self._keyring)!r}, settings={self._settings!r})"

    def verify(
        self,
        headers: HeaderFields,
        method: str,
        path: str,
        now: int,
        extra_keys: Keyring | None = None,
    ) -> VerifiedEnvelope | None:
        """Finds the envelope in a request's field lines and verifies it.

        ``path`` is the request path as received (percent-encoding kept),
        without the query; ``now`` is unix seconds. ``extra_keys`` (the keys
        fetched from a JWKS URL) are looked up after the verifier's own
        keyring, so a kid in both is the keyring's. Returns ``None`` when the
        request carries none of the six headers, raises :class:`EnvelopeError`
        with the code of the first failed check otherwise.
        """
        found = extract_headers(headers)
        if found is None:
            return None
        return self.verify_envelope(found, method, path, now, extra_keys)

    def verify_envelope(
        self,
        headers: EnvelopeHeaders,
        method: str,
        path: str,
        now: int,
        extra_keys: Keyring | None = None,
    ) -> VerifiedEnvelope:
        """Runs checks 2 to 16 of SPEC.md section 5, in order, at ``now``."""
        settings = self._settings
        alg = Alg.from_header(headers.alg)
        if alg is None:
            raise EnvelopeError(
                ErrorCode.UNSUPPORTED_ALG, "envelope algorithm is not HS256 or EdDSA"
            )
        key = self._keyring.get(headers.kid)
        if key is None and extra_keys is not None:
            key = extra_keys.get(headers.kid)
        if key is None:
            raise EnvelopeError(
                ErrorCode.UNKNOWN_KID, "envelope key id is not in the accepted keyring"
            )
        if key.alg is not alg:
            raise EnvelopeError(
                ErrorCode.ALG_NOT_ALLOWED_FOR_KEY,
                f"envelope algorithm {alg.value} is not the algorithm of key "
                f"{key.kid} ({key.alg.value})",
            )
        try:
            iat = parse_canonical_decimal(headers.iat)
            exp = parse_canonical_decimal(headers.exp)
        except DecodeError:
            raise EnvelopeError(
                ErrorCode.MALFORMED_TIMESTAMP,
                "envelope iat or exp header is not a canonical decimal integer",
            ) from None
        try:
            signature = b64url_decode(headers.signature)
        except DecodeError:
            raise EnvelopeError(
                ErrorCode.MALFORMED_SIGNATURE,
                "envelope signature is not canonical unpadded base64url",
            ) from None
        message = signing_input(headers.alg, headers.kid, headers.iat, headers.exp, headers.envelope)
        if not key.verify(message, signature):
            raise EnvelopeError(
                ErrorCode.BAD_SIGNATURE, f"envelope signature does not verify with key {key.kid}"
            )

        payload = decode_payload(headers.envelope)
        if payload.ver != VERSION:
            raise EnvelopeError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"envelope payload version {payload.ver} is not supported",
            )
        if payload.iat != iat or payload.exp != exp:
            raise EnvelopeError(
                ErrorCode.TIMESTAMP_MISMATCH,
                "envelope payload iat/exp differ from the signed headers",
            )
        skew = settings.clock_skew_secs
        lifetime = max(exp - iat, 0)
        if exp <= iat or lifetime > settings.max_lifetime_secs:
            raise EnvelopeError(
                ErrorCode.BAD_LIFETIME,
                f"envelope lifetime of {lifetime} s is outside 1..={settings.max_lifetime_secs} s",
            )
        if now > exp + skew:
            raise EnvelopeError(
                ErrorCode.EXPIRED,
                f"envelope expired {now - exp} s ago (beyond the allowed clock skew)",
            )
        if iat > now + skew:
            raise EnvelopeError(
                ErrorCode.ISSUED_IN_FUTURE,
                f"envelope issued {iat - now} s in the future (beyond the allowed clock skew)",
            )
        if settings.issuer is not None and payload.iss != settings.issuer:
            raise EnvelopeError(
                ErrorCode.ISSUER_MISMATCH, "envelope issuer is not the configured gateway"
            )
        if payload.aud != settings.audience:
            # The audience is signed by the gateway: naming it is not echoing
            # client input, and it is what an operator needs to fix routing.
            raise EnvelopeError(
                ErrorCode.AUDIENCE_MISMATCH,
                f"envelope audience {payload.aud} is not this service ({settings.audience})",
            )
        if payload.method != method:
            raise EnvelopeError(
                ErrorCode.REQUEST_MISMATCH,
                "envelope was issued for another request (method differs)",
            )
        if payload.path != path:
            raise EnvelopeError(
                ErrorCode.REQUEST_MISMATCH,
                "envelope was issued for another request (path differs)",
            )
        return VerifiedEnvelope(
            identity=Identity(
                subject=payload.sub,
                tenant=payload.tenant,
                client_id=payload.client_id,
                scopes=payload.scopes,
                roles=payload.roles,
                auth_method=payload.auth_method,
                confirmation=payload.cnf,
            ),
            issuer=payload.iss,
            audience=payload.aud,
            request_id=payload.request_id,
            kid=key.kid,
            issued_at=iat,
            expires_at=exp,
            method=payload.method,
            path=payload.path,
            _seal=_SEAL,
        )


@dataclass(frozen=True)
class Absent:
    """The request carries none of the six headers."""


@dataclass(frozen=True)
class Valid:
    """The envelope passed every check."""

    envelope: VerifiedEnvelope


@dataclass(frozen=True)
class Invalid:
    """The envelope failed ``error``."""

    error: EnvelopeError


#: The outcome of looking for and verifying an envelope on one request.
EnvelopeCheck = Union[Absent, Valid, Invalid]


def check_request(
    verifier: Verifier | None,
    headers: HeaderFields,
    method: str,
    path: str,
    now: int,
    extra_keys: Keyring | None = None,
) -> EnvelopeCheck:
    """The whole service-side check before :func:`~stella_envelope.trust.decide`;
    never raises for any request. ``extra_keys`` as in :meth:`Verifier.verify`.

    With no verifier (no key configured, allowed in ``ServiceEnforced``), an
    envelope that arrives cannot be trusted: it is ``unknown_kid``, as in
    the Rust reference.
    """
    try:
        found = extract_headers(headers)
        if found is None:
            return Absent()
        if verifier is None:
            raise EnvelopeError(
                ErrorCode.UNKNOWN_KID, "envelope key id is not in the accepted keyring"
            )
        return Valid(verifier.verify_envelope(found, method, path, now, extra_keys))
    except EnvelopeError as e:
        return Invalid(e)
