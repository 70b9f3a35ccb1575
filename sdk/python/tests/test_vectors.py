"""The published vectors (envelope/testdata/vectors.json), read where the
Rust crate reads them: every valid vector verifies with its payload, every
invalid one fails with its code, and every one-step mutation of a valid
vector is refused."""

from __future__ import annotations

from typing import Any

import pytest

from stella_envelope import EnvelopeError, ErrorCode, check_request
from stella_envelope.verify import Invalid, Valid
from support import VECTORS_PATH, vector_verifier, vectors

VALID = vectors()["valid"]
INVALID = vectors()["invalid"]
REQUEST = vectors()["request"]
NOW = vectors()["now"]


def test_the_vectors_file_is_the_rust_crates_and_is_not_empty() -> None:
    assert VECTORS_PATH.parts[-3:] == ("envelope", "testdata", "vectors.json")
    assert len(VALID) >= 4 and len(INVALID) >= 29
    # Every code a vector expects is one this package can produce.
    codes = {c.value for c in ErrorCode}
    assert {v["expect_error"] for v in INVALID} <= codes


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_verifies_with_its_payload(vector: dict[str, Any]) -> None:
    verified = vector_verifier().verify(vector["headers"], REQUEST["method"], REQUEST["path"], NOW)
    assert verified is not None
    assert verified.to_payload() == vector["expect_payload"]
    kid = dict(vector["headers"])["X-StellaOps-Identity-Envelope-Kid"]
    assert verified.kid == kid


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_fails_with_its_code(vector: dict[str, Any]) -> None:
    request = vector.get("request", REQUEST)
    with pytest.raises(EnvelopeError) as failure:
        vector_verifier().verify(vector["headers"], request["method"], request["path"], NOW)
    assert failure.value.code.value == vector["expect_error"]
    # The non-raising form used by the middleware agrees.
    check = check_request(
        vector_verifier(), vector["headers"], request["method"], request["path"], NOW
    )
    assert isinstance(check, Invalid) and check.error.code.value == vector["expect_error"]


def test_valid_vectors_are_also_valid_through_check_request() -> None:
    for vector in VALID:
        check = check_request(
            vector_verifier(), vector["headers"], REQUEST["method"], REQUEST["path"], NOW
        )
        assert isinstance(check, Valid), vector["name"]


def _other(c: str) -> str:
    """A different character of the same kind, so the mutated value stays
    plausible (still base64url, still digits) and reaches the later checks."""
    if c.isdigit():
        return "1" if c != "1" else "2"
    if c.isalpha():
        return "A" if c != "A" else "B"
    return "A"


def _mutations() -> list[tuple[str, str, list[tuple[str, str]], set[str]]]:
    """(vector, mutation, headers, acceptable codes) for every valid vector:
    one character changed at the start, middle and end of each of the six
    values, each header dropped, each header sent twice."""
    out = []
    for vector in VALID:
        headers = [tuple(h) for h in vector["headers"]]
        for i, (name, value) in enumerate(headers):
            short = name.removeprefix("X-StellaOps-Identity-Envelope").lstrip("-") or "Envelope"
            for where, at in (("first", 0), ("middle", len(value) // 2), ("last", len(value) - 1)):
                changed = value[:at] + _other(value[at]) + value[at + 1 :]
                mutated = list(headers)
                mutated[i] = (name, changed)
                out.append(
                    (vector["name"], f"{short}-{where}-char-changed", mutated, _REFUSED)
                )
            dropped = headers[:i] + headers[i + 1 :]
            out.append((vector["name"], f"{short}-dropped", dropped, {"missing_header"}))
            doubled = headers + [(name.lower(), value)]
            out.append((vector["name"], f"{short}-twice", doubled, {"duplicate_header"}))
    return out


# Any code but a pass: which one depends on the character changed.
_REFUSED = {c.value for c in ErrorCode}
MUTATIONS = _mutations()


@pytest.mark.parametrize(
    ("headers", "codes"),
    [(m[2], m[3]) for m in MUTATIONS],
    ids=[f"{m[0]}:{m[1]}" for m in MUTATIONS],
)
def test_mutated_valid_vector_is_refused(headers: list[tuple[str, str]], codes: set[str]) -> None:
    with pytest.raises(EnvelopeError) as failure:
        vector_verifier().verify(headers, REQUEST["method"], REQUEST["path"], NOW)
    assert failure.value.code.value in codes


def test_every_valid_vector_has_thirty_mutations() -> None:
    assert len(MUTATIONS) == 30 * len(VALID)
    # Each mutation really differs from its vector.
    originals = {v["name"]: [tuple(h) for h in v["headers"]] for v in VALID}
    assert all(m[2] != originals[m[0]] for m in MUTATIONS)


def test_a_valid_vector_is_expired_a_day_later() -> None:
    vector = VALID[0]
    with pytest.raises(EnvelopeError) as failure:
        vector_verifier().verify(
            vector["headers"], REQUEST["method"], REQUEST["path"], NOW + 86400
        )
    assert failure.value.code is ErrorCode.EXPIRED
