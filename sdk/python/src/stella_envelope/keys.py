"""Envelope key material, key ids and keyrings (SPEC.md section 4).

A key has exactly one algorithm; that is the per-key allowlist, so an HS256
header can never make a service use an Ed25519 public key as an HMAC secret.
Secret material is never shown by ``repr`` and is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import Enum
from collections.abc import Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .encoding import DecodeError, b64url_decode, rust_trim

__all__ = [
    "Alg",
    "Key",
    "KeyProblem",
    "Keyring",
    "MIN_HMAC_SECRET_LEN",
    "MAX_KID_LEN",
    "check_kid",
]

#: Shortest HS256 secret accepted, in bytes (the HMAC-SHA256 output size).
MIN_HMAC_SECRET_LEN = 32
#: Longest key id, in characters.
MAX_KID_LEN = 64

_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Alg(str, Enum):
    """Envelope signature algorithms, spelled exactly as in the header.
    Anything else, ``none`` and ``hs256`` included, is refused."""

    HS256 = "HS256"
    EDDSA = "EdDSA"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_header(cls, text: str) -> Alg | None:
        """The algorithm the header names, case-sensitively (as in JOSE)."""
        if text == "HS256":
            return cls.HS256
        if text == "EdDSA":
            return cls.EDDSA
        return None


class KeyProblem(ValueError):
    """Why key material was refused. Never carries the material."""


def check_kid(text: str) -> str:
    """Returns ``text`` if it is a key id: 1 to 64 characters from
    ``A-Z a-z 0-9 . _ -``."""
    if _KID.fullmatch(text) is None:
        raise KeyProblem(
            f"key id must be 1 to {MAX_KID_LEN} characters from A-Z a-z 0-9 . _ -"
        )
    return text


_FORMS = ("hs256", "ed25519-public", "ed25519-private")
_UNKNOWN_FORM = (
    "key must be written as hs256:<base64url>, ed25519-private:<base64url> "
    "or ed25519-public:<base64url>"
)


class Key:
    """One envelope key: a kid, its single algorithm, and its material.

    Build one with :meth:`parse` (the SPEC forms), :meth:`parse_compat` (also
    a plain-text secret, as ``Router__IdentityEnvelopeSigningKey`` is written
    in existing deployments) or :meth:`hmac`.
    """

    __slots__ = ("_kid", "_alg", "_kind", "_secret", "_public", "_public_bytes", "_seed")
    _kid: str
    _alg: Alg
    _kind: str
    #: The HS256 secret; ``None`` for Ed25519 keys.
    _secret: bytes | None
    #: The Ed25519 public key (derived from the seed for a private key).
    _public: Ed25519PublicKey | None
    _public_bytes: bytes | None
    #: The Ed25519 seed of a private key, kept to compare keys on reload.
    _seed: bytes | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Key.parse, Key.parse_compat or Key.hmac")

    @classmethod
    def _new(
        cls,
        kid: str,
        alg: Alg,
        kind: str,
        *,
        secret: bytes | None = None,
        public: Ed25519PublicKey | None = None,
        public_bytes: bytes | None = None,
        seed: bytes | None = None,
    ) -> Key:
        key = object.__new__(cls)
        key._kid = check_kid(kid)
        key._alg = alg
        key._kind = kind
        key._secret = secret
        key._public = public
        key._public_bytes = public_bytes
        key._seed = seed
        return key

    @classmethod
    def hmac(cls, kid: str, secret: bytes) -> Key:
        """An HS256 key over ``secret`` (at least 32 bytes: a shorter secret
        is guessable offline from any one envelope)."""
        if len(secret) < MIN_HMAC_SECRET_LEN:
            raise KeyProblem(
                f"hs256 secret is {len(secret)} bytes; at least "
                f"{MIN_HMAC_SECRET_LEN} are required"
            )
        return cls._new(kid, Alg.HS256, "hs256 secret", secret=bytes(secret))

    @classmethod
    def parse(cls, kid: str, spec: str) -> Key:
        """Parses ``hs256:<b64url>``, ``ed25519-public:<b64url>`` or
        ``ed25519-private:<b64url seed>`` (form name case-insensitive)."""
        form, sep, value = spec.partition(":")
        form = rust_trim(form).lower() if form.isascii() else form
        if not sep or form not in _FORMS:
            raise KeyProblem(_UNKNOWN_FORM)
        try:
            material = b64url_decode(rust_trim(value))
        except DecodeError:
            raise KeyProblem("key material is not canonical unpadded base64url") from None
        if form == "hs256":
            return cls.hmac(kid, material)
        if len(material) != 32:
            raise KeyProblem(f"ed25519 key is {len(material)} bytes; exactly 32 are required")
        if form == "ed25519-public":
            try:
                public = Ed25519PublicKey.from_public_bytes(material)
            except ValueError:
                raise KeyProblem("ed25519 public key is not a valid point") from None
            return cls._new(
                kid, Alg.EDDSA, "ed25519 public", public=public, public_bytes=material
            )
        private = Ed25519PrivateKey.from_private_bytes(material)
        public = private.public_key()
        return cls._new(
            kid,
            Alg.EDDSA,
            "ed25519 private",
            public=public,
            public_bytes=public.public_bytes(Encoding.Raw, PublicFormat.Raw),
            seed=material,
        )

    @classmethod
    def parse_compat(cls, kid: str, text: str) -> Key:
        """Parses a key as ``Router__IdentityEnvelopeSigningKey`` is written:
        one of the :meth:`parse` forms, or else the text's UTF-8 bytes as an
        HS256 secret (SPEC.md section 4: "any other text").

        A recognised form with bad material is an error, never a secret: the
        operator meant that form.
        """
        form, sep, _ = text.partition(":")
        if sep and form.isascii() and rust_trim(form).lower() in _FORMS:
            return cls.parse(kid, text)
        return cls.hmac(kid, text.encode("utf-8", "surrogatepass"))

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def alg(self) -> Alg:
        return self._alg

    @property
    def kind(self) -> str:
        """``hs256 secret``, ``ed25519 public`` or ``ed25519 private``."""
        return self._kind

    def __repr__(self) -> str:
        return f"Key(kid={self._kid!r}, kind={self._kind!r}, material=<redacted>)"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's over ``message``; constant
        time for HMAC."""
        if self._secret is not None:
            expected = hmac.digest(self._secret, message, hashlib.sha256)
            return hmac.compare_digest(expected, signature)
        assert self._public is not None  # every non-HMAC key has one
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def same_as(self, other: Key) -> bool:
        """Same kid, same form, same material (secrets compared in constant
        time). The private and the public half of one Ed25519 key differ: a
        reload from one to the other is a change of settings."""
        if self._kid != other._kid or self._kind != other._kind:
            return False
        mine = self._secret if self._secret is not None else self._seed
        theirs = other._secret if other._secret is not None else other._seed
        if mine is not None and theirs is not None:
            return hmac.compare_digest(mine, theirs)
        return self._public_bytes == other._public_bytes


class Keyring(Mapping[str, Key]):
    """The keys a verifier accepts, by kid. Immutable once built: a reload
    builds a new one."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        found: dict[str, Key] = {}
        for key in keys:
            if key.kid in found:
                raise KeyProblem(f"key id {key.kid} appears more than once")
            found[key.kid] = key
        # Sorted like the Rust BTreeMap, so logs list kids in one order.
        self._keys = dict(sorted(found.items()))

    @classmethod
    def parse_list(cls, text: str) -> Keyring:
        """Parses ``kid=form;kid=form`` (``;`` or ``,`` between entries,
        spaces around entries ignored). Only the SPEC forms are accepted
        here, never a plain-text secret."""
        keys: list[Key] = []
        for entry in re.split("[;,]", text):
            entry = rust_trim(entry)
            if not entry:
                continue
            kid, sep, spec = entry.partition("=")
            if not sep:
                raise KeyProblem("key list entry must be written as kid=key")
            keys.append(Key.parse(check_kid(rust_trim(kid)), rust_trim(spec)))
        return cls(keys)

    def with_key(self, key: Key) -> Keyring:
        """A new keyring with ``key`` added; a kid already present is an
        error, not a silent replacement."""
        return Keyring([*self._keys.values(), key])

    def __getitem__(self, kid: str) -> Key:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring({list(self._keys.values())!r})"

    def same_keys(self, other: Keyring) -> bool:
        """Whether ``other`` holds exactly these keys."""
        return len(self) == len(other) and all(
            a.same_as(b) for a, b in zip(self._keys.values(), other._keys.values())
        )
