"""Strict decoders: canonical unpadded base64url, canonical decimal integers
and JSON objects without duplicate members.

"Strict" means one encoding per value. Python's own decoders are lenient
(``base64`` skips stray characters and ignores non-zero trailing bits,
``int()`` takes ``+1``, ``1_0`` and Arabic-Indic digits, ``json`` takes
``NaN``, keeps the last of two equal member names and lone surrogates), and a
lenient decoder lets an attacker produce many byte strings for one meaning.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

__all__ = [
    "DecodeError",
    "b64url_encode",
    "b64url_decode",
    "parse_canonical_decimal",
    "loads_strict_object",
    "rust_trim",
    "rust_trim_start",
]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CANONICAL_DECIMAL = re.compile(r"0|[1-9][0-9]{0,14}")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTET = {c: i for i, c in enumerate(_ALPHABET)}
_SURROGATE = re.compile("[\ud800-\udfff]")
# Only a \u escape can put a surrogate in decoded text (strict UTF-8
# decoding refuses encoded ones), so the walk is skipped without one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")

# Unicode White_Space, what Rust's `str::trim` removes. `str.strip()` also
# removes U+001C..U+001F, which the Rust reference keeps; configuration
# values must mean the same to both.
_RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

#: Deepest nesting of arrays and objects accepted in untrusted JSON (as the
#: Rust reference); deeper input is refused before it can exhaust the stack.
MAX_JSON_DEPTH = 16


class DecodeError(ValueError):
    """A strict decode failed. Carries no input."""


def rust_trim(text: str) -> str:
    """Strips leading and trailing Unicode White_Space, exactly as Rust's
    ``str::trim`` does."""
    return text.strip(_RUST_WHITESPACE)


def rust_trim_start(text: str) -> str:
    """Rust's ``str::trim_start``."""
    return text.lstrip(_RUST_WHITESPACE)


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decodes canonical unpadded base64url.

    Refuses padding, any character outside the alphabet (whitespace too), a
    length of 1 mod 4 (no encoder produces it) and non-zero unused bits in
    the last character, so every byte string has exactly one accepted
    encoding.
    """
    if len(text) % 4 == 1 or _B64URL.fullmatch(text) is None:
        raise DecodeError("not canonical unpadded base64url")
    rest = len(text) % 4
    if rest:
        # 2 characters carry 1 byte (4 spare bits), 3 carry 2 (2 spare bits).
        spare = 0x0F if rest == 2 else 0x03
        if _SEXTET[text[-1]] & spare:
            raise DecodeError("not canonical unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:  # unreachable after the checks
        raise DecodeError("not canonical unpadded base64url") from e


def parse_canonical_decimal(text: str) -> int:
    """Parses a canonical decimal: ASCII digits only, no sign, no leading
    zero (except ``0`` itself), at most 15 digits."""
    if _CANONICAL_DECIMAL.fullmatch(text) is None:
        raise DecodeError("not a canonical decimal integer")
    return int(text)


class _Strict:
    """Hooks for :func:`json.loads` that refuse what serde_json refuses."""

    @staticmethod
    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Names arrive unescaped, so `"\u0061"` and `"a"` collide here as the
        # SPEC requires.
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise DecodeError("duplicate json member")
        return obj

    @staticmethod
    def constant(name: str) -> Any:
        raise DecodeError("NaN and Infinity are not json")


def _check_depth_and_text(value: Any, depth: int = 0) -> None:
    """Refuses nesting deeper than :data:`MAX_JSON_DEPTH` and lone
    surrogates (``"\\ud800"``), which are not Unicode text: serde_json
    refuses them, and a payload must mean the same to every verifier."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise DecodeError("json string is not unicode text")
    elif isinstance(value, (dict, list)):
        if depth >= MAX_JSON_DEPTH:
            raise DecodeError("json nested too deeply")
        if isinstance(value, dict):
            for name, member in value.items():
                _check_depth_and_text(name, depth + 1)
                _check_depth_and_text(member, depth + 1)
        else:
            for member in value:
                _check_depth_and_text(member, depth + 1)


def loads_strict_object(data: bytes) -> dict[str, Any]:
    """Parses UTF-8 JSON that must be one object, refusing duplicate member
    names at any depth, ``NaN``/``Infinity``, lone surrogates, invalid UTF-8
    (``json.loads`` would otherwise guess UTF-16 or UTF-32 from bytes), a
    byte order mark and trailing data."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("json is not utf-8") from e
    if text.lstrip(" \t\r\n")[:1] != "{":
        raise DecodeError("not a json object")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_Strict.object_pairs,
            parse_constant=_Strict.constant,
        )
    except DecodeError:
        raise
    except (ValueError, RecursionError) as e:
        raise DecodeError("malformed json") from e
    # The walk is needed only when the text could hold a lone surrogate or
    # nest deeper than allowed; a payload does neither.
    containers = text.count("[") + text.count("{")
    if containers > MAX_JSON_DEPTH or _SURROGATE_ESCAPE.search(text):
        _check_depth_and_text(value)
    if not isinstance(value, dict):  # pragma: no cover - guarded by the "{" test
        raise DecodeError("not a json object")
    return value
