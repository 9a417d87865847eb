"""The projection runner against real PostgreSQL: exactly once through injected
failures, kills and rebuilds; read-your-writes and state through the checkpoint rows
(what a reader in another process sees); failures reported by /ready.

One module (a little over 400 lines) because its tests fold the same counting
projection (``Tally``, and ``Poisoned`` built on it) through the same fixtures; the
parallel rebuild has its own (tests/test_parallel_rebuild.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import httpx
import pytest

from collab.app import create_app
from collab.runtime.config import ReadSettings
from events import EventMetadata, NewEvent
from events.errors import CorruptLog, QueryFailed, StoreUnavailable
from events.models import DocUpdated
from events.pacing import Pacer
from events.postgres import PostgresEventStore
from events.records import StoredEvent
from events.sql import Sql
from events.store import AppendRequest
from projections import quarantine
from projections.fold import Projection, reset
from projections.progress import ProjectionProgress
from projections.runner import LINGER, LINGER_MAX, ProjectionRunner, lingering, rebuild
from tests.support import eventually, timeout, wait_ready

EVENTS = 3000


class Tally:
    """Writes one row per event it folds; can fail once (the database away), or hang, at a
    chosen position."""

    name = "tally"
    tables = ("tally",)

    def __init__(self, fail_at: int | None = None, hang_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.hang_at = hang_at
        self.hanging = asyncio.Event()
        self.forgotten = 0

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        for event in events:
            await tx.execute("insert into tally (position) values ($1)", event.position)
            if event.position == self.fail_at:
                self.fail_at = None
                # A failure that is not the event's (one that is would be quarantined).
                raise StoreUnavailable(f"injected failure at position {event.position}")
            if event.position == self.hang_at:
                self.hanging.set()
                await asyncio.Event().wait()  # until the runner is killed

    def forget(self) -> None:
        self.forgotten += 1


@pytest.fixture
async def store(database_url):
    """A store whose database has the tally table and a log of EVENTS events."""
    store = await PostgresEventStore.connect(database_url, poll_interval=0.1)
    async with store.transaction() as tx:
        await tx.execute("create table tally (position bigint not null)")
    await _fill(store, EVENTS)
    yield store
    await store.close()


async def _fill(store: PostgresEventStore, count: int) -> None:
    meta = EventMetadata(actor="t")
    for start in range(0, count, 500):
        await store.append_batch(
            [
                AppendRequest(f"s-{i % 7}", [NewEvent(DocUpdated(update=b"\x01"), meta)])
                for i in range(start, min(start + 500, count))
            ]
        )


@contextlib.asynccontextmanager
async def running(
    store: PostgresEventStore, projection: Projection
) -> AsyncIterator[ProjectionProgress]:
    """A runner folding ``projection``, and its progress as a reader follows it."""
    progress = ProjectionProgress(store, [projection.name], poll_interval=0.1)
    await progress.start()
    runner = ProjectionRunner(store, [projection], batch_size=500)
    runner.start()
    try:
        yield progress
    finally:
        await runner.stop()
        await progress.stop()


async def _tallied(store: PostgresEventStore) -> tuple[int, int, int, int]:
    row = await store.queries.fetchrow(
        "select count(*) as n, count(distinct position) as d, coalesce(min(position), 0) as lo,"
        " coalesce(max(position), 0) as hi from tally"
    )
    assert row is not None
    return row["n"], row["d"], row["lo"], row["hi"]


async def test_a_failure_mid_batch_is_retried_without_skipping_or_repeating(store):
    tally = Tally(fail_at=1234)
    async with running(store, tally) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        # rows written before the failure in its batch were rolled back with it
        assert await _tallied(store) == (EVENTS, EVENTS, 1, EVENTS)
        (status,) = await progress.status()
        assert (status.state, status.failures, status.error) == ("running", 0, None)
        assert status.lag == 0
        assert tally.forgotten == 1
    (status,) = await progress.status()
    assert status.state == "stopped"


async def test_a_failing_projection_is_reported_from_its_checkpoint_row(store):
    class Refusing(Tally):
        async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
            if events[-1].position > 1000:
                # The database's refusal, not the events': retried, never set aside.
                raise QueryFailed("refused", "42501")
            await super().apply(tx, events)

    async with running(store, Refusing()) as progress:

        async def failing() -> bool:
            (status,) = await progress.status()
            return status.failures >= 2

        await eventually(failing, 30, "the failures were not recorded")
        (status,) = await progress.status()
        assert (status.state, status.position) == ("failing", 1000)
        assert status.error == "QueryFailed: refused"
        assert status.lag == EVENTS - 1000
        assert not await progress.wait(1001, 0.3)


async def test_a_projection_killed_mid_batch_resumes_from_its_checkpoint(store):
    hung = Tally(hang_at=1700)
    async with running(store, hung) as progress:
        await asyncio.wait_for(hung.hanging.wait(), timeout(30))
        assert await progress.wait(1500, timeout(5))
        assert progress.position() == 1500
    # killed inside the batch 1501-2000, rows already written
    assert await _tallied(store) == (1500, 1500, 1, 1500)

    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        assert await _tallied(store) == (EVENTS, EVENTS, 1, EVENTS)


async def test_a_rebuild_under_a_running_projection_starts_it_over(store):
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        await reset(store, Tally())
        assert await _tallied(store) == (0, 0, 0, 0)
        # Readers hear of the reset: the checkpoint moved back.
        await eventually(lambda: progress.position() < EVENTS, 10, "reset not announced")
        # The runner notices at its next batch, and folds everything again.
        await _fill(store, 1)
        await eventually(
            lambda: _all_tallied(store, EVENTS + 1), 30, "projection did not start over"
        )
        assert await progress.wait(EVENTS + 1, timeout(30))


async def _all_tallied(store: PostgresEventStore, count: int) -> bool:
    return await _tallied(store) == (count, count, 1, count)


async def test_wait_gives_up_after_its_time(store):
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        assert not await progress.wait(EVENTS + 10, 0.2)


async def test_wait_sees_moves_it_was_not_told_about(store):
    """A reader whose notification is lost (or that listens to nothing) still learns
    of the checkpoint by reading it while it waits."""
    deaf = ProjectionProgress(store, ["tally"], poll_interval=0.1)  # never started
    async with running(store, Tally()):
        assert await deaf.wait(EVENTS, timeout(30))


@pytest.mark.parametrize("where", ["inline", "worker"])
async def test_ready_reports_a_failing_projection_until_it_recovers(database_url, where):
    app = create_app(database_url, poll_interval=0.1, read=ReadSettings(projections=where))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        assert (await client.get("/ready")).status_code == 200
        conn = await asyncpg.connect(database_url)
        try:
            # The database now refuses the projection's writes.
            await conn.execute(
                "alter table project_history add constraint refuse check (version < 0) not valid"
            )
            created = await client.post("/api/projects", json={"name": "Stuck"})
            assert created.status_code == 201

            await wait_ready(
                client,
                lambda response: response.status_code == 503,
                seconds=10,
                message="/ready did not report the failing projection",
                interval=0.02,
            )
            body = (await client.get("/ready")).json()
            assert body["reason"] == "projection failing: projects"
            assert "refuse" in body["projections"]["projects"]["error"]
            assert body["projections"]["projects"]["lag"] > 0
            await conn.execute("alter table project_history drop constraint refuse")
        finally:
            await conn.close()

        await wait_ready(
            client, seconds=60, message="the projection did not recover", interval=0.02
        )
        project = created.json()
        view = await client.get(
            f"/api/projects/{project['id']}", params={"min_position": project["position"]}
        )
        assert view.status_code == 200
        assert view.json()["name"] == "Stuck"


class Settings:
    """Records the commit setting of the transactions it folds in."""

    name = "settings"
    tables = ("tally",)

    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        self.seen.add(str(await tx.fetchval("show synchronous_commit")))

    def forget(self) -> None:
        """Nothing kept."""


async def test_folds_do_not_wait_for_the_wal_flush_but_appends_do(store):
    projection = Settings()
    async with running(store, projection) as progress:
        assert await progress.wait(EVENTS, timeout(30))
    assert projection.seen == {"off"}
    # The setting is local to the fold's transaction: the pool's connections, which
    # the appends use, keep the server's default.
    async with store.transaction() as tx:
        assert await tx.fetchval("show synchronous_commit") == "on"


async def test_a_paced_loop_lets_other_tasks_run_while_it_works():
    ran_during: list[float] = []
    done = asyncio.Event()

    async def other() -> None:
        while not done.is_set():
            ran_during.append(time.perf_counter())
            await asyncio.sleep(0)

    async def busy() -> float:
        pacer = Pacer(0.001)
        started = time.perf_counter()
        while time.perf_counter() - started < 0.05:  # 50 ms of work
            sum(range(200))
            await pacer.pause()
        done.set()
        return started

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    started = await busy()
    await task
    during = [moment for moment in ran_during if moment > started]
    # Given way about every millisecond: the other task ran many times meanwhile.
    assert len(during) >= 10


async def test_a_runner_that_starts_clears_a_failure_that_no_batch_repeats(store):
    """A failure recorded outside a batch (say the checkpoint could not be read) must
    not leave the projection marked failing once the runner works again."""
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
    await store.queries.execute(
        "update projection_checkpoints set state = 'failing', error = 'was away'"
        " where name = 'tally'"
    )
    async with running(store, Tally()) as progress:

        async def running_again() -> bool:
            (status,) = await progress.status()
            return status.state == "running"

        await eventually(running_again, 10, "the projection stayed failing")


class Poisoned(Tally):
    """Can never fold the events at the ``poison`` positions (what a fold meets in a log
    written before it could handle them); loses its connection each time it folds
    ``cut_at`` while ``down``."""

    def __init__(self, poison: set[int], database_url: str = "", cut_at: int | None = None) -> None:
        super().__init__()
        self.poison = poison
        self.database_url = database_url
        self.cut_at = cut_at
        self.down = cut_at is not None
        self.cuts = 0

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.position == self.cut_at and self.down:
                self.cuts += 1
                # A real outage of the fold's connection: PostgreSQL terminates it.
                pid = await tx.fetchval("select pg_backend_pid()")
                conn = await asyncpg.connect(self.database_url)
                try:
                    await conn.execute("select pg_terminate_backend($1)", pid)
                finally:
                    await conn.close()
            if event.position in self.poison:
                raise ValueError(f"cannot fold {event.position}")
        await super().apply(tx, events)


async def _quarantine_rows(store: PostgresEventStore) -> list[tuple[int, str, str, str]]:
    rows = await store.queries.fetch(
        "select position, stream_id, event_type, reason from projection_quarantine"
        " where projection = 'tally' order by position"
    )
    return [(r["position"], r["stream_id"], r["event_type"], r["reason"]) for r in rows]


async def _expected_quarantine(
    store: PostgresEventStore, poison: set[int]
) -> list[tuple[int, str, str, str]]:
    rows = await store.queries.fetch(
        "select position, stream_id, event_type from events where position = any($1::bigint[])"
        " order by position",
        sorted(poison),
    )
    expected = [
        (r["position"], r["stream_id"], r["event_type"], f"ValueError: cannot fold {r['position']}")
        for r in rows
    ]
    assert len(expected) == len(poison)
    return expected


async def _tallied_positions(store: PostgresEventStore) -> list[int]:
    rows = await store.queries.fetch("select position from tally order by position")
    return [r["position"] for r in rows]


async def test_events_that_never_fold_are_quarantined_and_the_fold_goes_on(store):
    # First and last of the log, two neighbours mid-batch, and one at a batch's end.
    poison = {1, 1234, 1235, 2000, EVENTS, EVENTS + 1}
    async with running(store, Poisoned(poison)) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        # Following the head: a poison event arrives alone, then a good one.
        await _fill(store, 2)
        assert await progress.wait(EVENTS + 2, timeout(30))
        (status,) = await progress.status()
        assert (status.state, status.error, status.failures) == ("running", None, 0)
        assert status.quarantined == len(poison)
        assert [e.position for e in status.quarantined_events] == sorted(poison)
    assert await _quarantine_rows(store) == await _expected_quarantine(store, poison)
    every = set(range(1, EVENTS + 3))
    assert await _tallied_positions(store) == sorted(every - poison)

    # A rebuild forgets them with the read model, and finds them again.
    await reset(store, Tally())
    assert await _quarantine_rows(store) == []
    assert await rebuild(store, Poisoned(poison), 500) > 0
    assert await _quarantine_rows(store) == await _expected_quarantine(store, poison)
    assert await _tallied_positions(store) == sorted(every - poison)


async def test_a_database_outage_during_a_fold_is_retried_not_quarantined(store, database_url):
    # The connection dies whenever the fold reaches 1400 (in the batch that also holds a
    # poison event), until the outage ends: however the batch is cut up, 1400 is never
    # quarantined, and the projection says it is failing meanwhile.
    projection = Poisoned({1500}, database_url, cut_at=1400)
    async with running(store, projection) as progress:

        async def failing() -> bool:
            (status,) = await progress.status()
            return status.state == "failing" and status.failures >= 2

        await eventually(failing, 30, "the outage was not reported")
        assert await _quarantine_rows(store) == []
        projection.down = False
        assert await progress.wait(EVENTS, timeout(30))
        (status,) = await progress.status()
        assert status.state == "running"
    assert projection.cuts >= 2
    assert await _quarantine_rows(store) == await _expected_quarantine(store, {1500})
    assert await _tallied_positions(store) == sorted(set(range(1, EVENTS + 1)) - {1500})


@pytest.mark.parametrize(
    ("error", "quarantined"),
    [
        (ValueError("a value no fold takes"), True),
        (RuntimeError("Cannot apply update"), True),
        (RecursionError("nested too deep"), True),
        (QueryFailed("invalid byte sequence for encoding UTF8: 0x00", "22021"), True),
        (QueryFailed("\\u0000 cannot be converted to text", "22P05"), True),
        (QueryFailed("index row size exceeds maximum", "54000"), True),
        (StoreUnavailable("database unavailable"), False),
        (QueryFailed("violates check constraint", "23514"), False),
        (QueryFailed("could not serialize access", "40001"), False),
        (QueryFailed("could not extend file: No space left on device", "53100"), False),
        (QueryFailed("canceling statement due to statement timeout", "57014"), False),
        (QueryFailed("permission denied for table tally", "42501"), False),
        (QueryFailed("no sqlstate"), False),
        (CorruptLog("hole in the log"), False),
        (AttributeError("a bug in the fold"), False),
        (asyncio.CancelledError(), False),
    ],
)
def test_which_errors_say_an_event_cannot_be_folded(error, quarantined):
    assert quarantine.unfoldable(error) is quarantined


def test_a_busy_log_is_folded_in_longer_waits_and_a_quiet_one_at_once():
    # a few events (an editor's own write): the short wait, so a read of it is quick
    assert lingering(LINGER, 1) == LINGER
    assert lingering(LINGER, 20) == LINGER
    # steady traffic: fewer, larger batches, never past the cap
    assert LINGER < lingering(LINGER, 60) < LINGER_MAX
    assert lingering(LINGER, 10_000) == LINGER_MAX
    # a runner told not to wait (tests, rebuild helpers) never waits
    assert lingering(0.0, 10_000) == 0.0
