"""The fan-out's messages as bytes on a Redis channel (collab/live/fanout.py)."""

from __future__ import annotations

import uuid

import pytest

from collab.live import fanout
from collab.live.fanout import (
    AccessChange,
    Awareness,
    AwarenessQuery,
    BadMessage,
    CommittedUpdate,
    Envelope,
    Farewell,
    Heartbeat,
)

NODE = str(uuid.uuid4())
PROJECT = str(uuid.uuid4())


@pytest.mark.parametrize(
    "message",
    [
        CommittedUpdate(PROJECT, 7, 123456789012, b"\x01\x02\x03"),
        CommittedUpdate(PROJECT, 8, 9, b""),
        Awareness(PROJECT, b"\x01\x05\x01\x02\x03\x02{}"),
        AwarenessQuery(PROJECT),
        AccessChange(PROJECT, "alice", "viewer"),
        AccessChange(PROJECT, "bob", None),
        Heartbeat(),
        Farewell(),
    ],
)
def test_every_message_comes_back_as_it_went(message: fanout.Message) -> None:
    assert fanout.decode(fanout.encode(NODE, message)) == Envelope(NODE, message)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"U" + b"\x00" * 10,
        b"U" + uuid.UUID(NODE).bytes + b"\x01",
        b"U" + uuid.UUID(NODE).bytes + uuid.UUID(PROJECT).bytes + b"\x00" * 3,
        b"Z" + uuid.UUID(NODE).bytes,
        b"X" + uuid.UUID(NODE).bytes + b"not json",
        b"X" + uuid.UUID(NODE).bytes + b'{"project": "p", "member": "m", "role": "god"}',
        b"X" + uuid.UUID(NODE).bytes + b'{"project": "p"}',
    ],
)
def test_anything_else_is_refused_by_name(data: bytes) -> None:
    with pytest.raises(BadMessage):
        fanout.decode(data)
