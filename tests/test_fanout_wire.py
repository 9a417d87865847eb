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
    Forward,
    ForwardOutcome,
    Heartbeat,
)
from events import EventMetadata, NewEvent
from events.models import DocCorrected, DocUpdated, project_stream

NODE = str(uuid.uuid4())
HOME = str(uuid.uuid4())
PROJECT = str(uuid.uuid4())
EVENT_ID = uuid.uuid4()
PARENT = "daid:v1:collab:project_version:0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "message",
    [
        CommittedUpdate(PROJECT, 7, 123456789012, b"\x01\x02\x03"),
        CommittedUpdate(PROJECT, 8, 9, b""),
        CommittedUpdate(PROJECT, 9, 10, b"\x01\x02", EVENT_ID, PARENT),
        Awareness(PROJECT, b"\x01\x05\x01\x02\x03\x02{}"),
        AwarenessQuery(PROJECT),
        AccessChange(PROJECT, "alice", "viewer"),
        AccessChange(PROJECT, "bob", None),
        Heartbeat(),
        Farewell(),
        Forward(
            PROJECT,
            HOME,
            project_stream(PROJECT),
            NewEvent(
                DocUpdated(update=b"\x01\x00\x02", client_id=7),
                EventMetadata(actor="alice", agent_id="studio", correlation_id="c-1"),
                event_id=EVENT_ID,
            ),
        ),
        Forward(
            PROJECT,
            HOME,
            project_stream(PROJECT),
            NewEvent(
                DocCorrected(update=b"\x00\x00", reasons=("tempo: not a number",)),
                EventMetadata(actor="collab-server"),
                parents=(PARENT,),
            ),
        ),
        ForwardOutcome(NODE, EVENT_ID, 12, 3456, PARENT),
        ForwardOutcome(NODE, EVENT_ID, detail="overloaded: 20000 updates are waiting"),
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
        b"F" + uuid.UUID(NODE).bytes + uuid.UUID(HOME).bytes,
        b"F" + uuid.UUID(NODE).bytes + uuid.UUID(HOME).bytes + uuid.UUID(PROJECT).bytes,
        b"F"
        + uuid.UUID(NODE).bytes
        + uuid.UUID(HOME).bytes
        + uuid.UUID(PROJECT).bytes
        + b"\x00\x00\x00\x05{bad}",
        b"O" + uuid.UUID(NODE).bytes + uuid.UUID(HOME).bytes + EVENT_ID.bytes + b"Q",
        b"W" + uuid.UUID(NODE).bytes + uuid.UUID(PROJECT).bytes + EVENT_ID.bytes + b"\x00" * 8,
        b"W"
        + uuid.UUID(NODE).bytes
        + uuid.UUID(PROJECT).bytes
        + EVENT_ID.bytes
        + b"\x00" * 16
        + b"\x00\x09daid",
        b"O" + uuid.UUID(NODE).bytes + uuid.UUID(HOME).bytes + EVENT_ID.bytes + b"C\x00",
    ],
)
def test_anything_else_is_refused_by_name(data: bytes) -> None:
    with pytest.raises(BadMessage):
        fanout.decode(data)


def test_messages_for_one_channel_travel_as_one_bundle_in_their_order() -> None:
    frames = [
        fanout.encode(NODE, CommittedUpdate(PROJECT, version, version, b"\x00\x00"))
        for version in range(1, 4)
    ]
    assert fanout.unbundle(fanout.bundle(frames)) == frames
    assert fanout.bundle(frames[:1]) == frames[0]  # one message goes as it is
    assert fanout.unbundle(frames[0]) == frames[:1]


@pytest.mark.parametrize("cut", [2, 5, 30])
def test_a_bundle_cut_short_is_refused(cut: int) -> None:
    frames = [fanout.encode(NODE, Heartbeat()), fanout.encode(NODE, Farewell())]
    with pytest.raises(BadMessage):
        fanout.unbundle(fanout.bundle(frames)[:cut])
