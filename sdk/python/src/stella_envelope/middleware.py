"""What the ASGI and WSGI middleware share: one decision per request, made
with one configuration snapshot, mirroring the Rust ``EnvelopeLayer``.

The adapters are the shell: they read the clock and the request, call
:func:`evaluate`, answer a :class:`~stella_envelope.trust.Rejection`
themselves and hand everything else to the application with an
:data:`EnvelopeOutcome`. A handler only ever sees an identity that passed
every check and that the trust mode lets it use; in ``ServiceEnforced`` a
valid envelope is not exposed at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, Union

from .config import ServiceConfig
from .errors import EnvelopeError
from .format import HeaderFields
from .reload import ConfigHandle
from .trust import Reject, Rejection, ServiceAuth, UseEnvelope, decide
from .verify import VerifiedEnvelope, check_request

__all__ = [
    "Trusted",
    "NeedsServiceAuth",
    "EnvelopeOutcome",
    "ConfigSource",
    "evaluate",
    "snapshot_of",
    "unix_now",
    "Middleware",
]

logger = logging.getLogger("stella_envelope")


@dataclass(frozen=True)
class Trusted:
    """A valid envelope, trusted in this trust mode."""

    envelope: VerifiedEnvelope

    @property
    def identity(self) -> VerifiedEnvelope:
        return self.envelope


@dataclass(frozen=True)
class NeedsServiceAuth:
    """The application must authenticate the caller itself.
    ``ignored_invalid`` is set when an invalid envelope was ignored
    (``ServiceEnforced``)."""

    ignored_invalid: EnvelopeError | None = None

    @property
    def identity(self) -> None:
        return None


#: What the middleware concluded for a request (Rust ``EnvelopeOutcome``).
EnvelopeOutcome = Union[Trusted, NeedsServiceAuth]

#: A fixed configuration, or a handle that may be reloaded.
ConfigSource = Union[ConfigHandle, ServiceConfig]


def snapshot_of(source: ConfigSource) -> Callable[[], ServiceConfig]:
    """A function returning the configuration to use for the next request."""
    if isinstance(source, ConfigHandle):
        return source.current
    if isinstance(source, ServiceConfig):
        return lambda: source
    raise TypeError("config must be a ConfigHandle or a ServiceConfig")


def unix_now() -> int:
    """The wall clock in whole unix seconds, the unit of ``iat``/``exp``."""
    return int(time.time())


def evaluate(
    config: ServiceConfig, headers: HeaderFields, method: str, path: str, now: int
) -> EnvelopeOutcome | Rejection:
    """Checks a request's envelope and applies the trust mode.

    Returns the outcome for the application, or the rejection to answer
    instead of calling it. Never raises for any request. Logs ignored and
    rejected envelopes with the mode and the code, never a header value.
    """
    if not config.enabled:
        return NeedsServiceAuth(None)
    check = check_request(config.verifier, headers, method, path, now)
    action = decide(config.mode, check)
    if isinstance(action, UseEnvelope):
        return Trusted(action.envelope)
    if isinstance(action, ServiceAuth):
        if action.ignored is not None:
            logger.warning(
                "invalid envelope ignored (mode=%s code=%s): %s",
                config.mode.value,
                action.ignored.code.value,
                action.ignored,
                extra={"envelope_error": action.ignored.code.value},
            )
        return NeedsServiceAuth(action.ignored)
    assert isinstance(action, Reject)
    rejection = action.rejection
    if rejection.cause is not None:
        logger.warning(
            "envelope rejected (mode=%s code=%s): %s",
            config.mode.value,
            rejection.cause.code.value,
            rejection.cause,
            extra={"envelope_error": rejection.cause.code.value},
        )
    return rejection


AppT = TypeVar("AppT")


class Middleware(Generic[AppT]):
    """The state both adapters keep: the wrapped application, where the
    configuration comes from, and the clock.

    ``config`` is a :class:`~stella_envelope.reload.ConfigHandle` (reloadable:
    read once per request) or a fixed
    :class:`~stella_envelope.config.ServiceConfig`. ``clock`` returns unix
    seconds; tests inject one.
    """

    def __init__(
        self,
        app: AppT,
        config: ConfigSource,
        *,
        clock: Callable[[], int] = unix_now,
    ) -> None:
        self.app = app
        self._snapshot = snapshot_of(config)
        self._clock = clock
