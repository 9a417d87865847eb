"""The one group commit (``events/group_commit.py``) without a database: what goes
together into one write, in which order outcomes come back, and how a refusal or a
failed write is handed to the callers. ``tests/contract/test_event_store.py`` runs the
same queue on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

import pytest

from events import NewEvent
from events.errors import DuplicateEvent, EventStoreError, StoreUnavailable
from events.group_commit import GroupCommit, Outcome, Written
from events.models import DocUpdated, EventMetadata
from events.store import ANY, AppendRequest, AppendResult
from tests.support import timeout

META = EventMetadata(actor="t")


def event(event_id: UUID | None = None) -> NewEvent:
    if event_id is None:
        return NewEvent(DocUpdated(update=b"\x00\x00"), META)
    return NewEvent(DocUpdated(update=b"\x00\x00"), META, event_id=event_id)


class Log:
    """A write port that numbers events per stream and records every batch it gets.

    ``gate`` (when set) holds each write until the test releases it; ``refuse`` names
    streams whose units are refused as unpreparable; ``fail`` fails the next write."""

    def __init__(self) -> None:
        self.batches: list[list[list[AppendRequest]]] = []
        self.versions: dict[str, int] = {}
        self.position = 0
        self.gate: asyncio.Event | None = None
        self.refuse: set[str] = set()
        self.fail: BaseException | None = None
        #: set once a write has begun
        self.writing = asyncio.Event()

    async def write(self, units: Sequence[Sequence[AppendRequest]]) -> list[Written]:
        self.batches.append([list(unit) for unit in units])
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        written: list[Written] = []
        for unit in units:
            if any(request.stream_id in self.refuse for request in unit):
                written.append(ValueError("strings may not contain NUL characters"))
                continue
            written.append([self._append(request) for request in unit])
        return written

    def _append(self, request: AppendRequest) -> Outcome:
        versions, positions = [], []
        for _ in request.events:
            self.versions[request.stream_id] = self.versions.get(request.stream_id, 0) + 1
            self.position += 1
            versions.append(self.versions[request.stream_id])
            positions.append(self.position)
        daids = tuple(f"daid-{p}" for p in positions)
        return AppendResult(request.stream_id, tuple(versions), tuple(positions), daids)


async def settled(commits: GroupCommit) -> None:
    await asyncio.wait_for(commits.close(), timeout(5))


async def test_lingering_updates_of_several_rooms_share_one_write_in_queue_order() -> None:
    log = Log()
    commits = GroupCommit(log.write, window=0.05)
    heard: list[tuple[str, Outcome]] = []
    for stream in ("a", "b", "a", "c", "a"):
        commits.append_soon(
            AppendRequest(stream, (event(),), ANY),
            lambda outcome, stream=stream: heard.append((stream, outcome)),
        )
    await settled(commits)

    (batch,) = log.batches  # one write for all five
    # one request per stream, its events in the order they were queued
    assert [(unit[0].stream_id, len(unit[0].events)) for unit in batch] == [
        ("a", 3),
        ("b", 1),
        ("c", 1),
    ]
    assert [stream for stream, _ in heard] == ["a", "b", "a", "c", "a"]
    results = [outcome for _, outcome in heard]
    assert all(isinstance(outcome, AppendResult) for outcome in results)
    # each caller gets its own event's place, not its merged request's
    assert [(r.stream_id, r.versions) for r in results if isinstance(r, AppendResult)] == [
        ("a", (1,)),
        ("b", (1,)),
        ("a", (2,)),
        ("c", (1,)),
        ("a", (3,)),
    ]


async def test_a_resend_goes_as_a_request_of_its_own_beside_its_stream_s_updates() -> None:
    """A request queued ``alone`` may be stored already: merged with others, it would
    make their request come back 'duplicate' (only part of it stored before)."""
    log = Log()
    commits = GroupCommit(log.write, window=0.05)
    heard: list[Outcome] = []
    commits.append_soon(AppendRequest("a", (event(),), ANY), heard.append)
    commits.append_soon(AppendRequest("a", (event(),), ANY), heard.append, alone=True)
    commits.append_soon(AppendRequest("a", (event(),), ANY), heard.append)
    await settled(commits)

    (batch,) = log.batches
    # and what follows it on its stream is not merged into a request written before it
    assert [[len(request.events) for request in unit] for unit in batch] == [[1], [1], [1]]
    versions = [outcome.versions for outcome in heard if isinstance(outcome, AppendResult)]
    assert versions == [(1,), (2,), (3,)]


async def test_a_caller_that_awaits_does_not_wait_for_the_window() -> None:
    log = Log()
    commits = GroupCommit(log.write, window=3600.0)  # lingering alone would never go
    heard: list[Outcome] = []
    commits.append_soon(AppendRequest("live", (event(),), ANY), heard.append)
    (result,) = await asyncio.wait_for(
        commits.append_batch([AppendRequest("http", [event()], ANY)]), timeout(5)
    )
    assert isinstance(result, AppendResult)
    # the lingering update went with it
    assert [[unit[0].stream_id for unit in batch] for batch in log.batches] == [["live", "http"]]
    assert len(heard) == 1


async def test_what_arrives_during_a_write_goes_together_in_the_next() -> None:
    log = Log()
    log.gate = asyncio.Event()
    commits = GroupCommit(log.write)
    first = asyncio.create_task(commits.append_batch([AppendRequest("s", [event()], ANY)]))
    await asyncio.wait_for(log.writing.wait(), timeout(5))
    later = [
        asyncio.create_task(commits.append_batch([AppendRequest(f"s{i}", [event()], ANY)]))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    assert commits.waiting == 5
    log.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), timeout(5))
    assert [len(batch) for batch in log.batches] == [1, 5]


async def test_a_refused_unit_fails_alone() -> None:
    log = Log()
    log.refuse = {"bad"}
    log.gate = asyncio.Event()
    commits = GroupCommit(log.write)
    blocker = asyncio.create_task(commits.append_batch([AppendRequest("x", [event()], ANY)]))
    await asyncio.wait_for(log.writing.wait(), timeout(5))
    good = asyncio.create_task(commits.append_batch([AppendRequest("good", [event()], ANY)]))
    bad = asyncio.create_task(
        commits.append_batch(
            [AppendRequest("fine", [event()], ANY), AppendRequest("bad", [event()], ANY)]
        )
    )
    live: list[Outcome] = []
    commits.append_soon(AppendRequest("bad", (event(),), ANY), live.append)
    log.gate.set()
    await asyncio.wait_for(blocker, timeout(5))
    (outcome,) = await asyncio.wait_for(good, timeout(5))
    assert isinstance(outcome, AppendResult)
    with pytest.raises(ValueError, match="NUL"):
        await asyncio.wait_for(bad, timeout(5))
    await settled(commits)
    # the lingering update hears an EventStoreError (its writer closes the sender)
    (refused,) = live
    assert isinstance(refused, EventStoreError)
    assert "NUL" in str(refused)
    assert len(log.batches) == 2  # all three went in one write
    assert "fine" not in log.versions  # nothing of the refused caller was written


async def test_a_failed_write_decides_every_caller_of_its_batch() -> None:
    log = Log()
    log.fail = StoreUnavailable("database unreachable")
    commits = GroupCommit(log.write, window=0.01)
    live: list[Outcome] = []
    commits.append_soon(AppendRequest("live", (event(),), ANY), live.append)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(
            commits.append_batch([AppendRequest("http", [event()], ANY)]), timeout(5)
        )
    assert len(live) == 1
    assert isinstance(live[0], StoreUnavailable)
    # the queue goes on with the next batch
    (result,) = await asyncio.wait_for(
        commits.append_batch([AppendRequest("http", [event()], ANY)]), timeout(5)
    )
    assert isinstance(result, AppendResult)


async def test_a_defect_in_the_write_fails_its_batch_and_the_queue_goes_on() -> None:
    log = Log()
    log.fail = RuntimeError("a bug")
    commits = GroupCommit(log.write)
    with pytest.raises(EventStoreError, match="could not be decided"):
        await asyncio.wait_for(
            commits.append_batch([AppendRequest("s", [event()], ANY)]), timeout(5)
        )
    (result,) = await asyncio.wait_for(
        commits.append_batch([AppendRequest("s", [event()], ANY)]), timeout(5)
    )
    assert isinstance(result, AppendResult)


async def test_one_event_id_twice_is_refused_or_waits_a_round() -> None:
    commits = GroupCommit(Log().write)
    same = UUID(int=7)
    with pytest.raises(DuplicateEvent):
        await commits.append_batch(
            [AppendRequest("a", [event(same)], ANY), AppendRequest("b", [event(same)], ANY)]
        )

    # two callers resending one event: they go in two writes (one would fail both)
    log = Log()
    commits = GroupCommit(log.write, window=0.01)
    heard: list[Outcome] = []
    commits.append_soon(AppendRequest("a", (event(same),), ANY), heard.append)
    commits.append_soon(AppendRequest("a", (event(same),), ANY), heard.append)
    await settled(commits)
    assert [len(batch) for batch in log.batches] == [1, 1]
    assert len(heard) == 2


async def test_a_batch_stops_at_its_size() -> None:
    log = Log()
    commits = GroupCommit(log.write, window=3600.0, max_batch=3)
    heard: list[Outcome] = []
    for i in range(6):
        commits.append_soon(AppendRequest(f"s{i}", (event(),), ANY), heard.append)
    await settled(commits)  # a full batch does not wait for the window
    assert [len(batch) for batch in log.batches] == [3, 3]
    assert len(heard) == 6


async def test_a_merged_request_of_several_events_gets_all_its_places() -> None:
    log = Log()
    commits = GroupCommit(log.write, window=0.01)
    heard: list[Outcome] = []
    commits.append_soon(AppendRequest("a", (event(),), ANY), heard.append)
    commits.append_soon(AppendRequest("a", (event(), event()), ANY), heard.append)
    await settled(commits)
    assert [o.versions for o in heard if isinstance(o, AppendResult)] == [(1,), (2, 3)]


async def test_every_caller_is_told_once_even_when_the_batch_goes_wrong_midway() -> None:
    told: list[str] = []

    async def short_answer(units: Sequence[Sequence[AppendRequest]]) -> list[Written]:
        # a defect: one answer for two units
        return [[AppendResult(units[0][0].stream_id, (1,), (1,), ("daid-1",))]]

    commits = GroupCommit(short_answer, window=0.01)
    for stream in ("a", "b"):
        commits.append_soon(
            AppendRequest(stream, (event(),), ANY),
            lambda outcome, stream=stream: told.append(f"{stream}:{type(outcome).__name__}"),
        )
    await settled(commits)
    # "a" heard its answer before the defect showed; "b" hears the defect, and nobody
    # hears twice (the rooms count what they wait for)
    assert told == ["a:AppendResult", "b:EventStoreError"]
