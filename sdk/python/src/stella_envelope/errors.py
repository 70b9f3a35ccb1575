"""Why an envelope or a configuration was refused.

Each envelope failure carries one of the stable codes of SPEC.md section 5;
the code is what tests, logs, metric labels and problem bodies use, so it is
an enum and never free text. Messages name the failed check and never echo a
header value: a header is client input and may be an attacker's probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["ErrorCode", "EnvelopeError", "ConfigError", "ConfigurationError"]


class ErrorCode(str, Enum):
    """The failed check of SPEC.md section 5, in check order."""

    MISSING_HEADER = "missing_header"
    DUPLICATE_HEADER = "duplicate_header"
    HEADER_TOO_LARGE = "header_too_large"
    MALFORMED_HEADER = "malformed_header"
    UNSUPPORTED_ALG = "unsupported_alg"
    UNKNOWN_KID = "unknown_kid"
    ALG_NOT_ALLOWED_FOR_KEY = "alg_not_allowed_for_key"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_PAYLOAD = "malformed_payload"
    UNSUPPORTED_VERSION = "unsupported_version"
    TIMESTAMP_MISMATCH = "timestamp_mismatch"
    BAD_LIFETIME = "bad_lifetime"
    EXPIRED = "expired"
    ISSUED_IN_FUTURE = "issued_in_future"
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    REQUEST_MISMATCH = "request_mismatch"

    def __str__(self) -> str:
        return self.value


class EnvelopeError(Exception):
    """A failed envelope check.

    ``code`` is the stable :class:`ErrorCode`; ``str(error)`` is a lowercase
    sentence for operators that names the check (and at most a key id or the
    signed audience, which come from the keyring or from the gateway, never
    from unsigned client input).
    """

    __slots__ = ("code", "message")

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EnvelopeError({self.code.value!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EnvelopeError)
            and other.code == self.code
            and other.message == self.message
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))


@dataclass(frozen=True)
class ConfigError:
    """One configuration problem, named by variable. Never contains a value:
    values are keys."""

    variable: str
    problem: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.problem}"


class ConfigurationError(Exception):
    """The configuration has problems; all of them are in ``errors``.

    At start a service reports them and exits with code 2 (see
    :func:`stella_envelope.reload.load_or_exit`).
    """

    def __init__(self, errors: list[ConfigError] | tuple[ConfigError, ...]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))
