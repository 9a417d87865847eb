"""RFC 8785 (JSON Canonicalization Scheme) as the hashing scheme of new events: the
RFC's own test vectors, and a log mixing both schemes verified, with the scheme itself
tamper-evident (no I/O)."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from datetime import UTC, datetime

import pytest

from events import EventMetadata, NewEvent
from events.canonical import JCS, SCHEME_KEY, UnknownScheme, hashing_bytes, jcs_bytes
from events.integrity import ChainVerifier
from events.models import DocUpdated, ProjectCreated
from events.records import GENESIS_HASH, StoredEvent, chain_hash, prepare
from tests.test_records import _as_stored

#: RFC 8785 Appendix B: IEEE 754 doubles (hex) and their canonical text
NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), NUMBERS)
def test_the_rfcs_number_vectors(bits: str, text: str) -> None:
    assert jcs_bytes(struct.unpack(">d", bytes.fromhex(bits))[0]) == text.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000"])
def test_nan_and_infinity_have_no_canonical_form(bits: str) -> None:
    with pytest.raises(ValueError, match="RFC 8785"):
        jcs_bytes(struct.unpack(">d", bytes.fromhex(bits))[0])


def test_the_rfcs_example_of_section_3_2_2() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    assert (
        jcs_bytes(value)
        == (
            '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        ).encode()
    )


def test_the_rfcs_sorting_example_of_section_3_2_3() -> None:
    # keys sort by their UTF-16 code units: the emoji's surrogates come before U+FB33
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    text = jcs_bytes(value).decode()
    order = ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert [text.index(f'"{key}":') for key in order] == sorted(
        text.index(f'"{key}":') for key in order
    )


def test_integers_beyond_2_53_have_no_exact_rfc_8785_form() -> None:
    with pytest.raises(ValueError, match="RFC 8785"):
        jcs_bytes({"n": 2**53 + 1})
    assert hashing_bytes(None)({"n": 2**53 + 1}) == b'{"n":9007199254740993}'
    with pytest.raises(UnknownScheme):
        hashing_bytes("sha3-json")


def _log(*events: NewEvent) -> list[StoredEvent]:
    """``events`` as one stream's rows, chained as the database chains them."""
    rows: list[StoredEvent] = []
    previous = GENESIS_HASH
    for version, new in enumerate(events, start=1):
        row = dataclasses.replace(
            _as_stored(prepare("project-1", new), "project-1"),
            position=version,
            stream_version=version,
            prev_hash=previous,
            recorded_at=datetime(2026, 12, 4, 12, version, tzinfo=UTC),
        )
        row = dataclasses.replace(
            row,
            hash=chain_hash(previous, row.content_hash, version, version, row.recorded_at),
        )
        rows.append(row)
        previous = row.hash
    return rows


def _first_break(rows: list[StoredEvent]) -> str | None:
    verifier = ChainVerifier()
    for row in rows:
        broken = verifier.feed(row)
        if broken is not None:
            return broken.check
    return None


def test_a_log_mixing_both_schemes_verifies_and_the_scheme_is_covered() -> None:
    meta = EventMetadata(actor="ana")
    rows = _log(
        NewEvent(ProjectCreated(name="Song", owner="ana"), meta, uuid.uuid4()),
        # an integer JCS cannot write: this event keeps the older scheme
        NewEvent(ProjectCreated(name="Big", owner="ana", metadata={"n": 2**60}), meta),
        NewEvent(DocUpdated(update=b"\x00\x00", client_id=7), meta),
    )
    assert [row.metadata.get(SCHEME_KEY) for row in rows] == [JCS, None, JCS]
    assert _first_break(rows) is None
    # the scheme is part of what the content hash covers: changing it is caught
    dropped = {k: v for k, v in rows[0].metadata.items() if k != SCHEME_KEY}
    assert _first_break([dataclasses.replace(rows[0], metadata=dropped), *rows[1:]]) == (
        "content hash"
    )
    named = {**rows[1].metadata, SCHEME_KEY: JCS}
    assert _first_break([rows[0], dataclasses.replace(rows[1], metadata=named)]) == ("content hash")
    unknown = {**rows[2].metadata, SCHEME_KEY: "sha3-json"}
    assert _first_break([*rows[:2], dataclasses.replace(rows[2], metadata=unknown)]) == (
        "hash scheme"
    )
