"""A rebuild in several processes (``projections.sharded``) against real PostgreSQL:
every event folded once across the shares; a running projection waits for it and
resumes from its head; a share that fails or dies leaves the read model empty for a
fresh fold; a rebuild whose process died is started over by the runner; a runner far
behind catches up in parallel from its checkpoint (or, when that fails, by itself).

The shares run in spawned processes: what they fold is made by the module-level
opener below (the tally of ``tests.test_projection_runner``, one row per event)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from collab.app import create_app
from collab.runtime.config import ReadSettings
from events.postgres import PostgresEventStore
from events.records import StoredEvent
from events.sql import Sql
from projections import fold as fold_module
from projections.fold import Projection, RebuildRunning, rebuild_lock, reset, try_rebuild_lock
from projections.progress import ProjectionProgress
from projections.runner import ProjectionRunner, Store
from projections.sharded import RebuildFailed, fold_in_parallel
from tests.support import eventually, run_collab, timeout
from tests.test_projection_runner import EVENTS, Tally, _fill, _tallied, running, store

__all__ = ["store"]  # the fixture, shared with the runner's tests


class Exiting(Tally):
    """Ends its process without a word at a chosen position (a killed share)."""

    def __init__(self, exit_at: int) -> None:
        super().__init__()
        self.exit_at = exit_at

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        if any(e.position == self.exit_at for e in events):
            os._exit(9)
        await super().apply(tx, events)


@contextlib.asynccontextmanager
async def tally_share(
    database_url: str, fail_at: int | None = None, exit_at: int | None = None
) -> AsyncIterator[tuple[Store, Projection]]:
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=2)
    try:
        yield store, (Exiting(exit_at) if exit_at else Tally(fail_at=fail_at))
    finally:
        await store.close()


def _fold(
    store: PostgresEventStore,
    database_url: str,
    *,
    jobs: int = 2,
    batch_size: int = 300,
    rebuild: bool = True,
    tally: Tally | None = None,
    progress: Callable[[int], None] | None = None,
    **how: int | None,
) -> Coroutine[Any, Any, int]:
    """The tally folded in parallel; ``how`` goes to each share's :func:`tally_share`."""
    return fold_in_parallel(
        store,
        tally or Tally(),
        functools.partial(tally_share, database_url, **how),
        jobs=jobs,
        batch_size=batch_size,
        rebuild=rebuild,
        progress=progress,
    )


async def _checkpoints(database_url: str) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("select name, position, state from projection_checkpoints")
        return {r["name"]: (r["position"], r["state"]) for r in rows}
    finally:
        await conn.close()


async def test_a_parallel_rebuild_folds_every_event_once(store, database_url):
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
    seen: list[int] = []
    folded = await _fold(store, database_url, jobs=3, batch_size=400, progress=seen.append)
    assert folded == EVENTS
    assert await _tallied(store) == (EVENTS, EVENTS, 1, EVENTS)
    # The shares' rows are gone; the projection's own is at the head.
    assert await _checkpoints(database_url) == {"tally": (EVENTS, "stopped")}
    assert seen[-1] == EVENTS
    assert seen == sorted(seen)


async def test_a_running_projection_waits_for_the_rebuild_and_resumes_from_its_head(
    store, database_url
):
    tally = Tally()
    async with running(store, tally) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        rebuilding = asyncio.create_task(_fold(store, database_url))

        async def marked() -> bool:
            return (await _checkpoints(database_url))["tally"][1] == "rebuilding"

        await eventually(marked, 30, "the rebuild never marked the projection")
        # Appended while the shares fold up to the head they started with: the
        # running projection must fold these, once, after the rebuild.
        await _fill(store, 100)
        assert await rebuilding == EVENTS
        assert await progress.wait(EVENTS + 100, timeout(30))
        assert await _tallied(store) == (EVENTS + 100, EVENTS + 100, 1, EVENTS + 100)
        assert tally.forgotten >= 1  # its documents from before the rebuild were dropped
        (status,) = await progress.status()
        assert (status.state, status.failures) == ("running", 0)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ({"fail_at": 1234}, "StoreUnavailable: injected failure at position 1234"),
        ({"exit_at": 1234}, "its process ended without a result"),
    ],
)
async def test_a_failed_share_leaves_the_read_model_empty_for_a_fresh_fold(
    store, database_url, how, message
):
    with pytest.raises(RebuildFailed, match=message):
        await _fold(store, database_url, batch_size=500, **how)
    assert await _tallied(store) == (0, 0, 0, 0)
    assert await _checkpoints(database_url) == {"tally": (0, "stopped")}
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
        assert await _tallied(store) == (EVENTS, EVENTS, 1, EVENTS)


@contextlib.asynccontextmanager
async def rebuilding(database_url: str, name: str) -> AsyncIterator[asyncpg.Connection]:
    """A session holding ``name``'s rebuild lock, its checkpoint marked ``rebuilding``,
    as a rebuilding process does; closing it is that process dying."""
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("select pg_advisory_lock(hashtext($1))", rebuild_lock(name))
        await holder.execute(
            "insert into projection_checkpoints (name, state) values ($1, 'rebuilding')", name
        )
        yield holder
    finally:
        if not holder.is_closed():
            await holder.close()


async def test_a_rebuild_whose_process_died_is_started_over_by_the_runner(
    store, database_url, monkeypatch
):
    refused: list[str] = []  # each time a runner found the rebuild lock taken

    async def counting_lock(tx: Sql, name: str) -> bool:
        taken = await try_rebuild_lock(tx, name)
        if not taken:
            refused.append(name)
        return taken

    monkeypatch.setattr(fold_module, "try_rebuild_lock", counting_lock)
    async with rebuilding(database_url, "tally") as holder:
        # Half-way: a share's rows and checkpoint.
        await holder.execute(
            "insert into projection_checkpoints (name, position, state)"
            " values ('tally#1/2', 900, 'stopped')"
        )
        await holder.execute("insert into tally select generate_series(1, 900)")
        with pytest.raises(RebuildRunning):
            await reset(store, Tally())
        with pytest.raises(RebuildRunning):
            await _fold(store, database_url, batch_size=1)
        refused.clear()
        async with running(store, Tally()) as progress:
            # The runner has found the rebuild lock taken, waited and looked again.
            await eventually(
                lambda: len(refused) >= 2, 10, "the runner did not wait for the rebuild"
            )
            # Still its process's: nothing folded, nothing emptied.
            assert await _tallied(store) == (900, 900, 1, 900)
            assert (await _checkpoints(database_url))["tally"] == (0, "rebuilding")
            (status,) = await progress.status()
            assert (status.state, status.position, status.shares) == ("rebuilding", 0, (900,))
            await holder.close()  # the rebuilding process dies

            async def refolded() -> bool:
                return await _tallied(store) == (EVENTS, EVENTS, 1, EVENTS)

            await eventually(refolded, 30, "the abandoned rebuild was not started over")
            assert await _checkpoints(database_url) == {"tally": (EVENTS, "running")}


async def test_the_rebuild_lock_is_one_holders(store):
    async with store.transaction() as first:
        assert await try_rebuild_lock(first, "tally")
        async with store.transaction() as second:
            assert not await try_rebuild_lock(second, "tally")
    async with store.transaction() as later:
        assert await try_rebuild_lock(later, "tally")


@pytest.mark.parametrize("jobs", ["1", "2"])
async def test_the_command_refuses_while_another_process_rebuilds(database_url, jobs):
    async with rebuilding(database_url, "projects") as holder:
        await holder.execute(
            "insert into projection_checkpoints (name, position) values"
            " ('projects#2/2', 0), ('projects#1/2', 7)"
        )
        done = await asyncio.to_thread(
            run_collab, database_url, "projections", "rebuild", "projects", "--jobs", jobs
        )
        assert done.returncode == 4, done.stderr
        assert "projection projects is being rebuilt by another process" in done.stderr
        assert (await _checkpoints(database_url))["projects"] == (0, "rebuilding")
        status = await asyncio.to_thread(run_collab, database_url, "projections", "status")
        assert "projects: position 0 of 0, lag 0, rebuilding, 2 shares at 7, 0" in status.stdout


@pytest.mark.parametrize("fail_at", [None, EVENTS + 500])
async def test_a_runner_far_behind_catches_up_in_parallel(store, database_url, fail_at):
    async with running(store, Tally()) as progress:
        assert await progress.wait(EVENTS, timeout(30))
    await _fill(store, 2000)
    tally = Tally()
    outcomes: list[int | str] = []

    async def parallel() -> int:
        try:
            folded = await _fold(store, database_url, rebuild=False, tally=tally, fail_at=fail_at)
        except RebuildFailed as exc:
            outcomes.append(str(exc))
            raise
        outcomes.append(folded)
        return folded

    runner = ProjectionRunner(
        store, [tally], batch_size=500, parallel={"tally": parallel}, parallel_lag=1000
    )
    progress = ProjectionProgress(store, ["tally"], poll_interval=0.1)
    await progress.start()
    runner.start()
    try:
        assert await progress.wait(EVENTS + 2000, timeout(60))
        await _fill(store, 10)  # then it follows the log as usual
        assert await progress.wait(EVENTS + 2010, timeout(30))
        assert await _tallied(store) == (EVENTS + 2010, EVENTS + 2010, 1, EVENTS + 2010)
        (status,) = await progress.status()
        assert (status.state, status.failures) == ("running", 0)
    finally:
        await runner.stop()
        await progress.stop()
    if fail_at is None:
        # The 2,000 events behind, from the checkpoint on, by the two processes.
        assert outcomes == [2000]
    else:
        # The read model was emptied; the runner folded it all again by itself, once.
        assert len(outcomes) == 1
        assert f"injected failure at position {fail_at}" in str(outcomes[0])
    assert await _checkpoints(database_url) == {"tally": (EVENTS + 2010, "stopped")}


async def test_only_projects_folds_in_parallel(database_url):
    done = await asyncio.to_thread(
        run_collab, database_url, "projections", "rebuild", "lineage", "--jobs", "2"
    )
    assert done.returncode == 2
    assert "only projects can be folded by several processes" in done.stderr


async def test_ready_shows_a_projection_folded_in_parallel(database_url):
    app = create_app(database_url, poll_interval=0.1, read=ReadSettings(projections="none"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
        rebuilding(database_url, "projects") as holder,
    ):
        await holder.execute(
            "insert into projection_checkpoints (name, position) values"
            " ('projects#1/2', 3), ('projects#2/2', 4)"
        )
        ready = await client.get("/ready")
        # Not failing: reads wait (or time out) while it catches up, as with any lag.
        assert ready.status_code == 200, ready.text
        projects = ready.json()["projections"]["projects"]
        assert (projects["state"], projects["position"], projects["shares"]) == (
            "rebuilding",
            0,
            [3, 4],
        )
        assert "shares" not in ready.json()["projections"]["lineage"]
