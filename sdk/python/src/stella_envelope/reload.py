"""The service configuration as it changes at runtime (SPEC.md section 7.1).

:class:`ConfigHandle` holds one checked, immutable :class:`ServiceConfig`
and replaces it whole on :meth:`ConfigHandle.reload`. A request reads
:meth:`ConfigHandle.current` once and decides with that snapshot from start
to end; reading it takes no lock (a reference read is atomic), so a reload
never blocks or re-decides a request in flight. A reload that finds any
problem keeps the configuration in use.

:func:`start_reload_triggers` adds what makes a service reload: SIGHUP (only
when asked: a library does not take a process signal by default) and a
change of the file ``Router__ConfigFile`` names, found by polling the file's
directory entry from a small thread (no third-party watcher), debounced.

A handle also owns the keys fetched from ``Router__IdentityEnvelopeJwksUrl``
(:class:`~stella_envelope.jwks.JwksKeys`, long-lived state beside the
snapshot): a reload that changes the URL starts a new fetcher and drops the
keys of the old URL; one that changes only the intervals keeps the keys.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Literal, Union

from .config import ServiceConfig, config_file_path, read_config_file
from .errors import ConfigError, ConfigurationError
from .jwks import JwksKeys, JwksSettings

__all__ = [
    "ConfigHandle",
    "ReloadOutcome",
    "ReloadStatus",
    "ReloadTriggers",
    "start_reload_triggers",
    "load_or_exit",
]

logger = logging.getLogger("stella_envelope")

#: Where a handle reads variables: a mapping read afresh on every reload
#: (``os.environ`` by default).
EnvSource = Mapping[str, str]

_FileSignature = Union[tuple[int, ...], None]


def _file_signature(path: Path) -> _FileSignature:
    """What identifies the file's current content without reading it.

    ``os.stat`` looks the name up in its directory each time and follows
    symlinks, so a file renamed into place (a new inode) and a Kubernetes
    ``..data`` symlink swap count as changes, as much as a rewrite in place
    (size, mtime, ctime).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return (-1, e.errno or 0)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class ReloadOutcome:
    """What one :meth:`ConfigHandle.reload` did."""

    #: ``applied``: the new configuration is in use from the next request on;
    #: ``unchanged``: the settings read are the ones in use; ``refused``: a
    #: problem was found and the configuration in use stays.
    kind: Literal["applied", "unchanged", "refused"]
    #: The generation in use after the reload.
    generation: int
    #: The problems, when refused.
    errors: tuple[ConfigError, ...] = ()


@dataclass(frozen=True)
class ReloadStatus:
    """The configuration in use and the history of reloads, read together."""

    config: ServiceConfig
    #: 1 for the configuration loaded at start, plus one per applied reload.
    generation: int
    #: When (unix time) a reload last changed the configuration.
    last_applied: float | None
    #: When a reload was last refused.
    last_rejected: float | None
    #: The problems of the latest reload if it was refused; ``None`` once a
    #: later reload succeeds (applied or unchanged).
    last_errors: tuple[ConfigError, ...] | None


def _describe(config: ServiceConfig) -> str:
    # Kids only, never key material (nor the JWKS URL, which may hold a token).
    return (
        f"enabled={'true' if config.enabled else 'false'} mode={config.mode.value} "
        f"accepted_kids={','.join(config.accepted_kids)}"
        + (" jwks=on" if config.jwks is not None else "")
    )


def _jwks_for(settings: JwksSettings | None, current: JwksKeys | None) -> JwksKeys | None:
    """The fetcher for ``settings``: the current one when the URL is the
    same (retuned if the intervals changed), else a new one."""
    if settings is None:
        return None
    if current is not None and current.settings.url == settings.url:
        if current.settings != settings:
            current.retune(settings.refresh_seconds, settings.cooldown_seconds)
        return current
    return JwksKeys(settings)


class ConfigHandle:
    """The reloadable service configuration, shared by the middleware (which
    reads it per request) and the triggers (which reload it)."""

    def __init__(self, config: ServiceConfig, env: EnvSource | None = None) -> None:
        """A handle starting at ``config``; :meth:`reload` reads ``env``
        (``None``: the process environment). Usually built by :meth:`load`."""
        self._env = env
        self._config_file = config_file_path(self._read_env())
        # The configuration and the fetcher of its JWKS, swapped together.
        self._live: tuple[ServiceConfig, JwksKeys | None] = (config, _jwks_for(config.jwks, None))
        self._file_signature_at_load = (
            _file_signature(self._config_file) if self._config_file else None
        )
        # Held for a whole reload, so reloads apply in the order they read.
        self._reloading = threading.Lock()
        # Held only to swap and record, so status() never waits on file I/O.
        self._state = threading.Lock()
        self._generation = 1
        self._last_applied: float | None = None
        self._last_rejected: float | None = None
        self._last_errors: tuple[ConfigError, ...] | None = None

    @classmethod
    def load(cls, env: EnvSource | None = None) -> ConfigHandle:
        """Loads the configuration from ``env`` (default: the process
        environment, read again on every reload) and the file
        ``Router__ConfigFile`` names. Raises :class:`ConfigurationError` with
        every problem; a service reports them and exits 2
        (:func:`load_or_exit`)."""
        entries = dict(os.environ if env is None else env)
        path = config_file_path(entries)
        # Taken before the read: a change between the two is seen by the
        # watcher as a change, never missed.
        signature = _file_signature(path) if path else None
        config = ServiceConfig.from_env_and_file(
            entries, read_config_file(path) if path else None
        )
        handle = cls(config, env)
        handle._file_signature_at_load = signature
        return handle

    def _read_env(self) -> list[tuple[str, str]]:
        return list((os.environ if self._env is None else self._env).items())

    def current(self) -> ServiceConfig:
        """The configuration in use now. A request calls this once and keeps
        the snapshot until it is answered."""
        return self._live[0]

    def current_with_jwks(self) -> tuple[ServiceConfig, JwksKeys | None]:
        """:meth:`current` and the fetcher of its JWKS keys (``None`` without
        ``Router__IdentityEnvelopeJwksUrl``), read together."""
        return self._live

    @property
    def jwks(self) -> JwksKeys | None:
        """The fetcher of the JWKS keys in use, if a JWKS URL is configured."""
        return self._live[1]

    def close(self) -> None:
        """Stops fetching JWKS keys. The configuration stays readable."""
        jwks = self._live[1]
        if jwks is not None:
            jwks.close()

    @property
    def config_file(self) -> Path | None:
        """The file ``Router__ConfigFile`` named at load, watched by the
        triggers."""
        return self._config_file

    def status(self) -> ReloadStatus:
        """The configuration in use with its generation and the last
        reloads, consistent with each other."""
        with self._state:
            return ReloadStatus(
                config=self._live[0],
                generation=self._generation,
                last_applied=self._last_applied,
                last_rejected=self._last_rejected,
                last_errors=self._last_errors,
            )

    def reload(self) -> ReloadOutcome:
        """Re-reads the environment and the config file and, if every setting
        checks, swaps the new configuration in for the next request.

        On any problem the configuration in use stays and each problem is
        logged as ``VARIABLE: problem``, never with a value. Settings equal
        to those in use change nothing (``unchanged``). Blocking (reads a
        file): call it off an event loop.
        """
        with self._reloading:
            try:
                env = self._read_env()
                path = config_file_path(env)
                text = read_config_file(path) if path else None
                config = ServiceConfig.from_env_and_file(env, text)
            except ConfigurationError as e:
                return self._refused(e.errors)
            with self._state:
                self._last_errors = None
                previous, previous_jwks = self._live
                if config.same_settings(previous):
                    logger.info(
                        "envelope configuration reloaded: unchanged (generation=%d mode=%s)",
                        self._generation,
                        config.mode.value,
                        extra={"generation": self._generation, "outcome": "unchanged"},
                    )
                    return ReloadOutcome("unchanged", self._generation)
                self._generation += 1
                self._last_applied = time.time()
                jwks = _jwks_for(config.jwks, previous_jwks)
                self._live = (config, jwks)
                if previous_jwks is not None and previous_jwks is not jwks:
                    # A request still holding it reads its keys; it fetches no more.
                    previous_jwks.close(timeout=0)
                logger.info(
                    "envelope configuration reloaded: applied (generation=%d %s)",
                    self._generation,
                    _describe(config),
                    extra={"generation": self._generation, "outcome": "applied"},
                )
                return ReloadOutcome("applied", self._generation)

    def _refused(self, errors: tuple[ConfigError, ...]) -> ReloadOutcome:
        with self._state:
            self._last_rejected = time.time()
            self._last_errors = errors
            for error in errors:
                logger.error(
                    "envelope configuration reload refused, the configuration in use "
                    "stays (generation=%d mode=%s): %s",
                    self._generation,
                    self._live[0].mode.value,
                    error,
                    extra={"variable": error.variable, "outcome": "refused"},
                )
            return ReloadOutcome("refused", self._generation, errors)


def load_or_exit(env: EnvSource | None = None) -> ConfigHandle:
    """:meth:`ConfigHandle.load` for a service's start: on any problem, print
    each as ``VARIABLE: problem`` to stderr and exit with code 2 (invalid
    configuration), before any port is bound."""
    try:
        return ConfigHandle.load(env)
    except ConfigurationError as e:
        for error in e.errors:
            print(f"stella-envelope: {error}", file=sys.stderr)
        raise SystemExit(2) from None


_STOP = object()


class ReloadTriggers:
    """Running reload triggers; :meth:`stop` ends them. Also a context
    manager. Reloads run one at a time on the triggers' own thread, so a
    burst of triggers is at most one reload in progress and one queued."""

    def __init__(
        self,
        handle: ConfigHandle,
        *,
        sighup: bool,
        watch_file: bool,
        debounce: float,
        poll_interval: float,
    ) -> None:
        self._handle = handle
        self._debounce = debounce
        self._poll_interval = poll_interval
        # SimpleQueue.put is reentrant, so the signal handler may call it
        # even when it interrupts the thread that is inside put or get.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._previous_sighup: Any = None
        self._sighup_handler: Callable[[int, FrameType | None], None] | None = None
        self._sighup_installed = False
        self._watched_file = handle.config_file if watch_file else None
        self._worker = threading.Thread(
            target=self._run_reloads, name="stella-envelope-reload", daemon=True
        )
        self._watcher: threading.Thread | None = None
        if self._watched_file is not None:
            self._watcher = threading.Thread(
                target=self._watch, name="stella-envelope-watch", daemon=True
            )
        if sighup:
            self._install_sighup()
        self._worker.start()
        if self._watcher is not None:
            self._watcher.start()

    @property
    def watched_file(self) -> Path | None:
        """The file whose changes reload the configuration, if one is watched."""
        return self._watched_file

    def _install_sighup(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the SIGHUP trigger must be installed from the main thread")

        def on_sighup(signum: int, frame: FrameType | None) -> None:
            # Runs in the main thread between bytecodes: only hand over, never
            # reload here (the main thread might hold the reload lock).
            self._queue.put("SIGHUP")

        self._previous_sighup = signal.signal(signal.SIGHUP, on_sighup)
        self._sighup_handler = on_sighup
        self._sighup_installed = True

    def _run_reloads(self) -> None:
        while True:
            trigger = self._queue.get()
            if trigger is _STOP:
                return
            # One reload covers every trigger that arrived before it starts.
            try:
                while True:
                    more = self._queue.get_nowait()
                    if more is _STOP:
                        return
            except queue.Empty:
                pass
            logger.info("reloading envelope configuration (trigger=%s)", trigger)
            try:
                self._handle.reload()
            except Exception:  # a bug in reload must not end the triggers
                logger.exception("envelope configuration reload failed unexpectedly")

    def _watch(self) -> None:
        path = self._watched_file
        assert path is not None
        seen = self._handle._file_signature_at_load
        first_change: float | None = None
        last_change = 0.0
        while not self._stopping.wait(self._poll_interval):
            signature = _file_signature(path)
            now = time.monotonic()
            if signature != seen:
                seen = signature
                last_change = now
                if first_change is None:
                    first_change = now
            if first_change is None:
                continue
            # Quiet for `debounce`, or at most ten of them under a steady
            # stream of changes.
            quiet = now - last_change >= self._debounce
            overdue = now - first_change >= 10 * self._debounce
            if quiet or overdue:
                first_change = None
                self._queue.put("file change")

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the watcher and the reload thread, and puts back the SIGHUP
        handler that was there before (when called from the main thread)."""
        self._stopping.set()
        self._queue.put(_STOP)
        if self._watcher is not None:
            self._watcher.join(timeout)
        self._worker.join(timeout)
        if self._sighup_installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGHUP) is self._sighup_handler:
                signal.signal(signal.SIGHUP, self._previous_sighup)
            self._sighup_installed = False

    def __enter__(self) -> ReloadTriggers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_reload_triggers(
    handle: ConfigHandle,
    *,
    sighup: bool = False,
    watch_file: bool = True,
    debounce: float = 0.2,
    poll_interval: float = 0.05,
) -> ReloadTriggers:
    """Starts reloading ``handle`` when its file changes and, with
    ``sighup=True``, on SIGHUP.

    ``sighup=True`` must be called from the main thread; from then on SIGHUP
    reloads and never ends the process. The file (when ``Router__ConfigFile``
    names one) is polled every ``poll_interval`` seconds by name, so a file
    renamed into place counts as much as one rewritten; a burst of changes
    is one reload once the file has been quiet for ``debounce`` seconds.
    """
    return ReloadTriggers(
        handle,
        sighup=sighup,
        watch_file=watch_file,
        debounce=debounce,
        poll_interval=poll_interval,
    )
