"""Envelope keys fetched from a JWKS URL (SPEC.md section 7.6).

Two parts. :func:`parse_jwks` is pure: the bytes of a JWK Set in, a
:class:`~stella_envelope.keys.Keyring` of its Ed25519 keys out, or
:class:`JwksProblem` for a document that must not be used. :class:`JwksKeys`
is the shell: one background thread fetches the URL at start, every
``refresh_seconds`` after a success, sooner after a failure, and on demand
when an envelope names a kid nobody knows (at most once per
``cooldown_seconds``). Fetches never overlap: the thread is the only one
that fetches, so concurrent requests for a refetch share one.

The key set in use is one immutable :class:`Keyring` swapped whole, so a
reader takes no lock and never sees half a set. A failed fetch keeps the
last good set. Nothing here logs key material or the URL (it may carry a
token); problems name ``Router__IdentityEnvelopeJwksUrl``.
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .encoding import DecodeError, b64url_decode, loads_strict_object
from .keys import Key, KeyProblem, Keyring, check_kid

__all__ = [
    "DEFAULT_JWKS_COOLDOWN_SECS",
    "DEFAULT_JWKS_REFRESH_SECS",
    "JWKS_FETCH_TIMEOUT_SECS",
    "JWKS_MAX_BYTES",
    "UNKNOWN_KID_WAIT_SECS",
    "JwksKeys",
    "JwksProblem",
    "JwksSettings",
    "check_jwks_url",
    "fetch_jwks",
    "parse_jwks",
]

logger = logging.getLogger("stella_envelope")

#: Default time between two fetches after a successful one.
DEFAULT_JWKS_REFRESH_SECS = 300
#: Default shortest time between two refetches caused by unknown kids.
DEFAULT_JWKS_COOLDOWN_SECS = 30
#: Longest a fetch may take, connection and body included.
JWKS_FETCH_TIMEOUT_SECS = 5.0
#: Largest JWKS document accepted, in bytes.
JWKS_MAX_BYTES = 64 * 1024
#: Longest a request with an unknown kid waits for a fetch before it is
#: refused with ``unknown_kid``.
UNKNOWN_KID_WAIT_SECS = 2.0

_ENV_URL = "Router__IdentityEnvelopeJwksUrl"


class JwksProblem(ValueError):
    """Why a JWKS URL, a fetch or a document was refused. Never carries key
    material, the URL or the document."""


@dataclass(frozen=True)
class JwksSettings:
    """Where the JWKS is and how often it is fetched: plain, checked data."""

    url: str
    refresh_seconds: float = DEFAULT_JWKS_REFRESH_SECS
    cooldown_seconds: float = DEFAULT_JWKS_COOLDOWN_SECS

    def __repr__(self) -> str:  # the URL may carry a token in its query
        return (
            f"JwksSettings(url=<{urlsplit(self.url).hostname}>, "
            f"refresh_seconds={self.refresh_seconds}, cooldown_seconds={self.cooldown_seconds})"
        )


def check_jwks_url(text: str) -> str:
    """Returns ``text`` if it is an absolute ``http`` or ``https`` URL with a
    host and no credentials; raises :class:`JwksProblem` (without the text)
    otherwise."""
    problem = JwksProblem("must be an http or https URL with a host")
    if any(not 0x21 <= ord(c) <= 0x7E for c in text):
        raise problem
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise problem from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise problem
    if parts.username is not None or parts.password is not None:
        raise JwksProblem("must not carry credentials (user:password@)")
    return text


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_jwks(data: bytes) -> Keyring:
    """The Ed25519 envelope keys of a JWK Set (RFC 7517), as a keyring.

    Used: ``kty`` ``OKP``, ``crv`` ``Ed25519``, ``alg`` absent or ``EdDSA``,
    ``use`` absent or ``sig``, with a ``kid`` that is a valid envelope key id.
    Skipped, not fatal: any other key (ES256 and RSA keys, encryption keys,
    keys without a kid). Refused, the whole document: anything that is not
    a strict JSON object with a ``keys`` array of objects, a ``kid`` that is
    not a string, two keys with one kid, and a used key whose ``x`` is not
    32 bytes of canonical base64url or that carries a private part (``d``).
    """
    if len(data) > JWKS_MAX_BYTES:
        raise JwksProblem(f"document is larger than {JWKS_MAX_BYTES} bytes")
    try:
        document = loads_strict_object(data)
    except DecodeError as e:
        raise JwksProblem(f"document is not a strict json object ({e})") from None
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise JwksProblem("document has no keys array")
    seen: set[str] = set()
    keys: list[Key] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise JwksProblem(f"keys[{index}] is not an object")
        if "kid" not in entry:
            continue
        kid = _string(entry["kid"])
        if kid is None:
            raise JwksProblem(f"keys[{index}] has a kid that is not a string")
        if kid in seen:
            # The kid alone selects the key: with two, which one signs?
            raise JwksProblem(f"key id {_shown(kid)} appears more than once")
        seen.add(kid)
        used = (
            entry.get("kty") == "OKP"
            and entry.get("crv") == "Ed25519"
            and entry.get("alg", "EdDSA") == "EdDSA"
            and entry.get("use", "sig") == "sig"
        )
        if not used:
            continue
        try:
            check_kid(kid)
        except KeyProblem:
            continue  # no envelope can name it
        if "d" in entry:
            raise JwksProblem(f"key {kid} is a private key")
        x = _string(entry.get("x"))
        try:
            material = b64url_decode(x) if x is not None else None
        except DecodeError:
            material = None
        if material is None or len(material) != 32:
            raise JwksProblem(f"key {kid} has no x of 32 bytes in canonical base64url")
        try:
            keys.append(Key.parse(kid, "ed25519-public:" + x))  # type: ignore[operator]
        except KeyProblem as e:
            raise JwksProblem(f"key {kid}: {e}") from None
    return Keyring(keys)


def _shown(kid: str) -> str:
    # A kid from the document is shown only when it is a valid key id.
    try:
        return check_kid(kid)
    except KeyProblem:
        return "(not a valid key id)"


def fetch_jwks(
    url: str, timeout: float = JWKS_FETCH_TIMEOUT_SECS, max_bytes: int = JWKS_MAX_BYTES
) -> bytes:
    """GETs ``url`` and returns the body of a 200 response.

    The whole exchange has ``timeout`` seconds; redirects are not followed
    and proxy variables are not used (the JWKS is the gateway's own admin
    listener). Raises :class:`JwksProblem` for every failure.
    """
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        connection.connect()
        sock = connection.sock
        connection.request(
            "GET",
            target,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "User-Agent": "stella-envelope-python",
            },
        )
        response = connection.getresponse()
        if response.status != 200:
            raise JwksProblem(f"http status {response.status}")
        length = response.getheader("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise JwksProblem(f"document is larger than {max_bytes} bytes")
        body = bytearray()
        # The response closes the socket once the body is complete.
        while not response.isclosed():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JwksProblem(f"timed out after {timeout:g} s")
            # The socket timeout bounds each read, the deadline their sum;
            # read1 returns what one read brings, so a server sending a byte
            # at a time cannot stretch a read.
            sock.settimeout(remaining)
            chunk = response.read1(min(16384, max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise JwksProblem(f"document is larger than {max_bytes} bytes")
        return bytes(body)
    except JwksProblem:
        raise
    except TimeoutError:
        raise JwksProblem(f"timed out after {timeout:g} s") from None
    except ssl.SSLError as e:
        raise JwksProblem(f"tls: {e.reason or type(e).__name__}") from None
    except (OSError, http.client.HTTPException) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise JwksProblem(f"connection: {why}") from None
    finally:
        connection.close()


def _plain_http_off_loopback(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    return parts.scheme.lower() == "http" and not loopback


# Live caches, so a forked child (gunicorn --preload) restarts their threads.
_LIVE: weakref.WeakSet[JwksKeys] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for keys in list(_LIVE):
        keys._restart_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class JwksKeys:
    """The keys of one JWKS URL, kept fresh by a daemon thread.

    :meth:`keys` is the set in use (empty until the first successful
    fetch). :meth:`refetch_for_unknown_kid` asks for an early fetch; the
    middleware calls it for an envelope whose kid no key has, and waits at
    most :data:`UNKNOWN_KID_WAIT_SECS` for it. :meth:`close` stops the
    thread. ``fetch`` and ``clock`` (monotonic seconds) are for tests.
    """

    def __init__(
        self,
        settings: JwksSettings,
        *,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._fetch = fetch or (lambda url: fetch_jwks(url))
        self._clock = clock
        self._keys = Keyring()
        self._fetched_at: float | None = None  # wall clock of the last success
        self._last_error: str | None = None
        self._fetches = 0
        self._cond = threading.Condition()
        self._closed = False
        # The fetch running now, and the one asked for next: each an Event
        # set when that fetch has ended, so waiters share it.
        self._in_flight: threading.Event | None = None
        self._requested: threading.Event | None = None
        self._last_on_demand: float | None = None
        # When the last fetch ended and whether it worked: what the next
        # one is scheduled from.
        self._last_end: float | None = None
        self._last_ok = False
        self._next_due = clock()  # fetch at once
        self._thread = self._start_thread()
        _LIVE.add(self)
        if _plain_http_off_loopback(settings.url):
            logger.warning(
                "envelope JWKS: %s is plain http to another host: whoever can alter that "
                "traffic can add a key (use https, or a network path you trust)",
                _ENV_URL,
                extra={"jwks_outcome": "plain_http"},
            )

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="stella-envelope-jwks", daemon=True)
        thread.start()
        return thread

    def _restart_after_fork(self) -> None:
        # The parent's thread does not exist here, and it may have held the
        # lock at the fork: start over with the keys already fetched.
        self._cond = threading.Condition()
        self._in_flight = None
        self._requested = None
        if not self._closed:
            self._thread = self._start_thread()

    @property
    def settings(self) -> JwksSettings:
        return self._settings

    def keys(self) -> Keyring:
        """The key set in use now: one immutable keyring, read without a lock."""
        return self._keys

    @property
    def fetched_at(self) -> float | None:
        """Unix time of the last successful fetch; ``None`` before the first."""
        return self._fetched_at

    @property
    def last_error(self) -> str | None:
        """Why the latest fetch failed; ``None`` once one succeeds."""
        return self._last_error

    @property
    def fetches(self) -> int:
        """How many fetches have ended, successful or not."""
        return self._fetches

    def retune(self, refresh_seconds: float, cooldown_seconds: float) -> None:
        """New intervals for the same URL (a reload that changed only them):
        the keys already fetched stay, and the next fetch is due the new
        interval after the last one ended."""
        with self._cond:
            self._settings = JwksSettings(self._settings.url, refresh_seconds, cooldown_seconds)
            if self._last_end is not None:
                self._next_due = self._last_end + self._interval(self._last_ok)
            self._cond.notify()

    def _interval(self, ok: bool) -> float:
        # After a failure, retry sooner: the cooldown, if shorter.
        settings = self._settings
        if ok:
            return settings.refresh_seconds
        return min(settings.cooldown_seconds, settings.refresh_seconds)

    def refetch_for_unknown_kid(self) -> threading.Event | None:
        """Asks for a fetch because an envelope named an unknown kid.

        Returns an event set when the fetch that will answer has ended: the
        one in flight if there is one, else a new one, at most one per
        cooldown. ``None`` within the cooldown (the caller answers
        ``unknown_kid`` at once) or once closed.
        """
        with self._cond:
            if self._closed:
                return None
            if self._in_flight is not None:
                return self._in_flight
            if self._requested is not None:
                return self._requested
            now = self._clock()
            last = self._last_on_demand
            if last is not None and now < last + self._settings.cooldown_seconds:
                return None
            self._last_on_demand = now
            self._requested = threading.Event()
            self._cond.notify()
            return self._requested

    def close(self, timeout: float = 1.0) -> None:
        """Stops the thread. A fetch in flight is abandoned, never applied."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            waiting = [e for e in (self._in_flight, self._requested) if e is not None]
        for event in waiting:
            event.set()
        _LIVE.discard(self)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._requested is None:
                    delay = self._next_due - self._clock()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._closed:
                    return
                done = self._requested or threading.Event()
                self._requested = None
                self._in_flight = done
                url = self._settings.url
            ok = self._fetch_once(url)
            with self._cond:
                self._in_flight = None
                self._last_end, self._last_ok = self._clock(), ok
                self._next_due = self._last_end + self._interval(ok)
            done.set()

    def _fetch_once(self, url: str) -> bool:
        try:
            keys = parse_jwks(self._fetch(url))
        except JwksProblem as e:
            problem = str(e)
        except Exception as e:  # a bug in an injected fetch must not end the thread
            problem = f"unexpected {type(e).__name__}"
        else:
            with self._cond:
                if self._closed:
                    return True
                previous = self._keys if self._fetched_at is not None else None
                self._keys = keys
                self._fetched_at = time.time()
                self._last_error = None
                self._fetches += 1
            if previous is None or not keys.same_keys(previous):
                logger.info(
                    "envelope JWKS fetched from %s: kids=%s",
                    _ENV_URL,
                    ",".join(keys) or "-",
                    extra={"jwks_outcome": "fetched"},
                )
            return True
        with self._cond:
            self._last_error = problem
            self._fetches += 1
            kept = len(self._keys)
            fetched_at = self._fetched_at
        kept_text = (
            f"keeping {kept} keys fetched {int(time.time() - fetched_at)} s ago"
            if fetched_at is not None
            else "no keys fetched yet"
        )
        logger.warning(
            "envelope JWKS fetch from %s failed, %s: %s",
            _ENV_URL,
            kept_text,
            problem,
            extra={"jwks_outcome": "failed"},
        )
        return False
