"""The room's decisions without any I/O: presence bookkeeping and sync answers."""

from __future__ import annotations

from typing import Any, cast

import pycrdt
import pytest

from collab.live import protocol
from collab.live.presence import AWARENESS_TIMEOUT
from collab.live.room import Room
from collab.live.writer import GroupCommitWriter
from collab.runtime.metrics import Metrics
from music import document
from tests.peers import RecordingPeer
from tests.poison import find_poison


def _room() -> Room:
    # These tests never submit updates, so the writer is never started or called.
    writer = GroupCommitWriter(cast(Any, None), Metrics())
    return Room("00000000-0000-0000-0000-000000000001", writer, Metrics())


def test_join_sends_step1_then_presence() -> None:
    room = _room()
    first, second = RecordingPeer(), RecordingPeer()
    room.attach(first)
    assert first.messages() == [protocol.SyncStep1(room.doc.get_state())]
    entry = protocol.AwarenessEntry(9, 1, '{"name":"A"}')
    room.receive(first, protocol.AwarenessUpdate((entry,)))
    room.attach(second)
    assert second.messages()[1] == protocol.AwarenessUpdate((entry,))


def test_step2_answers_share_one_encoding_per_version() -> None:
    room = _room()
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get("meta", type=pycrdt.Map)["tempo"] = 90.0
    room.load([doc.get_update()], version=2, position=2)
    peers = [RecordingPeer() for _ in range(3)]
    for peer in peers:
        room.attach(peer)
        room.receive(peer, protocol.SyncStep1(b"\x00"))
    answers = [peer.frames[-1] for peer in peers]
    assert answers[0] == answers[1] == answers[2]
    replica: pycrdt.Doc[Any] = pycrdt.Doc()
    step2 = protocol.decode(answers[0])
    assert isinstance(step2, protocol.SyncStep2)
    replica.apply_update(step2.update)
    assert replica.get("meta", type=pycrdt.Map).to_py() == {"tempo": 90.0}


def test_stale_and_duplicate_presence_is_not_relayed() -> None:
    room = _room()
    alice, bob = RecordingPeer(), RecordingPeer()
    room.attach(alice)
    room.attach(bob)
    newer = protocol.AwarenessEntry(5, 3, '{"x":1}')
    room.receive(alice, protocol.AwarenessUpdate((newer,)))
    relayed = len(bob.frames)
    room.receive(alice, protocol.AwarenessUpdate((protocol.AwarenessEntry(5, 2, '{"x":0}'),)))
    room.receive(alice, protocol.AwarenessUpdate((newer,)))
    assert len(bob.frames) == relayed  # older clock and pure renewals go nowhere
    assert alice.frames[-1] != bob.frames[-1]  # the sender never gets its own state back


def test_a_peer_cannot_change_another_peer_s_presence() -> None:
    room = _room()
    alice, mallory, bob = RecordingPeer(), RecordingPeer(can_write=False), RecordingPeer()
    for peer in (alice, mallory, bob):
        room.attach(peer)
    room.receive(alice, protocol.AwarenessUpdate((protocol.AwarenessEntry(5, 3, '{"n":"A"}'),)))
    relayed = len(bob.frames)
    forged = protocol.AwarenessEntry(5, 4, '{"n":"forged"}')
    gone = protocol.AwarenessEntry(5, 9, "null")
    room.receive(mallory, protocol.AwarenessUpdate((forged,)))
    room.receive(mallory, protocol.AwarenessUpdate((gone,)))
    assert len(bob.frames) == relayed
    room.attach(late := RecordingPeer())
    assert late.messages()[1] == protocol.AwarenessUpdate(
        (protocol.AwarenessEntry(5, 3, '{"n":"A"}'),)
    )
    # its own presence a viewer may set
    room.receive(mallory, protocol.AwarenessUpdate((protocol.AwarenessEntry(6, 1, "{}"),)))
    assert len(bob.frames) == relayed + 1


def test_silent_presence_expires_and_departures_are_announced() -> None:
    room = _room()
    alice, bob = RecordingPeer(), RecordingPeer()
    room.attach(alice)
    room.attach(bob)
    room.receive(alice, protocol.AwarenessUpdate((protocol.AwarenessEntry(5, 1, "{}"),)))
    room.receive(bob, protocol.AwarenessUpdate((protocol.AwarenessEntry(6, 4, "{}"),)))

    room.detach(bob)  # bob leaves: alice hears that client 6 is gone
    assert alice.messages()[-1] == protocol.AwarenessUpdate(
        (protocol.AwarenessEntry(6, 5, "null"),)
    )
    room.attach(bob)
    import time  # noqa: PLC0415

    room.presence.expire(now=time.monotonic() + AWARENESS_TIMEOUT + 1)
    gone = protocol.AwarenessUpdate((protocol.AwarenessEntry(5, 2, "null"),))
    assert bob.messages()[-1] == gone
    room.receive(bob, protocol.QueryAwareness())
    assert bob.messages()[-1] == protocol.AwarenessUpdate(())


def test_an_update_that_does_not_apply_is_refused_before_the_writer() -> None:
    room = _room()
    start = document.new_document()
    start.get(document.META, type=pycrdt.Map)["name"] = "Song"
    room.load([start.get_update()], version=2, position=2)
    poison = find_poison(seed=1, start=room.doc.get_update())
    room.load(list(poison.base), version=3, position=3)
    state = room.doc.get_update()
    for _ in range(2):  # the second try meets a trial document built again
        with pytest.raises(protocol.UnappliableUpdate, match="does not apply"):
            room.submit(poison.update, origin=None, actor="tester")
    assert room.pending == 0
    assert room.doc.get_update() == state


def test_an_update_with_a_nan_is_refused_before_the_writer() -> None:
    room = _room()
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    doc.get(document.META, type=pycrdt.Map)["tempo"] = float("nan")
    with pytest.raises(protocol.UnsafeUpdateValue, match="NaN"):
        room.submit(updates[0], origin=None, actor="tester")
    assert room.pending == 0
