"""The wire format of SPEC.md sections 1 to 3: header names and limits, the
exact signing input, header extraction from a request's field lines, and the
payload document with its exact member types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from .encoding import DecodeError, b64url_decode, loads_strict_object
from .errors import EnvelopeError, ErrorCode

__all__ = [
    "HEADER_ENVELOPE",
    "HEADER_SIGNATURE",
    "HEADER_ALG",
    "HEADER_KID",
    "HEADER_IAT",
    "HEADER_EXP",
    "HEADER_NAMES",
    "MAX_ENVELOPE_LEN",
    "MAX_SMALL_HEADER_LEN",
    "SIGNING_DOMAIN",
    "VERSION",
    "AuthMethod",
    "Confirmation",
    "EnvelopeHeaders",
    "HeaderFields",
    "Payload",
    "extract_headers",
    "signing_input",
    "decode_payload",
]

HEADER_ENVELOPE = "X-StellaOps-Identity-Envelope"
HEADER_SIGNATURE = "X-StellaOps-Identity-Envelope-Signature"
HEADER_ALG = "X-StellaOps-Identity-Envelope-Alg"
HEADER_KID = "X-StellaOps-Identity-Envelope-Kid"
HEADER_IAT = "X-StellaOps-Identity-Envelope-Iat"
HEADER_EXP = "X-StellaOps-Identity-Envelope-Exp"

#: The six headers, envelope first (the order of :class:`EnvelopeHeaders`).
HEADER_NAMES: tuple[str, ...] = (
    HEADER_ENVELOPE,
    HEADER_SIGNATURE,
    HEADER_ALG,
    HEADER_KID,
    HEADER_IAT,
    HEADER_EXP,
)
_INDEX = {name.lower(): i for i, name in enumerate(HEADER_NAMES)}

#: Longest ``X-StellaOps-Identity-Envelope`` value, in bytes.
MAX_ENVELOPE_LEN = 16 * 1024
#: Longest value of each of the five other headers, in bytes.
MAX_SMALL_HEADER_LEN = 256
#: First line of the signing input: keeps an envelope signature from being
#: valid for any other use of the same key.
SIGNING_DOMAIN = "StellaOps-Identity-Envelope/1"
#: The payload version this package reads.
VERSION = 1

#: Request field lines: ``(name, value)`` pairs, as ``str`` or ``bytes``, or
#: any object with ``items()`` yielding them (Starlette's ``Headers`` does,
#: duplicates included; a plain ``dict`` cannot hold a duplicate).
HeaderFields = Union[
    Iterable[tuple[Union[str, bytes], Union[str, bytes]]],
    Mapping[str, str],
    Mapping[bytes, bytes],
]


@dataclass(frozen=True)
class EnvelopeHeaders:
    """The six header values of one envelope, as received."""

    envelope: str
    signature: str
    alg: str
    kid: str
    iat: str
    exp: str


def _header_bytes(value: str | bytes) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    # Servers hand str header values decoded as latin-1 (PEP 3333, ASGI).
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _header_index(name: str | bytes) -> int | None:
    if isinstance(name, (bytes, bytearray, memoryview)):
        text = bytes(name).decode("latin-1")
    else:
        text = name
    # ASCII-only case folding: "K" (U+212A KELVIN SIGN).lower() is "k".
    if not text.isascii():
        return None
    return _INDEX.get(text.lower())


_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]*")


def _visible_ascii(value: bytes) -> bool:
    return _VISIBLE_ASCII.fullmatch(value) is not None


def extract_headers(fields: HeaderFields) -> EnvelopeHeaders | None:
    """Collects the six envelope headers from every field line of a request.

    Returns ``None`` when none is present ("no envelope", not an error).
    Raises :class:`EnvelopeError` (check 1) when only some are present, one
    appears twice (whatever the case of its name), or a value is too long or
    not visible ASCII. Field lines are examined in order and the first
    offending one decides, as in the Rust reference.
    """
    pairs: Iterable[Any] = fields.items() if hasattr(fields, "items") else fields
    slots: list[str | None] = [None] * 6
    for name, value in pairs:
        index = _header_index(name)
        if index is None:
            continue
        header = HEADER_NAMES[index]
        if slots[index] is not None:
            raise EnvelopeError(
                ErrorCode.DUPLICATE_HEADER, f"envelope header {header} appears more than once"
            )
        raw = _header_bytes(value)
        limit = MAX_ENVELOPE_LEN if index == 0 else MAX_SMALL_HEADER_LEN
        if len(raw) > limit:
            raise EnvelopeError(
                ErrorCode.HEADER_TOO_LARGE, f"envelope header {header} is too large"
            )
        if not _visible_ascii(raw):
            raise EnvelopeError(
                ErrorCode.MALFORMED_HEADER, f"envelope header {header} is not visible ascii"
            )
        slots[index] = raw.decode("ascii")
    if all(slot is None for slot in slots):
        return None
    for index, slot in enumerate(slots):
        if slot is None:
            raise EnvelopeError(
                ErrorCode.MISSING_HEADER, f"envelope header {HEADER_NAMES[index]} is missing"
            )
    envelope, signature, alg, kid, iat, exp = slots
    return EnvelopeHeaders(envelope, signature, alg, kid, iat, exp)  # type: ignore[arg-type]


def signing_input(alg: str, kid: str, iat: str, exp: str, envelope: str) -> bytes:
    """The exact bytes signed: the domain line, the Alg, Kid, Iat and Exp
    values and the envelope value, joined by LF. No value can contain LF
    (visible ASCII only), so the join is unambiguous."""
    return "\n".join((SIGNING_DOMAIN, alg, kid, iat, exp, envelope)).encode("ascii")


class AuthMethod(str, Enum):
    """How the caller authenticated at the gateway."""

    BEARER = "bearer"
    DPOP = "dpop"
    MTLS = "mtls"
    SPIFFE = "spiffe"
    ANONYMOUS = "anonymous"
    #: A sender-constrained token whose constraint was not proven, let
    #: through by the operator's emergency bypass; a service may trust it less.
    BYPASS = "bypass"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Confirmation:
    """What the caller's credential was bound to; ``None`` when not
    applicable."""

    jkt: str | None
    x5t_s256: str | None
    spiffe_id: str | None


@dataclass(frozen=True)
class Payload:
    """The payload document, every member checked for its exact type."""

    ver: int
    iss: str
    aud: str
    sub: str | None
    tenant: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    auth_method: AuthMethod
    cnf: Confirmation
    method: str
    path: str
    request_id: str
    iat: int
    exp: int


_MEMBERS = frozenset(
    (
        "ver",
        "iss",
        "aud",
        "sub",
        "tenant",
        "client_id",
        "scopes",
        "roles",
        "auth_method",
        "cnf",
        "method",
        "path",
        "request_id",
        "iat",
        "exp",
    )
)
_CNF_MEMBERS = frozenset(("jkt", "x5t#S256", "spiffe_id"))
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1


class _Members(ValueError):
    pass


# `type(x) is int`, never isinstance: True is an int to Python, not to JSON.
def _string(value: Any) -> str:
    if type(value) is not str:
        raise _Members
    return value


def _string_or_null(value: Any) -> str | None:
    return None if value is None else _string(value)


def _strings(value: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise _Members
    return tuple(_string(v) for v in value)


def _unsigned(value: Any, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise _Members
    return value


def _malformed(why: str) -> EnvelopeError:
    return EnvelopeError(ErrorCode.MALFORMED_PAYLOAD, f"envelope payload is malformed: {why}")


def decode_payload(envelope: str) -> Payload:
    """Decodes the envelope header value into a :class:`Payload` (check 8).

    Every member of SPEC.md section 2 must be present with its exact type and
    no other member may be; ``ver`` is range-checked here and compared to 1
    by the caller (check 9).
    """
    try:
        data = b64url_decode(envelope)
    except DecodeError:
        raise _malformed("encoding") from None
    try:
        obj = loads_strict_object(data)
    except DecodeError as e:
        raise _malformed("duplicate member" if "duplicate" in str(e) else "json") from None
    if obj.keys() != _MEMBERS:
        raise _malformed("members")
    cnf = obj["cnf"]
    try:
        if type(cnf) is not dict or cnf.keys() != _CNF_MEMBERS:
            raise _Members
        auth_method = obj["auth_method"]
        if type(auth_method) is not str:
            raise _Members
        try:
            method_of_auth = AuthMethod(auth_method)
        except ValueError:
            raise _Members from None
        return Payload(
            ver=_unsigned(obj["ver"], _U32_MAX),
            iss=_string(obj["iss"]),
            aud=_string(obj["aud"]),
            sub=_string_or_null(obj["sub"]),
            tenant=_string_or_null(obj["tenant"]),
            client_id=_string_or_null(obj["client_id"]),
            scopes=_strings(obj["scopes"]),
            roles=_strings(obj["roles"]),
            auth_method=method_of_auth,
            cnf=Confirmation(
                jkt=_string_or_null(cnf["jkt"]),
                x5t_s256=_string_or_null(cnf["x5t#S256"]),
                spiffe_id=_string_or_null(cnf["spiffe_id"]),
            ),
            method=_string(obj["method"]),
            path=_string(obj["path"]),
            request_id=_string(obj["request_id"]),
            iat=_unsigned(obj["iat"], _U64_MAX),
            exp=_unsigned(obj["exp"], _U64_MAX),
        )
    except _Members:
        raise _malformed("members") from None
