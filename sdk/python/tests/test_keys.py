"""Key forms, keyrings and how keys are shown (never)."""

from __future__ import annotations

import pytest

from stella_envelope import Alg, Key, KeyProblem, Keyring
from support import b64url, ed25519_public_spec, hs256_spec, vectors

SECRET_TEXT = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"


def test_the_three_forms_parse_to_their_single_algorithm() -> None:
    assert Key.parse("a", hs256_spec(b"x" * 32)).alg is Alg.HS256
    assert Key.parse("b", ed25519_public_spec(b"\x01" * 32)).alg is Alg.EDDSA
    assert Key.parse("c", "ed25519-private:" + b64url(b"\x01" * 32)).alg is Alg.EDDSA
    # Form names are case-insensitive and spaces around the parts are ignored.
    assert Key.parse("d", " HS256 : " + b64url(b"x" * 32)).alg is Alg.HS256


def test_the_private_form_verifies_what_its_public_half_verifies() -> None:
    sign = vectors()["keys"][2]["sign"]
    public = Key.parse("ed-1", vectors()["keys"][2]["verify"])
    private = Key.parse("ed-1", sign)
    message, signature = b"m", bytes(64)
    assert private.verify(message, signature) == public.verify(message, signature) is False
    assert not private.same_as(public)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("hs256:" + b64url(b"short"), "hs256 secret is 5 bytes; at least 32 are required"),
        ("rsa:AAAA", "key must be written as"),
        ("no colon at all", "key must be written as"),
        ("ed25519-public:AAAA", "ed25519 key is 3 bytes; exactly 32 are required"),
        ("ed25519-private:" + b64url(b"\x01" * 33), "ed25519 key is 33 bytes"),
        ("hs256:AAA=", "not canonical unpadded base64url"),
        ("hs256:" + b64url(b"x" * 32)[:-1] + "/", "not canonical unpadded base64url"),
    ],
)
def test_bad_keys_are_refused_with_a_reason_and_no_material(spec: str, why: str) -> None:
    with pytest.raises(KeyProblem) as e:
        Key.parse("k", spec)
    assert why in str(e.value)
    material = spec.partition(":")[2]
    assert not material or material not in str(e.value)


@pytest.mark.parametrize("kid", ["", "a b", "k" * 65, "k\u00e9", "k/1", "k=1"])
def test_bad_kids_are_refused(kid: str) -> None:
    with pytest.raises(KeyProblem, match="key id must be 1 to 64 characters"):
        Key.hmac(kid, b"x" * 32)


def test_a_kid_of_64_characters_is_accepted() -> None:
    assert Key.hmac("k" * 64, b"x" * 32).kid == "k" * 64


def test_plain_text_is_an_hs256_secret_only_in_the_compat_form() -> None:
    key = Key.parse_compat("default", SECRET_TEXT)
    assert key.alg is Alg.HS256
    assert key.same_as(Key.hmac("default", SECRET_TEXT.encode()))
    with pytest.raises(KeyProblem, match="key must be written as"):
        Key.parse("default", SECRET_TEXT)
    with pytest.raises(KeyProblem, match="is 9 bytes"):
        Key.parse_compat("default", "too-short")
    # Text with a colon is still text when the prefix is not a form.
    assert Key.parse_compat("default", "team:" + SECRET_TEXT).alg is Alg.HS256
    # A recognised form with bad material is an error, never a secret.
    with pytest.raises(KeyProblem, match="not canonical"):
        Key.parse_compat("default", "hs256:" + SECRET_TEXT + "!")


def test_repr_never_shows_material() -> None:
    seed = b"\x07" * 32
    for key, material in (
        (Key.parse_compat("k1", SECRET_TEXT), SECRET_TEXT),
        (Key.parse("k2", "ed25519-private:" + b64url(seed)), b64url(seed)),
        (Key.parse("k3", hs256_spec(b"y" * 32)), b64url(b"y" * 32)),
    ):
        shown = repr(key) + repr(Keyring([key]))
        assert material not in shown and "<redacted>" in shown


def test_keyring_lists_parse_with_either_separator_and_refuse_duplicates() -> None:
    hs = hs256_spec(b"z" * 32)
    ed = ed25519_public_spec(b"\x02" * 32)
    ring = Keyring.parse_list(f" b={ed} ; a={hs}, ")
    assert list(ring) == ["a", "b"]
    assert ring["a"].alg is Alg.HS256 and ring["b"].alg is Alg.EDDSA
    with pytest.raises(KeyProblem, match="key id a appears more than once"):
        Keyring.parse_list(f"a={hs};a={hs}")
    with pytest.raises(KeyProblem, match="kid=key"):
        Keyring.parse_list("junk")
    # Only the SPEC forms in a list: a plain secret is not one.
    with pytest.raises(KeyProblem, match="key must be written as"):
        Keyring.parse_list(f"a={SECRET_TEXT}")
    assert len(Keyring.parse_list(" ; ,")) == 0


def test_keyrings_are_the_same_only_with_the_same_kids_and_material() -> None:
    a, a2 = hs256_spec(b"\x01" * 32), hs256_spec(b"\x02" * 32)
    b_public = ed25519_public_spec(b"\x03" * 32)
    b_private = "ed25519-private:" + b64url(b"\x03" * 32)

    def same(x: str, y: str) -> bool:
        return Keyring.parse_list(x).same_keys(Keyring.parse_list(y))

    assert same(f"a={a};b={b_public}", f"b={b_public}; a={a}")
    assert same("", "")
    assert not same(f"a={a}", f"a={a2}")
    assert not same(f"a={a}", f"c={a}")
    assert not same(f"a={a}", f"a={a};b={b_public}")
    assert not same(f"b={b_private}", f"b={b_public}")


def test_keys_cannot_be_built_around_the_parsers() -> None:
    with pytest.raises(TypeError):
        Key()
