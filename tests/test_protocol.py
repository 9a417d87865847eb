"""The protocol core alone: byte-level vectors, round trips and malformed frames."""

from __future__ import annotations

import re

import pycrdt
import pytest

from collab.live import protocol
from collab.live.protocol import (
    AuthDenied,
    AwarenessEntry,
    AwarenessUpdate,
    MalformedAwareness,
    MalformedUpdate,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    TruncatedFrame,
    UnknownMessageType,
    Update,
)


def _update() -> bytes:
    doc: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc()
    doc.get("meta", type=pycrdt.Map)["tempo"] = 120.0
    return doc.get_update()


def test_vectors_match_the_y_protocols_layout() -> None:
    # sync step 1 of an empty document: type 0, subtype 0, length 1, state vector [0]
    assert protocol.encode_sync_step1(b"\x00") == b"\x00\x00\x01\x00"
    assert protocol.encode_sync_step2(b"\x00\x00") == b"\x00\x01\x02\x00\x00"
    assert protocol.encode_update(b"\x00\x00") == b"\x00\x02\x02\x00\x00"
    assert protocol.encode_query_awareness() == b"\x03"
    assert protocol.encode_auth_denied("no") == b"\x02\x00\x02no"
    # awareness: type 1, payload length, count 1, client 5, clock 2, '{}'
    entry = AwarenessEntry(5, 2, "{}")
    assert protocol.encode_awareness([entry]) == b"\x01\x06\x01\x05\x02\x02{}"
    # varints: 300 = 0b1_0010_1100 -> 0xAC 0x02
    assert protocol.var_uint(300) == b"\xac\x02"


def test_our_frames_match_pycrdts_codec() -> None:
    update = _update()
    doc: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc()
    assert protocol.encode_update(update) == pycrdt.create_update_message(update)
    assert protocol.encode_sync_step1(doc.get_state()) == pycrdt.create_sync_message(doc)


@pytest.mark.parametrize(
    "message",
    [
        SyncStep1(b"\x00"),
        SyncStep1(b"\x02\x81\x01\x05\x07\x01"),
        SyncStep2(_update()),
        Update(_update()),
        AwarenessUpdate(
            (AwarenessEntry(1, 0, '{"user":{"name":"Ada"}}'), AwarenessEntry(2**40, 7, "null"))
        ),
        QueryAwareness(),
        AuthDenied("read-only"),
    ],
)
def test_round_trip(message: protocol.Message) -> None:
    assert protocol.decode(protocol.encode(message)) == message


def test_awareness_removed_flag() -> None:
    assert AwarenessEntry(1, 1, "null").removed
    assert not AwarenessEntry(1, 1, "{}").removed


@pytest.mark.parametrize(
    ("frame", "error", "words"),
    [
        (b"", TruncatedFrame, "message type"),
        (b"\x80", TruncatedFrame, "message type"),  # varint with continuation bit and no end
        (b"\x00", TruncatedFrame, "sync message type"),
        (b"\x00\x02", TruncatedFrame, "sync payload length"),
        (b"\x00\x02\x05\x00\x00", TruncatedFrame, "length 5 runs past the end"),
        (b"\x00\x02\xff\xff\xff\xff\x0f", TruncatedFrame, "runs past the end"),
        (b"\x07", UnknownMessageType, "unknown message type 7"),
        (b"\x00\x09\x00", UnknownMessageType, "unknown sync message type 9"),
        (b"\x02\x01", UnknownMessageType, "unknown auth message type 1"),
        (b"\x00\x02\x03\x05\x01\x02", MalformedUpdate, "update does not decode"),
        (b"\x00\x01\x01\x01", MalformedUpdate, "update does not decode"),
        (b"\x00\x00\x02\x05\x01", MalformedUpdate, "state vector"),
        (b"\x01\x05\x01\x01\x01\x05{", TruncatedFrame, "awareness state"),
        (b"\x01\x06\x01\x01\x01\x02{x", MalformedAwareness, "not JSON"),
        (b"\x01\x02\x7f\x00", TruncatedFrame, "awareness count 127"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f", ProtocolError, "larger than 2^53"),
    ],
)
def test_malformed_frames_raise_our_errors(
    frame: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=re.escape(words)):
        protocol.decode(frame)


def test_every_truncation_of_a_valid_frame_is_refused_cleanly() -> None:
    frame = protocol.encode_update(_update())
    for end in range(len(frame)):
        with pytest.raises(ProtocolError):
            protocol.decode(frame[:end])


def test_corrupted_updates_raise_only_protocol_errors() -> None:
    import random  # noqa: PLC0415 - only this test needs it

    rng = random.Random(7)
    update = _update()
    refused = 0
    for _ in range(2000):
        corrupted = bytearray(update)
        for _ in range(3):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        try:
            protocol.decode(protocol.encode_update(bytes(corrupted)))
        except MalformedUpdate:
            refused += 1
    assert refused > 1000  # most corruptions are caught; the rest decode as valid updates


def test_var_uint_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        protocol.var_uint(-1)
    assert protocol.var_uint(protocol.MAX_VAR_UINT)[-1] < 0x80


def test_update_author() -> None:
    doc: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc(client_id=123456)
    doc.get("meta", type=pycrdt.Map)["tempo"] = 1.0
    assert protocol.update_author(doc.get_update()) == 123456
    other: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc(client_id=7)
    other.apply_update(doc.get_update())
    other.get("meta", type=pycrdt.Map)["key"] = 2.0
    assert protocol.update_author(other.get_update()) is None  # two authors
    assert protocol.update_author(b"\x00\x00") is None
    assert protocol.update_author(b"\x01") is None
