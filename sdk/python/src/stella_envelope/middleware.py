"""What the ASGI and WSGI middleware share: one decision per request, made
with one configuration snapshot, mirroring the Rust ``EnvelopeLayer``.

The adapters are the shell: they read the clock and the request, call
:func:`evaluate`, answer a :class:`~stella_envelope.trust.Rejection`
themselves and hand everything else to the application with an
:data:`EnvelopeOutcome`. A handler only ever sees an identity that passed
every check and that the trust mode lets it use; in ``ServiceEnforced`` a
valid envelope is not exposed at all.

With a JWKS URL, an EdDSA envelope whose kid no key has (in ``Hybrid`` and
``GatewayEnforced``) asks the fetcher for a refetch and waits for it at most
:data:`~stella_envelope.jwks.UNKNOWN_KID_WAIT_SECS`, then is checked again
with the keys then known: a blocking wait for WSGI (:func:`evaluate`), an
awaited one for ASGI (:func:`evaluate_async`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, Union

from .config import ServiceConfig
from .errors import EnvelopeError, ErrorCode
from .format import HeaderFields, extract_headers
from .jwks import UNKNOWN_KID_WAIT_SECS, JwksKeys
from .keys import KeyProblem, check_kid
from .reload import ConfigHandle
from .trust import Reject, Rejection, ServiceAuth, TrustMode, UseEnvelope, decide
from .verify import EnvelopeCheck, Invalid, VerifiedEnvelope, check_request

__all__ = [
    "Trusted",
    "NeedsServiceAuth",
    "EnvelopeOutcome",
    "ConfigSource",
    "evaluate",
    "evaluate_async",
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


#: What a request is decided with: the configuration and, when it names a
#: JWKS URL, the fetcher of its keys.
Live = tuple[ServiceConfig, Union[JwksKeys, None]]


def live_of(source: ConfigSource) -> Callable[[], Live]:
    """A function returning the configuration and JWKS fetcher for the next
    request. A fixed configuration with a JWKS URL is refused: only a
    :class:`~stella_envelope.reload.ConfigHandle` fetches keys, and a
    service that silently never fetched them would refuse every envelope
    they sign."""
    if isinstance(source, ConfigHandle):
        return source.current_with_jwks
    if isinstance(source, ServiceConfig):
        if source.jwks is not None:
            raise ValueError(
                "a configuration with Router__IdentityEnvelopeJwksUrl needs a ConfigHandle, "
                "which fetches the keys"
            )
        fixed: Live = (source, None)
        return lambda: fixed
    raise TypeError("config must be a ConfigHandle or a ServiceConfig")


def unix_now() -> int:
    """The wall clock in whole unix seconds, the unit of ``iat``/``exp``."""
    return int(time.time())


def _refetch_for(
    config: ServiceConfig, jwks: JwksKeys | None, headers: HeaderFields, check: EnvelopeCheck
) -> threading.Event | None:
    """The fetch to wait for before checking again, when the envelope's kid
    is unknown and the JWKS could still bring it: an EdDSA envelope (the
    only keys a JWKS lists) with a well-formed kid, in a mode that uses
    envelopes. ``None``: decide now."""
    if jwks is None or config.mode is TrustMode.SERVICE_ENFORCED:
        return None
    if not isinstance(check, Invalid) or check.error.code is not ErrorCode.UNKNOWN_KID:
        return None
    found = extract_headers(headers)  # checked already: cannot fail here
    if found is None or found.alg != "EdDSA":
        return None
    try:
        check_kid(found.kid)
    except KeyProblem:
        return None
    return jwks.refetch_for_unknown_kid()


def _replayable(headers: HeaderFields) -> HeaderFields:
    # A one-shot iterator would be empty when checked a second time.
    return list(headers) if isinstance(headers, Iterator) else headers


def evaluate(
    config: ServiceConfig,
    headers: HeaderFields,
    method: str,
    path: str,
    now: int,
    *,
    jwks: JwksKeys | None = None,
) -> EnvelopeOutcome | Rejection:
    """Checks a request's envelope and applies the trust mode.

    Returns the outcome for the application, or the rejection to answer
    instead of calling it. Never raises for any request. Logs ignored and
    rejected envelopes with the mode and the code, never a header value.
    With ``jwks``, its keys are accepted after the configured ones, and an
    unknown kid may block this thread up to
    :data:`~stella_envelope.jwks.UNKNOWN_KID_WAIT_SECS` for a refetch.
    """
    if not config.enabled:
        return NeedsServiceAuth(None)
    headers = _replayable(headers)
    keys = jwks.keys() if jwks is not None else None
    check = check_request(config.verifier, headers, method, path, now, keys)
    fetched = _refetch_for(config, jwks, headers, check)
    if fetched is not None and jwks is not None:
        fetched.wait(UNKNOWN_KID_WAIT_SECS)
        check = check_request(config.verifier, headers, method, path, now, jwks.keys())
    return _conclude(config, check)


async def evaluate_async(
    config: ServiceConfig,
    headers: HeaderFields,
    method: str,
    path: str,
    now: int,
    *,
    jwks: JwksKeys | None = None,
) -> EnvelopeOutcome | Rejection:
    """:func:`evaluate` for an event loop: a wait for a refetch is awaited
    (on a worker thread), never blocking the loop."""
    if not config.enabled:
        return NeedsServiceAuth(None)
    headers = _replayable(headers)
    keys = jwks.keys() if jwks is not None else None
    check = check_request(config.verifier, headers, method, path, now, keys)
    fetched = _refetch_for(config, jwks, headers, check)
    if fetched is not None and jwks is not None:
        await asyncio.to_thread(fetched.wait, UNKNOWN_KID_WAIT_SECS)
        check = check_request(config.verifier, headers, method, path, now, jwks.keys())
    return _conclude(config, check)


def _conclude(config: ServiceConfig, check: EnvelopeCheck) -> EnvelopeOutcome | Rejection:
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
        self._live = live_of(config)
        self._clock = clock
