"""The event store contract, run against the real PostgreSQL implementation.

Over 400 lines on purpose: the store's contract is one suite, so an adapter is checked
against all of it at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import defaultdict

import asyncpg
import pytest

from events import (
    ANY,
    NO_STREAM,
    AppendRequest,
    AppendResult,
    DuplicateEvent,
    EventMetadata,
    EventStoreError,
    InvalidEvent,
    NewEvent,
    StoredEvent,
    WrongExpectedVersion,
)
from events import daid as daid_module
from events.errors import QueryFailed
from events.models import (
    DocUpdated,
    MemberGranted,
    ProjectCreated,
    SnapshotTagged,
    project_stream,
)
from events.postgres import PostgresEventStore
from events.postgres.subscriptions import Subscriptions
from events.store import CachedState
from tests.support import eventually, timeout
from tests.test_daid import ECOSYSTEM

META = EventMetadata(actor="alice", agent_id="editor", correlation_id="req-1", client_id=42)


def doc(n: int = 1, **kwargs) -> NewEvent:
    return NewEvent(DocUpdated(update=n.to_bytes(4, "big"), client_id=n), META, **kwargs)


def created(name: str = "Song") -> NewEvent:
    return NewEvent(ProjectCreated(name=name, owner="alice"), META)


async def test_append_and_read_back(store: PostgresEventStore):
    first = await store.append("project-a", [created()], NO_STREAM)
    assert (first.versions, first.positions) == ((1,), (1,))
    second = await store.append("project-a", [doc(1), doc(2)], 1)
    assert (second.versions, second.positions) == ((2, 3), (2, 3))
    events = await store.read_stream("project-a")
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.event_type for e in events] == ["project.created", "doc.updated", "doc.updated"]
    assert events[1].payload == (1).to_bytes(4, "big")
    assert events[1].data == {"client_id": 1}
    # stored as given, plus the scheme its hashes were taken in (docs/event-store.md)
    assert events[1].metadata == {**META.model_dump(), "hash_scheme": "rfc8785"}
    assert events[2].to_domain() == DocUpdated(update=(2).to_bytes(4, "big"), client_id=2)
    assert [e.daid for e in events] == [*first.daids, *second.daids]
    assert await store.stream_version("project-a") == 3
    assert await store.stream_version("project-none") == 0
    assert await store.head_position() == 3


async def test_expected_versions(store: PostgresEventStore):
    await store.append("s", [doc()], NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as caught:
        await store.append("s", [doc()], NO_STREAM)
    assert caught.value.current == 1
    assert "no stream" in str(caught.value)
    await store.append("s", [doc()], 1)
    await store.append("s", [doc()], ANY)
    with pytest.raises(WrongExpectedVersion) as caught:
        await store.append("s", [doc()], 2)
    assert (caught.value.expected, caught.value.current) == ("2", 3)
    with pytest.raises(WrongExpectedVersion):
        await store.append("fresh", [doc()], 5)
    assert await store.stream_version("s") == 3


async def test_wrong_expected_version_writes_nothing(store: PostgresEventStore):
    await store.append("s", [doc(), doc()], NO_STREAM)
    head = await store.head_position()
    with pytest.raises(WrongExpectedVersion):
        await store.append("s", [doc(), doc(), doc()], 1)
    assert await store.head_position() == head
    assert len(await store.read_all()) == 2
    # the counter was not consumed: the next append gets the next dense position
    result = await store.append("s", [doc()], 2)
    assert result.positions == (3,)


async def test_concurrent_writers_with_same_expected_version(store: PostgresEventStore):
    await store.append("race", [doc()], NO_STREAM)
    outcomes = await asyncio.gather(
        *(store.append("race", [doc(i)], 1) for i in range(6)), return_exceptions=True
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, WrongExpectedVersion)]
    assert len(winners) == 1
    assert len(losers) == 5
    assert all(loser.current == 2 for loser in losers)
    assert [e.position for e in await store.read_all()] == [1, 2]


async def test_idempotent_retry_returns_the_stored_result(store: PostgresEventStore):
    batch = [doc(1), doc(2)]
    first = await store.append("s", batch, NO_STREAM)
    await store.append("s", [doc(3)], ANY)
    # The retry's expected version is stale by now, and its DAID timestamps differ:
    # it is still the same content under the same ids, so it returns what was stored.
    again = await store.append("s", batch, NO_STREAM)
    assert again == first
    retried_meta = [
        NewEvent(e.event, META.model_copy(update={"correlation_id": "retry"}), event_id=e.event_id)
        for e in batch
    ]
    assert await store.append("s", retried_meta, ANY) == first
    assert await store.head_position() == 3


async def test_same_event_id_with_different_content_is_refused(store: PostgresEventStore):
    event_id = uuid.uuid4()
    await store.append("s", [doc(1, event_id=event_id)])
    with pytest.raises(DuplicateEvent) as caught:
        await store.append("s", [doc(2, event_id=event_id)])
    assert caught.value.event_id == event_id
    with pytest.raises(DuplicateEvent):
        await store.append("other-stream", [doc(1, event_id=event_id)])
    # a request that is only partly stored is not a retry
    with pytest.raises(DuplicateEvent, match="only part"):
        await store.append("s", [doc(1, event_id=event_id), doc(3)])
    twin = uuid.uuid4()
    with pytest.raises(DuplicateEvent, match="twice"):
        await store.append("s", [doc(1, event_id=twin), doc(1, event_id=twin)])
    assert await store.head_position() == 1


async def test_batched_append_across_streams(store: PostgresEventStore):
    await store.append("b", [doc()], NO_STREAM)
    results = await store.append_batch(
        [
            AppendRequest("a", [doc(1), doc(2)], NO_STREAM),
            AppendRequest("b", [doc(3)], NO_STREAM),  # fails alone
            AppendRequest("c", [doc(4)], ANY),
            AppendRequest("a", [doc(5)], 2),  # the same stream again, after the first request
        ]
    )
    assert isinstance(results[1], WrongExpectedVersion)
    assert results[1].current == 1
    ok = [r for r in results if not isinstance(r, Exception)]
    assert [(r.stream_id, r.versions, r.positions) for r in ok] == [
        ("a", (1, 2), (2, 3)),
        ("c", (1,), (4,)),
        ("a", (3,), (5,)),
    ]
    assert [e.position for e in await store.read_all()] == [1, 2, 3, 4, 5]
    # all successful requests share one transaction, hence one recorded_at
    batch_times = {e.recorded_at for e in await store.read_all(after_position=1)}
    assert len(batch_times) == 1


async def test_concurrent_appends_share_a_transaction(store: PostgresEventStore):
    await store.append("taken", [doc()], NO_STREAM)
    calls = [store.append(f"s{i}", [doc(i), doc(i + 100)], NO_STREAM) for i in range(20)]
    calls.append(store.append("taken", [doc()], NO_STREAM))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[-1], WrongExpectedVersion)
    results = outcomes[:-1]
    assert all(not isinstance(r, BaseException) for r in results)
    assert sorted(p for r in results for p in r.positions) == list(range(2, 42))
    events = await store.read_all(after_position=1)
    # queued while the first append was in flight, then committed together
    assert len({e.recorded_at for e in events}) <= 2
    assert {e.stream_id for e in events} == {f"s{i}" for i in range(20)}


async def test_cancelled_caller_does_not_disturb_others(store: PostgresEventStore):
    first = asyncio.create_task(store.append("a", [doc(1)]))
    second = asyncio.create_task(store.append("b", [doc(2)]))
    await asyncio.sleep(0)
    second.cancel()
    assert (await first).positions == (1,)
    with pytest.raises(asyncio.CancelledError):
        await second
    # the cancelled append may or may not have been written, but the log stays dense
    events = await store.read_all()
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    assert (await store.append("c", [doc(3)])).positions == (len(events) + 1,)


async def test_read_stream_ranges(store: PostgresEventStore):
    await store.append("s", [doc(i) for i in range(1, 11)])
    versions = lambda events: [e.stream_version for e in events]  # noqa: E731
    assert versions(await store.read_stream("s", from_version=4, to_version=6)) == [4, 5, 6]
    assert versions(await store.read_stream("s", backward=True, limit=3)) == [10, 9, 8]
    assert versions(await store.read_stream("s", to_version=5, backward=True, limit=2)) == [5, 4]
    assert versions(await store.read_stream("s", from_version=9)) == [9, 10]
    assert await store.read_stream("missing") == []


async def test_read_all_in_batches(store: PostgresEventStore):
    for i in range(7):
        await store.append(f"s{i % 3}", [doc(i)])
    seen, last = [], 0
    while batch := await store.read_all(after_position=last, limit=3):
        seen.extend(e.position for e in batch)
        last = batch[-1].position
    assert seen == list(range(1, 8))


async def test_read_share_splits_the_log_by_stream(store: PostgresEventStore):
    streams = [project_stream(str(i)) for i in range(12)]
    for i in range(60):
        await store.append(streams[i % 12], [doc(i)])
    every = await store.read_all(limit=100)
    for shares in (1, 3):
        parts = []
        for share in range(shares):
            part, last = [], 10
            while batch := await store.read_share(
                share, shares, after_position=last, to_position=50, limit=4
            ):
                part.extend(batch)
                last = batch[-1].position
            parts.append(part)
        # Together the shares are the log between the bounds, once, in order...
        together = sorted((e for part in parts for e in part), key=lambda e: e.position)
        assert together == every[10:50]
        # ... and each stream is wholly in one of them.
        owners = {e.stream_id: i for i, part in enumerate(parts) for e in part}
        assert all(owners[e.stream_id] == i for i, part in enumerate(parts) for e in part)
        assert all(p == sorted(p, key=lambda e: e.position) for p in parts)
    assert len({*owners.values()}) == 3  # 12 streams over 3 shares: none is empty
    with pytest.raises(ValueError, match="share 3 is not one of 0 to 2"):
        await store.read_share(3, 3, after_position=0, to_position=10)


@pytest.mark.parametrize(
    "statement",
    [
        "update events set data = '{}'::jsonb",
        "update events set position = position + 100",
        "delete from events",
        "truncate events",
        "truncate events cascade",
    ],
)
async def test_database_refuses_changing_events(store, database_url, statement):
    await store.append("s", [doc()])
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert len(await store.read_all()) == 1


async def test_invalid_event_is_refused_before_anything_is_written(store: PostgresEventStore):
    # model_construct skips validation: the store validates again before writing.
    bad = NewEvent(SnapshotTagged.model_construct(name="", version=-1, description=""), META)
    with pytest.raises(InvalidEvent) as caught:
        await store.append("s", [doc(), bad])
    assert set(caught.value.fields) == {"name", "version"}
    with pytest.raises(ValueError, match="NUL"):
        await store.append("s", [NewEvent(ProjectCreated(name="a\x00b", owner="x"), META)])
    with pytest.raises(ValueError, match="no events"):
        await store.append("s", [])
    with pytest.raises(ValueError, match="stream id"):
        await store.append("", [doc()])
    assert await store.head_position() == 0
    assert await store.read_all() == []


async def test_stored_json_reproduces_its_hash(store: PostgresEventStore):
    tricky = {
        "floats": [0.1, 2.0, 1.5e-7, -0.0, 1e21, 123456789.125, -3.5e-10],
        "ints": [0, -1, 2**62],
        "text": 'é ✓ \u2028 "quoted" \\ \t tab 🎵',
        "nested": {"z": [], "a": {"b": None, "c": True}},
    }
    await store.append("s", [NewEvent(ProjectCreated(name="x", owner="y", metadata=tricky), META)])
    (event,) = await store.read_all()
    assert event.to_domain() == ProjectCreated(name="x", owner="y", metadata=tricky)
    report = await store.verify()
    assert report.ok, report.first_break
    assert report.events == 1


async def test_daids_cover_content_and_parents(store: PostgresEventStore):
    parent_result = await store.append("s", [doc(1)])
    with_parents = await store.append("s", [doc(1, parents=(parent_result.daids[0], ECOSYSTEM[0]))])
    (stored,) = await store.read_stream("s", from_version=2)
    parsed = daid_module.parse(stored.daid)
    assert stored.daid == with_parents.daids[0]
    assert (parsed.agent_id, parsed.entity_type, parsed.entity_id) == (
        "editor",
        "project_version",
        str(stored.event_id),
    )
    assert stored.parents == (parent_result.daids[0], ECOSYSTEM[0])
    assert daid_module.parse(parent_result.daids[0]).hash16 != parsed.hash16


async def test_each_version_derives_from_the_previous_version(store: PostgresEventStore):
    made = await store.append("project-v", [created()], NO_STREAM)
    tagged = NewEvent(SnapshotTagged(name="mix", version=1), META)
    await store.append("project-v", [doc(1), tagged, doc(2)])
    await store.append_batch(
        [AppendRequest("project-v", [doc(3)]), AppendRequest("project-v", [doc(4)])]
    )
    await store.append("project-v", [doc(5, parents=(ECOSYSTEM[1],))])
    events = await store.read_stream("project-v")
    assert events[0].daid == made.daids[0]
    assert events[0].parents == ()
    versions = [e for e in events if e.event_type != "snapshot.tagged"]
    for previous, event in itertools.pairwise(versions):
        assert event.parents[0] == previous.daid
    assert events[-1].parents == (versions[-2].daid, ECOSYSTEM[1])
    # not a version: it names no implicit parent
    assert next(e for e in events if e.event_type == "snapshot.tagged").parents == ()
    report = await store.verify()
    assert report.ok, report.first_break


async def test_version_lineage_stays_linear_with_two_writers(database_url: str):
    # Two stores are two server processes: each guesses the stream's tip from what it
    # wrote itself, and the database corrects the guess whenever the other one wrote.
    first = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    second = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    try:
        await first.append("project-two", [created()], NO_STREAM)

        async def write(store: PostgresEventStore, start: int) -> None:
            for n in range(start, start + 40):
                await store.append("project-two", [doc(n)])
                await asyncio.sleep(random.random() * 0.002)

        async def hammer(store: PostgresEventStore, start: int) -> None:
            # no pause at all: the other store's guesses go stale at every append, and
            # only its retries under the stream's lock get its updates through
            for n in range(start, start + 40):
                await store.append("project-two", [doc(n)])

        await asyncio.gather(write(first, 0), write(second, 1000))
        await asyncio.gather(hammer(first, 2000), hammer(second, 3000), hammer(first, 4000))
    finally:
        await first.close()
        await second.close()
    verifier = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    try:
        events = await verifier.read_stream("project-two")
        assert len(events) == 201
        for previous, event in itertools.pairwise(events):
            assert event.parents == (previous.daid,)
        assert (await verifier.verify()).ok
    finally:
        await verifier.close()


async def test_retry_of_a_version_after_the_tip_moved_is_still_idempotent(
    store: PostgresEventStore, database_url: str
):
    await store.append("project-r", [created()], NO_STREAM)
    first = await store.append("project-r", [doc(1)])
    again = await store.append("project-r", [doc(1, event_id=(await _ids(store))[-1])])
    assert again == first
    # another process retries it, knowing the tip only from the database
    other = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    try:
        retried = await other.append("project-r", [doc(1, event_id=(await _ids(store))[-1])])
    finally:
        await other.close()
    assert retried == first
    assert await store.head_position() == 2


async def _ids(store: PostgresEventStore) -> list[uuid.UUID]:
    return [event.event_id for event in await store.read_stream("project-r")]


async def _tail(store: PostgresEventStore, into: list, after: int = 0, stop_at: int | None = None):
    async for event in store.subscribe(after):
        into.append(event)
        if stop_at is not None and len(into) >= stop_at:
            return


async def test_subscription_catches_up_then_follows(store: PostgresEventStore):
    for i in range(5):
        await store.append("s", [doc(i)])
    seen: list = []
    task = asyncio.create_task(_tail(store, seen, after=2))
    try:
        await eventually(lambda: len(seen) == 3, 5, "catch-up")
        await store.append("s", [doc(9), doc(10)])
        await eventually(lambda: len(seen) == 5, 5, "follow new events")
        assert [e.position for e in seen] == [3, 4, 5, 6, 7]
    finally:
        task.cancel()


async def test_eight_writers_with_random_delays_and_a_tailing_subscriber(database_url):
    """Invariant 2: the tail sees every event exactly once, in position order, no gaps."""
    rng = random.Random(20261121)
    total, writers = 10_000, 8

    async def hold_transaction_open() -> None:
        if rng.random() < 0.3:
            await asyncio.sleep(rng.uniform(0, 0.004))

    # One store per writer: a store coalesces its own concurrent appends into one
    # transaction, and this test needs eight transactions racing for positions.
    writer_stores = [
        await PostgresEventStore.connect(
            database_url, max_size=1, before_commit=hold_transaction_open
        )
        for _ in range(writers)
    ]
    reader = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    seen: list = []
    tail = asyncio.create_task(_tail(reader, seen, stop_at=total))
    appended: dict[str, list[uuid.UUID]] = defaultdict(list)
    remaining = [total]

    async def writer(index: int) -> None:
        while remaining[0] > 0:
            size = min(rng.randint(1, 5), remaining[0])
            remaining[0] -= size
            stream = f"w{index}-{rng.randint(0, 2)}"
            batch = [doc(rng.randint(0, 1000)) for _ in range(size)]
            await writer_stores[index].append(stream, batch)
            appended[stream].extend(e.event_id for e in batch)

    try:
        await asyncio.gather(*(writer(i) for i in range(writers)))
        await asyncio.wait_for(tail, timeout(60))
    finally:
        tail.cancel()
        for writer_store in writer_stores:
            await writer_store.close()
        await reader.close()
    assert [e.position for e in seen] == list(range(1, total + 1))
    assert len({e.event_id for e in seen}) == total
    by_stream: dict[str, list] = defaultdict(list)
    for event in seen:
        by_stream[event.stream_id].append(event)
    for stream, events in by_stream.items():
        assert [e.event_id for e in events] == appended[stream]
        assert [e.stream_version for e in events] == list(range(1, len(events) + 1))


async def test_subscription_survives_a_terminated_listen_connection(store, database_url):
    seen: list = []
    task = asyncio.create_task(_tail(store, seen))
    admin = await asyncpg.connect(database_url)
    try:
        await store.append("s", [doc(1)])
        await eventually(lambda: len(seen) == 1, 5, "first event")
        listeners = await admin.fetch(
            "select pid from pg_stat_activity where datname = current_database()"
            " and query ilike 'listen%'"
        )
        assert listeners, "the subscriber should hold a LISTEN connection"
        for row in listeners:
            await admin.execute("select pg_terminate_backend($1)", row["pid"])
        for i in range(2, 12):
            await store.append("s", [doc(i)])
        await eventually(lambda: len(seen) == 11, 10, "events after the listener was killed")
        # and it listens again (notifications, not only polling, resume)
        await eventually(
            lambda: admin.fetchval(
                "select count(*) > 0 from pg_stat_activity where datname = current_database()"
                " and query ilike 'listen%'"
            ),
            10,
            "LISTEN connection re-established",
        )
        assert [e.position for e in seen] == list(range(1, 12))
    finally:
        task.cancel()
        await admin.close()


class _DeafSubscriptions(Subscriptions):
    """Fault injection: every notification is lost (the LISTEN never happens)."""

    async def _listen(self, wakeup):  # type: ignore[override]
        return None


class _DeafStore(PostgresEventStore):
    """A store whose subscriptions never hear a notification."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._subscriptions = _DeafSubscriptions(self._db, self._reads, kwargs["poll_interval"])


async def test_subscription_survives_lost_notifications(database_url):
    deaf = await _DeafStore.connect(database_url, poll_interval=0.1)
    seen: list = []
    task = asyncio.create_task(_tail(deaf, seen))
    try:
        for i in range(20):
            await deaf.append("s", [doc(i)])
        await eventually(lambda: len(seen) == 20, 10, "polling delivers without notifications")
        assert [e.position for e in seen] == list(range(1, 21))
    finally:
        task.cancel()
        await deaf.close()


async def test_driver_errors_surface_as_store_errors(empty_database_url):
    """Nothing outside events/postgres/ sees an asyncpg exception."""
    unmigrated = await PostgresEventStore.connect(empty_database_url)
    try:
        with pytest.raises(QueryFailed, match="query failed") as caught:
            await unmigrated.head_position()
        assert not isinstance(caught.value, asyncpg.PostgresError)
        assert caught.value.sqlstate == "42P01"  # undefined table
        with pytest.raises(QueryFailed, match="does not exist"):
            await unmigrated.queries.fetch("select * from projects")
        with pytest.raises(QueryFailed, match="does not exist"):
            async with unmigrated.transaction() as tx:
                await tx.execute("insert into projects (project_id) values (gen_random_uuid())")
        with pytest.raises(EventStoreError, match="append failed"):
            await unmigrated.append("s", [NewEvent(SnapshotTagged(name="v", version=0), META)])
        # a version event first asks for the stream's version tip
        with pytest.raises(QueryFailed, match="does not exist"):
            await unmigrated.append("s", [doc()])
    finally:
        await unmigrated.close()


async def test_read_payloads_returns_only_the_asked_types_in_order(store: PostgresEventStore):
    await store.append("project-p", [created(), doc(1), doc(2)])
    await store.append("project-p", [NewEvent(SnapshotTagged(name="v", version=3), META), doc(3)])
    await store.append("project-q", [doc(9)])
    records = await store.read_payloads("project-p", ["doc.updated"])
    assert [(r.version, r.event_type, r.payload) for r in records] == [
        (2, "doc.updated", (1).to_bytes(4, "big")),
        (3, "doc.updated", (2).to_bytes(4, "big")),
        (5, "doc.updated", (3).to_bytes(4, "big")),
    ]
    after = await store.read_payloads("project-p", ["doc.updated"], after_version=3, limit=5)
    assert [r.version for r in after] == [5]
    assert [
        r.version for r in await store.read_payloads("project-p", ["doc.updated"], limit=1)
    ] == [2]
    assert [r.position for r in records] == [2, 3, 5]


async def test_stream_versions_in_one_read(store: PostgresEventStore):
    await store.append("project-p", [created(), doc(1), doc(2)])
    await store.append("project-q", [doc(9)])
    assert await store.stream_versions(["project-p", "project-q", "project-none"]) == {
        "project-p": 3,
        "project-q": 1,
    }
    assert await store.stream_versions([]) == {}


async def test_read_records_skips_document_updates(store: PostgresEventStore):
    await store.append("project-p", [created(), doc(1), doc(2)])
    await store.append("project-p", [NewEvent(SnapshotTagged(name="v", version=3), META), doc(3)])
    await store.append("project-p", [NewEvent(MemberGranted(user="bob", role="viewer"), META)])
    await store.append("project-q", [NewEvent(MemberGranted(user="eve", role="owner"), META)])
    kinds = ["project.created", "member.granted", "doc.updated"]
    records = await store.read_records("project-p", kinds)
    # doc.updated is never a record, even when asked for
    assert [(r.stream_version, r.event_type) for r in records] == [
        (1, "project.created"),
        (6, "member.granted"),
    ]
    assert records[1].data == {"user": "bob", "role": "viewer"}
    later = await store.read_records("project-p", kinds, after_version=1)
    assert [r.stream_version for r in later] == [6]
    assert await store.read_records("project-none", kinds) == []


async def test_state_cache_keeps_the_newest_state(store: PostgresEventStore):
    assert await store.load_state("project-p") is None
    await store.save_state(CachedState("project-p", 5, 12, b"five"))
    await store.save_state(CachedState("project-p", 3, 7, b"three"))  # older: ignored
    assert await store.load_state("project-p") == CachedState("project-p", 5, 12, b"five")
    await store.save_state(CachedState("project-p", 8, 20, b"eight"))
    assert await store.load_state("project-p") == CachedState("project-p", 8, 20, b"eight")
    await store.clear_state_cache()
    assert await store.load_state("project-p") is None


class _Gate:
    """A ``before_commit`` hook that holds each transaction while the gate is shut, so
    that the appends arriving meanwhile queue behind it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.holding = asyncio.Event()

    async def __call__(self) -> None:
        if not self.open.is_set():
            self.holding.set()
            await self.open.wait()


async def test_one_group_commit_takes_live_and_awaited_appends_and_refuses_alone(
    database_url: str,
) -> None:
    """What waits while a transaction is in flight goes in the next one together (the
    rooms' lingering updates and callers that await); a caller whose events cannot be
    written is refused alone, and nothing of it is stored."""
    gate = _Gate()
    store = await PostgresEventStore.connect(database_url, before_commit=gate, commit_window=0.001)
    try:
        first = asyncio.create_task(store.append("first", [doc(0)]))
        await asyncio.wait_for(gate.holding.wait(), timeout(10))
        live: list[AppendResult | EventStoreError] = []
        for n in range(3):
            store.append_soon(AppendRequest("live", (doc(n),), ANY), live.append)
        good = asyncio.create_task(store.append("good", [doc(1)]))
        bad = asyncio.create_task(
            store.append_batch(
                [
                    AppendRequest("fine", [doc(2)]),
                    AppendRequest(
                        "bad", [NewEvent(ProjectCreated(name="a\x00b", owner="x"), META)]
                    ),
                ]
            )
        )
        await asyncio.sleep(0.05)  # all three queue behind the held transaction
        gate.open.set()
        await asyncio.wait_for(first, timeout(10))
        result = await asyncio.wait_for(good, timeout(10))
        with pytest.raises(ValueError, match="NUL"):
            await asyncio.wait_for(bad, timeout(10))
        await eventually(lambda: len(live) == 3, 10, "the live appends were not decided")
    finally:
        await store.close()
    assert all(isinstance(outcome, AppendResult) for outcome in live)
    assert [o.versions for o in live if isinstance(o, AppendResult)] == [(1,), (2,), (3,)]
    events = await _read_everything(database_url)
    assert [(e.stream_id, e.stream_version) for e in events] == [
        ("first", 1),
        ("live", 1),
        ("live", 2),
        ("live", 3),
        ("good", 1),
    ]
    # the second transaction held all of them: one commit time
    assert len({e.recorded_at for e in events[1:]}) == 1
    assert result.positions == (5,)


async def test_a_resent_update_comes_back_stored_beside_new_updates_of_its_stream(
    database_url: str,
) -> None:
    """A node that forwarded an update and got no answer appends it itself, beside its
    stream's newer updates, in one batch: the one stored already comes back as stored,
    the new ones are appended after it, and none of them fails."""
    gate = _Gate()
    store = await PostgresEventStore.connect(database_url, before_commit=gate, commit_window=0.001)
    try:
        stored_before = doc(0)
        gate.open.set()
        (first,) = await asyncio.wait_for(
            store.append_batch([AppendRequest("room", [stored_before], ANY)]), timeout(10)
        )
        assert isinstance(first, AppendResult)
        gate.open.clear()
        held = asyncio.create_task(store.append("other", [doc(9)]))
        await asyncio.wait_for(gate.holding.wait(), timeout(10))
        live: list[AppendResult | EventStoreError] = []
        store.append_soon(AppendRequest("room", (doc(1),), ANY), live.append)
        store.append_soon(AppendRequest("room", (stored_before,), ANY), live.append, alone=True)
        store.append_soon(AppendRequest("room", (doc(2),), ANY), live.append)
        await asyncio.sleep(0.05)  # all three queue behind the held transaction
        gate.open.set()
        await asyncio.wait_for(held, timeout(10))
        await eventually(lambda: len(live) == 3, 10, "the live appends were not decided")
    finally:
        await store.close()
    assert all(isinstance(outcome, AppendResult) for outcome in live), live
    versions = [o.versions for o in live if isinstance(o, AppendResult)]
    assert versions == [(2,), first.versions, (3,)]
    events = await _read_everything(database_url)
    assert [(e.stream_id, e.stream_version) for e in events if e.stream_id == "room"] == [
        ("room", 1),
        ("room", 2),
        ("room", 3),
    ]


async def _read_everything(database_url: str) -> list[StoredEvent]:
    reader = await PostgresEventStore.connect(database_url)
    try:
        return await reader.read_all()
    finally:
        await reader.close()


async def test_a_refused_caller_leaves_the_version_lineage_of_its_streams_as_it_was(
    database_url: str,
) -> None:
    """A caller refused in the middle of a batch shares a stream with the callers around
    it: they still derive from each other, first try (no stream is left contended)."""
    gate = _Gate()
    gate.open.set()
    store = await PostgresEventStore.connect(database_url, before_commit=gate)
    try:
        # the store now remembers the stream's tip
        await asyncio.wait_for(store.append("s", [doc(0)]), timeout(10))
        gate.open.clear()
        first = asyncio.create_task(store.append("other", [doc(0)]))
        await asyncio.wait_for(gate.holding.wait(), timeout(10))
        before = asyncio.create_task(store.append("s", [doc(1)]))
        refused = asyncio.create_task(
            store.append_batch(
                [
                    AppendRequest("s", [doc(2)]),
                    AppendRequest("t", [NewEvent(ProjectCreated(name="a\x00", owner="x"), META)]),
                ]
            )
        )
        after = asyncio.create_task(store.append("s", [doc(3)]))
        await asyncio.sleep(0.05)
        gate.open.set()
        await asyncio.wait_for(first, timeout(10))
        made, then = await asyncio.wait_for(asyncio.gather(before, after), timeout(10))
        with pytest.raises(ValueError, match="NUL"):
            await asyncio.wait_for(refused, timeout(10))
        assert (made.versions, then.versions) == ((2,), (3,))
        (stored,) = await store.read_stream("s", from_version=3)
        assert stored.parents[0] == made.daids[0]
        # a wrong guess would have marked the stream contended for two seconds
        assert "s" not in store._appender._contended_until
    finally:
        await store.close()
