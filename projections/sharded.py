"""Rebuilding a per-stream read model in several processes at once.

The fold of one projection is one Python process, bound to one core
(docs/benchmarks.md). A read model whose rows and in-memory state belong each to one
stream (``projects``: every row and document is one project's) can instead be folded
by N processes, each folding the events of its share of the streams
(``EventStore.read_share``: the database picks them, so each process decodes only
those) with a checkpoint row of its own, ``<name>#<i>/<N>``, through
:func:`projections.fold.apply_batch` as any fold does.

While they run, the projection's own checkpoint says ``rebuilding``, and the process
that started the rebuild holds an advisory lock PostgreSQL releases when that
process's connection ends. A runner meeting the projection in that state waits; if
the lock is free, the rebuild died half-way, and the runner empties the read model
and folds it from 0 (:mod:`projections.runner`). When every share is at the head the
rebuild began with, one transaction moves the projection's checkpoint there and drops
the shares' rows; a runner then resumes from that head.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from multiprocessing.connection import Connection
from typing import Final

import structlog

from events.records import StoredEvent
from events.sql import Sql
from projections.fold import (
    REBUILDING,
    Projection,
    RebuildRunning,
    apply_batch,
    empty,
    lock_checkpoint,
    settle,
    try_rebuild_lock,
)
from projections.progress import share_positions
from projections.runner import Store

log = structlog.get_logger("projections.sharded")

#: opens a store and the projection to fold in a share's process (picklable: a
#: module-level function, or a functools.partial of one)
Opener = Callable[[], AbstractAsyncContextManager[tuple[Store, Projection]]]

#: seconds between two reads of the shares' checkpoints for ``progress``
_PROGRESS_EVERY: Final = 0.5


class RebuildFailed(Exception):
    """A share's process failed; the read model was emptied (its checkpoint is at 0)."""


def share_name(name: str, index: int, shares: int) -> str:
    return f"{name}#{index + 1}/{shares}"


class Share:
    """``projection`` under the name of share ``index`` of ``shares``, for its own
    checkpoint; it is given only the events of its share (``EventStore.read_share``)."""

    def __init__(self, projection: Projection, index: int, shares: int) -> None:
        self._projection = projection
        self._name = share_name(projection.name, index, shares)

    @property
    def name(self) -> str:
        return self._name

    @property
    def tables(self) -> tuple[str, ...]:
        return self._projection.tables

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        await self._projection.apply(tx, events)

    def forget(self) -> None:
        self._projection.forget()


async def fold_in_parallel(
    store: Store,
    projection: Projection,
    opener: Opener,
    *,
    jobs: int,
    batch_size: int,
    rebuild: bool,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Fold the log up to the head as it is now into ``projection`` by ``jobs``
    processes (each opening its own store and projection with ``opener``): from 0 after
    emptying it (``rebuild``), or from its checkpoint, on top of its rows. Returns how
    many events they folded (each counts once); the checkpoint is then at that head,
    ``stopped`` after a rebuild, ``running`` after a catch-up (its runner goes on).

    ``progress`` gets the position every share has reached, now and then. Raises
    :class:`RebuildRunning` if another process does this to it, :class:`RebuildFailed`
    if a share's process fails (the others are stopped, the read model left empty at 0:
    what the failed share folded cannot be told apart).
    """
    name = projection.name
    # The lock lives as long as this transaction: the whole fold.
    async with store.transaction() as guard:
        if not await try_rebuild_lock(guard, name):
            raise RebuildRunning(name)
        async with store.transaction() as tx:
            start, _ = await lock_checkpoint(tx, name)
            if rebuild:
                start = 0
                await empty(tx, projection, REBUILDING)
            else:
                await settle(tx, name, start, REBUILDING)
            await tx.executemany(
                "insert into projection_checkpoints (name, position) values ($1, $2)",
                [(share_name(name, i, jobs), start) for i in range(jobs)],
            )
        projection.forget()
        head = await store.head_position()
        log.info("parallel fold started", projection=name, start=start, head=head, jobs=jobs)
        try:
            folded = await _fold_shares(
                store,
                name,
                opener,
                jobs=jobs,
                start=start,
                head=head,
                batch_size=batch_size,
                progress=progress,
            )
        except BaseException:
            async with store.transaction() as tx:
                await lock_checkpoint(tx, name)
                await empty(tx, projection, "stopped")
            raise
        async with store.transaction() as tx:
            await lock_checkpoint(tx, name)
            await settle(tx, name, max(head, start), "stopped" if rebuild else "running")
        log.info("parallel fold done", projection=name, head=head, events=folded)
    if progress is not None:
        progress(head)
    return folded


async def _fold_shares(
    store: Store,
    name: str,
    opener: Opener,
    *,
    jobs: int,
    start: int,
    head: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    results: list[Connection] = []
    for index in range(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_share_main,
            args=(sender, opener),
            kwargs={
                "index": index,
                "shares": jobs,
                "start": start,
                "head": head,
                "batch_size": batch_size,
            },
            name=share_name(name, index, jobs),
            daemon=True,
        )
        process.start()
        sender.close()
        processes.append(process)
        results.append(receiver)
    watching = (
        asyncio.create_task(_watch(store, name, jobs, progress)) if progress is not None else None
    )
    try:
        waits = [
            asyncio.to_thread(_result, r, p.name) for r, p in zip(results, processes, strict=True)
        ]
        counts = await asyncio.gather(*waits)
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        for share in processes:
            if share.is_alive():
                share.terminate()
        for share in processes:
            await asyncio.to_thread(share.join, 10)
        for receiver in results:
            receiver.close()
    return sum(counts)


def _result(receiver: Connection, share: str) -> int:
    try:
        outcome: tuple[str, int | str] = receiver.recv()
    except EOFError:
        raise RebuildFailed(f"{share}: its process ended without a result") from None
    status, value = outcome
    if status != "ok":
        raise RebuildFailed(f"{share}: {value}")
    return int(value)


async def _watch(store: Store, name: str, jobs: int, progress: Callable[[int], None]) -> None:
    while True:
        await asyncio.sleep(_PROGRESS_EVERY)
        positions = (await share_positions(store.queries, [name])).get(name, ())
        if len(positions) == jobs:
            progress(min(positions))


def _share_main(
    sender: Connection,
    opener: Opener,
    *,
    index: int,
    shares: int,
    start: int,
    head: int,
    batch_size: int,
) -> None:
    """A share's process: fold, then send ("ok", events folded) or ("error", why)."""
    try:
        folded = asyncio.run(_fold_share(opener, index, shares, start, head, batch_size))
    except BaseException as exc:  # noqa: BLE001 - reported to the rebuilding process
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        sender.send(("ok", folded))
    finally:
        sender.close()


async def _fold_share(  # noqa: PLR0917 - the share's task, as the process was given it
    opener: Opener, index: int, shares: int, start: int, head: int, batch_size: int
) -> int:
    async with opener() as (store, projection):
        share = Share(projection, index, shares)
        position, folded = start, 0
        while events := await store.read_share(
            index, shares, after_position=position, to_position=head, limit=batch_size
        ):
            await apply_batch(store, share, events, position, running=False)
            position = events[-1].position
            folded += len(events)
        return folded
