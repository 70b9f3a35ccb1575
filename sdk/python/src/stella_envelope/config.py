"""Service configuration from the ``Router__*`` variables (SPEC.md section 7)
and the env-file ``Router__ConfigFile`` names (section 7.1).

Everything here is pure: the environment is passed in as a mapping and the
file as its text, so every rule is tested without touching the process.
:mod:`stella_envelope.reload` reads the real environment and the file.

Problems are collected, not raised one at a time: an operator fixes a
deployment in one pass. A problem names the variable (and for the file the
line) and never shows a value, because values are keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .encoding import rust_trim, rust_trim_start
from .errors import ConfigError, ConfigurationError
from .jwks import (
    DEFAULT_JWKS_COOLDOWN_SECS,
    DEFAULT_JWKS_REFRESH_SECS,
    JwksProblem,
    JwksSettings,
    check_jwks_url,
)
from .keys import Key, KeyProblem, Keyring, check_kid
from .trust import TrustMode
from .verify import DEFAULT_CLOCK_SKEW_SECS, DEFAULT_MAX_LIFETIME_SECS, Verifier, VerifierSettings

__all__ = [
    "ENV_ENABLED",
    "ENV_TRUST_MODE",
    "ENV_SIGNING_KEY",
    "ENV_SIGNING_KEY_ID",
    "ENV_ACCEPTED_KEYS",
    "ENV_CLOCK_SKEW",
    "ENV_MAX_LIFETIME",
    "ENV_AUDIENCE",
    "ENV_ISSUER",
    "ENV_JWKS_URL",
    "ENV_JWKS_REFRESH",
    "ENV_JWKS_COOLDOWN",
    "ENV_CONFIG_FILE",
    "FILE_VARIABLES",
    "FileEntry",
    "ServiceConfig",
    "fold_env_name",
    "parse_config_file",
    "config_file_path",
    "read_config_file",
]

ENV_ENABLED = "Router__Enabled"
ENV_TRUST_MODE = "Router__AuthorizationTrustMode"
ENV_SIGNING_KEY = "Router__IdentityEnvelopeSigningKey"
ENV_SIGNING_KEY_ID = "Router__IdentityEnvelopeSigningKeyId"
ENV_ACCEPTED_KEYS = "Router__IdentityEnvelopeAcceptedKeys"
ENV_CLOCK_SKEW = "Router__IdentityEnvelopeClockSkewSeconds"
ENV_MAX_LIFETIME = "Router__IdentityEnvelopeMaxLifetimeSeconds"
ENV_AUDIENCE = "Router__IdentityEnvelopeAudience"
ENV_ISSUER = "Router__IdentityEnvelopeIssuer"
ENV_JWKS_URL = "Router__IdentityEnvelopeJwksUrl"
ENV_JWKS_REFRESH = "Router__IdentityEnvelopeJwksRefreshSeconds"
ENV_JWKS_COOLDOWN = "Router__IdentityEnvelopeJwksCooldownSeconds"
ENV_CONFIG_FILE = "Router__ConfigFile"

#: What a ``Router__ConfigFile`` may set: every setting but itself.
FILE_VARIABLES: tuple[str, ...] = (
    ENV_ENABLED,
    ENV_TRUST_MODE,
    ENV_SIGNING_KEY,
    ENV_SIGNING_KEY_ID,
    ENV_ACCEPTED_KEYS,
    ENV_CLOCK_SKEW,
    ENV_MAX_LIFETIME,
    ENV_AUDIENCE,
    ENV_ISSUER,
    ENV_JWKS_URL,
    ENV_JWKS_REFRESH,
    ENV_JWKS_COOLDOWN,
)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SECONDS = re.compile(r"\+?[0-9]+")
_OUR_NAME = re.compile(r"[A-Za-z0-9_]*")


def fold_env_name(name: str) -> str:
    """Folds a variable name for matching: ASCII case-insensitive, ``_``
    ignored, so ``ROUTER__ENABLED`` and ``router_enabled`` both name
    ``Router__Enabled``."""
    return name.replace("_", "").translate(_ASCII_LOWER)


_FOLDED = {fold_env_name(name): name for name in FILE_VARIABLES}
_FOLDED_CONFIG_FILE = fold_env_name(ENV_CONFIG_FILE)

Entries = Iterable[tuple[str, str]]


def _get(entries: list[tuple[str, str]], name: str) -> str | None:
    """The value of the first entry whose name folds to ``name``'s."""
    wanted = fold_env_name(name)
    for key, value in entries:
        if fold_env_name(key) == wanted:
            return value
    return None


@dataclass(frozen=True)
class FileEntry:
    """One setting from a ``Router__ConfigFile``."""

    #: The canonical name (one of :data:`FILE_VARIABLES`), whatever spelling
    #: the file used.
    name: str
    #: The value, unquoted. Empty means "not set": the file removes the
    #: variable from the environment (how a key the environment sets is
    #: dropped at the end of a rotation).
    value: str
    #: 1-based line number.
    line: int

    def __repr__(self) -> str:  # values may be keys: never shown
        return f"FileEntry(name={self.name!r}, line={self.line}, value=<redacted>)"


def _unquote(value: str) -> str | None:
    """Removes one pair of matching surrounding quotes; ``None`` when a quote
    opens or closes the value without its partner. Nothing inside is
    unescaped."""
    for quote in ('"', "'"):
        opens = value.startswith(quote)
        closes = len(value) >= 2 and value.endswith(quote)
        if opens and closes:
            return value[1:-1]
        if opens != closes:
            return None
    return value


def _lines(text: str) -> list[str]:
    # Rust's `str::lines`: split on LF, drop one CR before it. `splitlines`
    # would also split on VT, FF, NEL, U+2028... and shift line numbers.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _parse_lines(text: str) -> tuple[list[FileEntry], list[ConfigError]]:
    entries: list[FileEntry] = []
    errors: list[ConfigError] = []

    def fail(line: int, problem: str) -> None:
        errors.append(ConfigError(ENV_CONFIG_FILE, f"line {line}: {problem}"))

    if text.startswith("\ufeff"):
        text = text[1:]
    for number, raw in enumerate(_lines(text), start=1):
        trimmed = rust_trim(raw)
        if not trimmed or trimmed.startswith("#"):
            continue
        statement = trimmed
        if trimmed.startswith(("export ", "export\t")):
            statement = rust_trim_start(trimmed[len("export ") :])
        name, sep, value = statement.partition("=")
        if not sep:
            fail(number, "expected Name=value")
            continue
        name = rust_trim(name)
        folded = fold_env_name(name)
        if folded == _FOLDED_CONFIG_FILE:
            fail(number, f"{ENV_CONFIG_FILE} cannot be set in the file it names")
            continue
        canonical = _FOLDED.get(folded)
        if canonical is None:
            # Only a name that looks like one of ours is shown: anything else
            # may be a value pasted on a line of its own.
            ours = folded.startswith("router") and name.isascii() and _OUR_NAME.fullmatch(name)
            shown = name if ours else "the name"
            fail(number, f"{shown} is not a service envelope variable (SPEC.md section 7)")
            continue
        unquoted = _unquote(rust_trim(value))
        if unquoted is None:
            fail(number, f"the value of {canonical} has an unmatched quote")
            continue
        first = next((e for e in entries if e.name == canonical), None)
        if first is not None:
            fail(number, f"{canonical} is already set on line {first.line}")
            continue
        entries.append(FileEntry(canonical, unquoted, number))
    return entries, errors


def parse_config_file(text: str) -> list[FileEntry]:
    """Parses the text of a ``Router__ConfigFile``: ``Name=value`` lines in
    the env-file format compose and systemd read.

    Blank lines and lines starting with ``#`` are skipped (a ``#`` after a
    value is part of it); ``export`` before a name is allowed; one pair of
    matching quotes around a value is removed. Raises
    :class:`ConfigurationError` with every problem, each as
    ``Router__ConfigFile: line N: ...``.
    """
    entries, errors = _parse_lines(text)
    if errors:
        raise ConfigurationError(errors)
    return entries


def _overlay(env: list[tuple[str, str]], file: list[FileEntry]) -> list[tuple[str, str]]:
    """The environment overlaid by the file: a variable the file sets replaces
    every spelling of it, an empty value removes it, and
    ``Router__ConfigFile`` itself is dropped, having been followed."""
    set_by_file = {fold_env_name(e.name) for e in file}
    kept = [
        (name, value)
        for name, value in env
        if (folded := fold_env_name(name)) != _FOLDED_CONFIG_FILE and folded not in set_by_file
    ]
    return kept + [(e.name, e.value) for e in file if e.value]


def config_file_path(env: Mapping[str, str] | Entries) -> Path | None:
    """The file ``Router__ConfigFile`` names in ``env``; a blank value names
    none."""
    value = _get(_entries(env), ENV_CONFIG_FILE)
    if value is None or not rust_trim(value):
        return None
    return Path(rust_trim(value))


def read_config_file(path: Path) -> str:
    """The file's text. Raises :class:`ConfigurationError` naming
    ``Router__ConfigFile`` and the path (never the content)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigurationError(
            [ConfigError(ENV_CONFIG_FILE, f"cannot read {path}: {why.lower()}")]
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(
            [ConfigError(ENV_CONFIG_FILE, f"cannot read {path}: not valid utf-8")]
        ) from None


def _entries(env: Mapping[str, str] | Entries) -> list[tuple[str, str]]:
    if isinstance(env, Mapping):
        return list(env.items())
    return list(env)


@dataclass(frozen=True)
class ServiceConfig:
    """A service's checked envelope settings: one immutable snapshot.

    Build it with :meth:`from_env_and_file` (pure) or :meth:`load`; a reload
    builds a new one and swaps it whole.
    """

    enabled: bool
    mode: TrustMode
    #: ``None`` when no key and no JWKS URL is configured (only allowed in
    #: ``ServiceEnforced``).
    verifier: Verifier | None
    #: Where more keys are fetched from (``Router__IdentityEnvelopeJwksUrl``);
    #: ``None`` when not set. A :class:`~stella_envelope.reload.ConfigHandle`
    #: fetches them; this snapshot only says where.
    jwks: JwksSettings | None = None

    @property
    def accepted_kids(self) -> tuple[str, ...]:
        """The kids of the accepted keys, sorted."""
        return tuple(self.verifier.keyring) if self.verifier else ()

    def same_settings(self, other: ServiceConfig) -> bool:
        """Whether ``other`` has exactly these settings and keys (secrets
        compared in constant time): a reload to it would change nothing."""
        if self.enabled != other.enabled or self.mode is not other.mode:
            return False
        if self.jwks != other.jwks:
            return False
        if self.verifier is None or other.verifier is None:
            return self.verifier is None and other.verifier is None
        return self.verifier.settings == other.verifier.settings and (
            self.verifier.keyring.same_keys(other.verifier.keyring)
        )

    @classmethod
    def from_env_and_file(
        cls, env: Mapping[str, str] | Entries, file_text: str | None
    ) -> ServiceConfig:
        """The effective configuration: ``env`` overlaid by the text of the
        file ``Router__ConfigFile`` names (``None``: no file).

        Raises :class:`ConfigurationError` with every problem at once, those
        of the file and those of the resulting settings; a bad setting that
        came from the file also names its line. The well-formed lines apply
        even when others are bad, so all problems surface in one pass.
        """
        entries, errors = _parse_lines(file_text) if file_text is not None else ([], [])
        try:
            return _from_variables(_overlay(_entries(env), entries), raise_with=errors)
        except ConfigurationError as e:
            lines = {entry.name: entry.line for entry in entries}
            annotated = [
                ConfigError(
                    err.variable,
                    f"{err.problem} (set in {ENV_CONFIG_FILE} line {lines[err.variable]})",
                )
                if err.variable in lines
                else err
                for err in e.errors
            ]
            raise ConfigurationError(annotated) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | Entries) -> ServiceConfig:
        """Reads the variables in ``env`` alone.

        A ``Router__ConfigFile`` in ``env`` is an error rather than ignored:
        a file silently not read would leave the service on settings the
        operator did not mean. Use :meth:`load` or
        :class:`~stella_envelope.reload.ConfigHandle` to follow it.
        """
        entries = _entries(env)
        errors: list[ConfigError] = []
        if config_file_path(entries) is not None:
            errors.append(
                ConfigError(
                    ENV_CONFIG_FILE,
                    "names a file that ServiceConfig.from_env does not read "
                    "(load with ServiceConfig.load or ConfigHandle)",
                )
            )
        return _from_variables(entries, raise_with=errors)

    @classmethod
    def load(cls, env: Mapping[str, str] | Entries | None = None) -> ServiceConfig:
        """:meth:`from_env_and_file` with the file ``env`` names read from
        disk. ``env`` defaults to the process environment."""
        entries = _entries(os.environ if env is None else env)
        path = config_file_path(entries)
        text = read_config_file(path) if path is not None else None
        return cls.from_env_and_file(entries, text)


def _from_variables(
    env: list[tuple[str, str]], raise_with: list[ConfigError] | None = None
) -> ServiceConfig:
    """Checks the service variables in ``env`` (after any file overlay).
    Problems from an earlier stage (``raise_with``) are reported first."""
    file_errors = list(raise_with or [])
    errors: list[ConfigError] = []

    def fail(variable: str, problem: str) -> None:
        errors.append(ConfigError(variable, problem))

    enabled = True
    raw = _get(env, ENV_ENABLED)
    if raw is not None:
        value = rust_trim(raw).translate(_ASCII_LOWER)
        if value in ("true", "1", "yes"):
            enabled = True
        elif value in ("false", "0", "no"):
            enabled = False
        else:
            fail(ENV_ENABLED, "must be true or false")

    mode = TrustMode.SERVICE_ENFORCED
    raw = _get(env, ENV_TRUST_MODE)
    if raw is not None:
        try:
            mode = TrustMode.parse(raw)
        except ValueError as e:
            fail(ENV_TRUST_MODE, str(e))

    def seconds(variable: str, default: int, maximum: int, minimum: int) -> int:
        text = _get(env, variable)
        if text is None:
            return default
        text = rust_trim(text)
        if _SECONDS.fullmatch(text) and minimum <= int(text) <= maximum:
            return int(text)
        if minimum > 1:
            fail(variable, f"must be a whole number of seconds from {minimum} to {maximum}")
        else:
            fail(variable, f"must be a whole number of seconds up to {maximum}")
        return default

    clock_skew = seconds(ENV_CLOCK_SKEW, DEFAULT_CLOCK_SKEW_SECS, 300, 0)
    max_lifetime = seconds(ENV_MAX_LIFETIME, DEFAULT_MAX_LIFETIME_SECS, 3600, 1)
    jwks_refresh = seconds(ENV_JWKS_REFRESH, DEFAULT_JWKS_REFRESH_SECS, 86400, 10)
    jwks_cooldown = seconds(ENV_JWKS_COOLDOWN, DEFAULT_JWKS_COOLDOWN_SECS, 3600, 1)
    jwks: JwksSettings | None = None
    jwks_url = _get(env, ENV_JWKS_URL)
    # Blank is unset, so `Router__IdentityEnvelopeJwksUrl=${JWKS_URL:-}` in
    # a compose file works.
    if jwks_url is not None and rust_trim(jwks_url):
        try:
            jwks = JwksSettings(check_jwks_url(rust_trim(jwks_url)), jwks_refresh, jwks_cooldown)
        except JwksProblem as e:
            fail(ENV_JWKS_URL, str(e))

    keyring = Keyring()
    accepted = _get(env, ENV_ACCEPTED_KEYS)
    if accepted is not None:
        try:
            keyring = Keyring.parse_list(accepted)
        except KeyProblem as e:
            fail(ENV_ACCEPTED_KEYS, str(e))
    secret = _get(env, ENV_SIGNING_KEY)
    if secret is not None:
        kid_text = _get(env, ENV_SIGNING_KEY_ID)
        kid_text = "default" if kid_text is None else rust_trim(kid_text)
        try:
            kid = check_kid(kid_text)
        except KeyProblem as e:
            fail(ENV_SIGNING_KEY_ID, str(e))
        else:
            try:
                key = Key.parse_compat(kid, rust_trim(secret))
            except KeyProblem as e:
                fail(ENV_SIGNING_KEY, str(e))
            else:
                if kid in keyring:
                    fail(
                        ENV_SIGNING_KEY_ID,
                        f"key id {kid} appears more than once (also in {ENV_ACCEPTED_KEYS})",
                    )
                else:
                    keyring = keyring.with_key(key)

    audience = _get(env, ENV_AUDIENCE)
    audience = rust_trim(audience) if audience is not None else None
    issuer = _get(env, ENV_ISSUER)
    issuer = rust_trim(issuer) if issuer is not None else None

    has_jwks = jwks_url is not None and bool(rust_trim(jwks_url))
    if enabled and mode is not TrustMode.SERVICE_ENFORCED and not keyring and not has_jwks:
        fail(
            ENV_SIGNING_KEY,
            f"{mode.value} needs {ENV_SIGNING_KEY}, {ENV_ACCEPTED_KEYS} or {ENV_JWKS_URL}",
        )
    verifier: Verifier | None = None
    if keyring or has_jwks:
        if audience:
            verifier = Verifier(
                keyring,
                VerifierSettings(
                    audience=audience,
                    issuer=issuer or None,
                    clock_skew_secs=clock_skew,
                    max_lifetime_secs=max_lifetime,
                ),
            )
        else:
            fail(ENV_AUDIENCE, "is required when envelope keys are configured")
    if file_errors or errors:
        raise ConfigurationError(file_errors + errors)
    return ServiceConfig(enabled=enabled, mode=mode, verifier=verifier, jwks=jwks)

