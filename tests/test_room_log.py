"""The room and its durability port, without I/O: what is sent to the log, in which
order, and what the room applies and broadcasts when the log answers.

Over 400 lines because its tests share the hand-driven log (``ManualLog``) and the
recording peers; each is one ordering case of the same room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pycrdt
import pytest

from collab.live import protocol
from collab.live.admission import HOLD_SECONDS
from collab.live.closecodes import CloseCode
from collab.live.fanout import CommittedUpdate, Message
from collab.live.room import Room
from collab.live.versions import MAX_MISSING
from collab.live.writer import Committed, Overloaded
from collab.runtime.metrics import Metrics
from events import NewEvent
from events.models import DocCorrected, DocUpdated, project_stream
from music import document
from tests.peers import RecordingPeer
from tests.poison import find_poison

PROJECT = "00000000-0000-0000-0000-000000000002"

#: an item of client 7 whose parent is the id 9:0, which nobody sent yet
CHILD_OF_9_0 = bytes([1, 1, 7, 0, 8, 0, 9, 0, 1, 125, 2, 0])
#: the id 9:0 as a character of the root text "t": not a shared type, so CHILD_OF_9_0
#: cannot be applied once it arrives
TEXT_9_0 = bytes([1, 1, 9, 0, 4, 1, 1]) + b"t" + bytes([1]) + b"a" + bytes([0])


@dataclass
class _Submitted:
    event: NewEvent
    on_committed: Callable[[Committed], None] | None
    on_failed: Callable[[Exception], None] | None
    future: asyncio.Future[Committed]


class ManualLog:
    """A durability port the test answers by hand, in submission order."""

    def __init__(self) -> None:
        self.waiting: list[_Submitted] = []
        self.stored: list[bytes] = []
        self.refusal: Exception | None = None

    def submit(
        self,
        stream_id: str,
        event: NewEvent,
        on_committed: Callable[[Committed], None] | None = None,
        on_failed: Callable[[Exception], None] | None = None,
    ) -> asyncio.Future[Committed]:
        assert stream_id == project_stream(PROJECT)
        if self.refusal is not None:
            raise self.refusal
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Submitted(event, on_committed, on_failed, future))
        return future

    def submitted(self) -> list[bytes]:
        return [_update(item.event) for item in self.waiting]

    def commit(self, count: int = 1) -> None:
        for _ in range(count):
            item = self.waiting.pop(0)
            self.stored.append(_update(item.event))
            done = Committed(len(self.stored), len(self.stored), f"daid-{len(self.stored)}")
            if item.on_committed is not None:
                item.on_committed(done)
            item.future.set_result(done)

    def fail(self) -> None:
        item = self.waiting.pop(0)
        error = RuntimeError("database gone")
        if item.on_failed is not None:
            item.on_failed(error)
        item.future.set_exception(error)
        item.future.exception()  # retrieved: nobody else awaits it in these tests


def _update(event: NewEvent) -> bytes:
    assert isinstance(event.event, DocUpdated | DocCorrected)
    return event.event.update


def _edits(count: int) -> list[bytes]:
    """``count`` updates of one editor, each depending on the one before."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("notes", type=pycrdt.Text)
    for index in range(count):
        text += f"edit {index}; "
    return updates


def _replay(updates: list[bytes]) -> pycrdt.Doc[Any]:
    """A fresh document with ``updates`` applied in order; none may stay pending."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        before = doc.get_update()
        doc.apply_update(update)
        assert doc.get_update() != before, "an update of the log changed nothing"
    return doc


def _room() -> tuple[Room, ManualLog]:
    log = ManualLog()
    return Room(PROJECT, log, Metrics()), log


async def test_updates_reach_the_log_in_order_and_the_room_only_once_durable() -> None:
    room, log = _room()
    sender, reader = RecordingPeer(), RecordingPeer()
    room.attach(sender)
    room.attach(reader)
    edits = _edits(3)
    futures = [room.submit(edit, origin=sender, actor="tester") for edit in edits]
    assert log.submitted() == edits
    assert room.pending == 3
    assert room.version == 0
    assert reader.updates() == []  # nothing is broadcast before it is durable
    log.commit()
    assert reader.updates() == edits[:1]
    log.commit(2)
    assert reader.updates() == edits
    assert sender.updates() == []  # the sender has its own edits
    assert [future.result().version for future in futures if future is not None] == [1, 2, 3]
    assert (room.version, room.pending) == (3, 0)
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_what_goes_to_the_log_is_a_valid_event_naming_its_author() -> None:
    room, log = _room()
    sender = RecordingPeer()
    room.attach(sender)
    edits = _edits(2)
    for edit in edits:
        room.submit(edit, origin=sender, actor="tester")
    first, second = (item.event for item in log.waiting)
    for new, edit in zip((first, second), edits, strict=True):
        # built without validation on the hot path: the model still accepts it as is
        assert DocUpdated.model_validate(new.event.model_dump()) == new.event
        assert new.event == DocUpdated(update=edit, client_id=protocol.update_author(edit))
        assert (new.metadata.actor, new.metadata.agent_id) == ("tester", sender.agent)
    assert second.metadata is first.metadata  # one metadata object per writer
    assert first.event_id != second.event_id


async def test_a_failed_append_closes_its_sender_and_leaves_the_room_as_the_log() -> None:
    room, log = _room()
    sender, reader = RecordingPeer(), RecordingPeer()
    room.attach(sender)
    room.attach(reader)
    edits = _edits(2)
    room.submit(edits[0], origin=sender, actor="tester")
    log.fail()
    assert sender.closed is not None
    assert sender.closed[0] == CloseCode.TRY_AGAIN_LATER
    assert reader.updates() == []
    assert room.pending == 0
    # The trial forgot the failed update: the next one, which needs it, waits for it
    # instead of reaching the log ahead of what it refers to.
    assert room.submit(edits[1], origin=reader, actor="tester") is None
    assert log.waiting == []
    room.submit(edits[0], origin=reader, actor="tester")  # the resend on reconnect
    assert log.submitted() == edits
    log.commit(2)
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_a_writer_that_refuses_closes_the_sender_at_once() -> None:
    room, log = _room()
    sender = RecordingPeer()
    room.attach(sender)
    log.refusal = Overloaded("100 updates are waiting for the database")
    with pytest.raises(Overloaded):
        room.submit(_edits(1)[0], origin=sender, actor="tester")
    assert sender.closed is not None
    assert sender.closed[0] == CloseCode.TRY_AGAIN_LATER
    assert room.pending == 0


async def test_an_update_ahead_of_what_it_refers_to_waits_for_it() -> None:
    # An editor that reconnects sends its step 2 and may send a new edit before it: the
    # edit refers to ids the step 2 carries.
    room, log = _room()
    editor = RecordingPeer()
    room.attach(editor)
    first, second, third = _edits(3)
    assert room.submit(third, origin=editor, actor="tester") is None
    assert room.submit(second, origin=editor, actor="tester") is None
    assert log.waiting == []
    room.submit(first, origin=editor, actor="tester")
    assert log.submitted() == [first, second, third]
    log.commit(3)
    assert editor.closed is None
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_an_update_whose_ids_never_arrive_closes_its_sender_unstored() -> None:
    room, log = _room()
    editor, other = RecordingPeer(), RecordingPeer()
    room.attach(editor)
    room.attach(other)
    _, second = _edits(2)
    room.submit(second, origin=editor, actor="tester")
    room.expire_held(now=time.monotonic() + HOLD_SECONDS / 2)
    assert editor.closed is None
    room.expire_held(now=time.monotonic() + HOLD_SECONDS + 1)
    assert editor.closed is not None
    assert editor.closed[0] == CloseCode.BAD_MESSAGE
    assert "nobody sent" in editor.closed[1]
    assert log.waiting == []
    assert other.closed is None
    # Other editors go on.
    room.submit(_edits(1)[0], origin=other, actor="tester")
    assert len(log.waiting) == 1


async def test_a_held_update_that_cannot_apply_is_blamed_not_the_one_it_waited_for() -> None:
    # The finding of the fuzzing campaign: an update kept pending was stored, and
    # failed once the id it names as its parent arrived as a character of a text.
    room, log = _room()
    attacker, editor = RecordingPeer(), RecordingPeer()
    room.attach(attacker)
    room.attach(editor)
    assert room.submit(CHILD_OF_9_0, origin=attacker, actor="tester") is None
    room.submit(TEXT_9_0, origin=editor, actor="tester")
    assert log.submitted() == [TEXT_9_0]
    assert attacker.closed is not None
    assert attacker.closed[0] == CloseCode.BAD_MESSAGE
    assert "once the changes it refers to arrived" in attacker.closed[1]
    assert editor.closed is None
    log.commit()
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_held_updates_survive_a_trial_rebuilt_after_a_refusal() -> None:
    # Rebuilding the trial from the document's state drops whatever is pending in it;
    # held updates are applied again, so they are not lost nor stored too early.
    room, log = _room()
    editor, stranger = RecordingPeer(), RecordingPeer()
    room.attach(editor)
    room.attach(stranger)
    first, second = _edits(2)
    room.submit(second, origin=editor, actor="tester")
    poison = find_poison(seed=1)
    for update in poison.base:
        room.submit(update, origin=stranger, actor="tester")
    with pytest.raises(protocol.UnappliableUpdate):
        room.submit(poison.update, origin=stranger, actor="tester")
    room.submit(first, origin=editor, actor="tester")
    assert log.submitted()[-2:] == [first, second]
    log.commit(len(log.waiting))
    assert editor.closed is None
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_the_server_refuses_its_own_update_when_it_refers_to_unknown_ids() -> None:
    room, log = _room()
    with pytest.raises(protocol.UnappliableUpdate, match="does not have"):
        room.submit(_edits(2)[1], origin=None, actor="tester")
    assert log.waiting == []


async def test_a_departing_peer_takes_its_held_updates_along() -> None:
    room, log = _room()
    editor, other = RecordingPeer(), RecordingPeer()
    room.attach(editor)
    room.attach(other)
    first, second = _edits(2)
    room.submit(second, origin=editor, actor="tester")
    room.detach(editor)
    room.submit(first, origin=other, actor="tester")
    assert log.submitted() == [first]


@pytest.mark.parametrize("told", [True, False])
async def test_a_peer_made_read_only_loses_its_held_updates(told: bool) -> None:
    # An editor downgraded to viewer while its update waited for the ids it refers to:
    # once they arrive, what it sent as an editor is not stored, whether the room was
    # told of the downgrade or not (the release checks the sender again).
    room, log = _room()
    editor, other = RecordingPeer(), RecordingPeer()
    room.attach(editor)
    room.attach(other)
    first, second = _edits(2)
    room.submit(second, origin=editor, actor="tester")
    editor.can_write = False
    if told:
        room.read_only(editor)
    room.submit(first, origin=other, actor="tester")
    assert log.submitted() == [first]
    assert editor.closed is None


def _others(room: Room, updates: list[bytes], versions: list[int]) -> list[bool]:
    return [
        room.apply_committed(update, Committed(version, version, ""), None)
        for update, version in zip(updates, versions, strict=True)
    ]


async def test_updates_from_other_nodes_apply_once_and_a_skipped_version_is_missing() -> None:
    """Another node's versions may arrive out of order or twice (the fan-out, the log):
    each is applied and broadcast once; a jump names the versions still missing and
    asks for them once."""
    gaps: list[int | None] = []
    room = Room(PROJECT, ManualLog(), Metrics(), on_gap=lambda r: gaps.append(r.versions.gap))
    reader = RecordingPeer()
    room.attach(reader)
    edits = _edits(4)
    assert _others(room, [edits[0]], [1]) == [True]
    assert room.versions.missing == set()
    assert _others(room, [edits[3]], [4]) == [True]  # versions 2 and 3 skipped
    assert (room.version, room.versions.missing, gaps) == (4, {2, 3}, [1])
    assert _others(room, [edits[2], edits[3], edits[0]], [3, 4, 1]) == [True, False, False]
    assert room.versions.missing == {2}
    room.versions.settle(1)  # a read of the log up to version 1 leaves version 2 missing
    assert room.versions.gap == 1
    assert _others(room, [edits[1]], [2]) == [True]
    assert room.versions.gap is None
    assert reader.updates() == [edits[0], edits[3], edits[2], edits[1]]
    assert room.doc.get_update() == _replay(edits).get_update()


async def test_a_version_the_log_holds_no_update_for_stops_being_missing() -> None:
    """Versions of events that are not document updates (a member granted, say) are
    missing until a read of the log passes them, then forgotten."""
    room = Room(PROJECT, ManualLog(), Metrics())
    edits = _edits(2)
    _others(room, edits, [1, 3])
    assert room.versions.missing == {2}
    room.versions.settle(3)
    assert (room.versions.missing, room.versions.gap) == (set(), None)


async def test_a_jump_too_long_to_list_is_read_from_the_log() -> None:
    room = Room(PROJECT, ManualLog(), Metrics())
    (edit,) = _edits(1)
    _others(room, [edit], [MAX_MISSING + 5])
    assert room.versions.missing == set()
    assert room.versions.gap == 0
    assert room.versions.wants(3)
    room.versions.settle(MAX_MISSING + 5)
    assert room.versions.gap is None
    assert not room.versions.wants(3)


async def test_own_commits_are_published_to_the_other_nodes_with_their_versions() -> None:
    published: list[Message] = []
    log = ManualLog()
    room = Room(PROJECT, log, Metrics(), publish=published.append)
    edits = _edits(2)
    for edit in edits:
        room.submit(edit, origin=RecordingPeer(), actor="tester")
    log.commit(2)
    assert published == [
        CommittedUpdate(PROJECT, 1, 1, edits[0]),
        CommittedUpdate(PROJECT, 2, 2, edits[1]),
    ]


def _track_edits() -> tuple[bytes, bytes, bytes]:
    """An editor's updates: a track with pan 0.5; pan set to 5 (outside the schema); a
    name that the pan's correction must not touch."""
    doc = document.new_document()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    tracks["bass"] = pycrdt.Map({"name": "Bass", "pan": 0.5})
    tracks["bass"]["pan"] = 5.0
    tracks["bass"]["name"] = "Low end"
    return updates[0], updates[1], updates[2]


async def test_an_update_outside_the_schema_is_stored_and_followed_by_its_correction() -> None:
    room, log = _room()
    sender, reader = RecordingPeer(), RecordingPeer()
    room.attach(sender)
    room.attach(reader)
    create, bad_pan, rename = _track_edits()
    room.submit(create, origin=sender, actor="tester")
    room.submit(bad_pan, origin=sender, actor="tester")
    # stored as sent (its sender keeps it anyway), the server's correction right behind
    assert log.submitted()[:2] == [create, bad_pan]
    correction = log.waiting[2].event
    assert isinstance(correction.event, DocCorrected)
    assert correction.event.reasons == ("tracks.bass.pan: 5 is above 1; restored 0.5",)
    assert (correction.metadata.actor, correction.metadata.agent_id) == (
        "collab-server",
        "collab-server",
    )
    room.submit(rename, origin=sender, actor="tester")
    log.commit(4)
    # every peer gets the correction, the sender too; the room is the log's replay
    assert sender.updates() == [correction.event.update]
    assert reader.updates() == [create, bad_pan, correction.event.update, rename]
    assert room.doc.get_update() == _replay(log.stored).get_update()
    assert document.to_json(room.doc)["tracks"]["bass"] == {"name": "Low end", "pan": 0.5}
    assert sender.closed is None


async def test_a_correction_waits_while_an_update_is_held() -> None:
    room, log = _room()
    editor = RecordingPeer()
    room.attach(editor)
    create, bad_pan, _ = _track_edits()
    # the bad pan refers to the track that has not arrived: held, and so is its check
    assert room.submit(bad_pan, origin=editor, actor="tester") is None
    assert log.waiting == []
    room.submit(create, origin=editor, actor="tester")
    assert log.submitted()[:2] == [create, bad_pan]
    assert [type(item.event.event) for item in log.waiting] == [
        DocUpdated,
        DocUpdated,
        DocCorrected,
    ]
    correction = log.waiting[2].event.event
    assert isinstance(correction, DocCorrected)
    # Both arrived in one apply, so the server never saw the pan of 0.5 it replaced.
    assert correction.reasons == ("tracks.bass.pan: 5 is above 1; removed",)
    log.commit(3)
    assert document.to_json(room.doc)["tracks"]["bass"] == {"name": "Bass"}
    assert room.doc.get_update() == _replay(log.stored).get_update()


async def test_updates_other_nodes_stored_are_not_corrected_here() -> None:
    # The node that stored an update corrects it; a second correction would be a
    # second version for nothing.
    room, log = _room()
    create, bad_pan, rename = _track_edits()
    room.submit(create, origin=RecordingPeer(), actor="tester")
    log.commit()
    room.apply_committed(bad_pan, Committed(2, 2, ""), None)
    room.submit(rename, origin=RecordingPeer(), actor="tester")
    assert [type(item.event.event) for item in log.waiting] == [DocUpdated]


async def test_a_held_update_does_not_hold_up_anothers_correction() -> None:
    # One peer's update waits for ids nobody sent; another's bad value is corrected at
    # once, on what the log will hold (never on the held update's items).
    room, log = _room()
    waiting, writer = RecordingPeer(), RecordingPeer()
    room.attach(waiting)
    room.attach(writer)
    assert room.submit(CHILD_OF_9_0, origin=waiting, actor="tester") is None
    create, bad_pan, _ = _track_edits()
    room.submit(create, origin=writer, actor="tester")
    room.submit(bad_pan, origin=writer, actor="tester")
    assert [type(item.event.event) for item in log.waiting] == [
        DocUpdated,
        DocUpdated,
        DocCorrected,
    ]
    log.commit(3)
    assert document.to_json(room.doc)["tracks"]["bass"]["pan"] == 0.5
    assert room.doc.get_update() == _replay(log.stored).get_update()
