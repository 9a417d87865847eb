"""A read model's side of a fold: the protocol a projection implements, its checkpoint
row, and one batch folded with the move of that row in one transaction.

:func:`apply_batch` is what every fold goes through: the runner's loop
(:mod:`projections.runner`), a rebuild, and each process of a parallel rebuild
(:mod:`projections.sharded`). A batch that fails because an event cannot be folded is
narrowed down to that event, which is quarantined (:mod:`projections.quarantine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import structlog

from events.records import StoredEvent
from events.sql import Sql, SqlDatabase
from projections import quarantine

log = structlog.get_logger("projections.fold")

#: the checkpoint state of a projection being rebuilt by :mod:`projections.sharded`
REBUILDING: Final = "rebuilding"


class Projection(Protocol):
    """A read model folded from the log."""

    @property
    def name(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables it owns (emptied by a rebuild)."""
        ...

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        """Fold ``events`` (consecutive positions) inside the runner's transaction."""
        ...

    def forget(self) -> None:
        """Drop in-memory state: the transaction it was built in did not commit."""
        ...


class CheckpointMoved(Exception):
    """The stored checkpoint is not where this runner's batch starts."""

    def __init__(self, name: str, stored: int, expected: int) -> None:
        self.stored = stored
        super().__init__(
            f"projection {name}: checkpoint is at {stored}, batch starts at {expected}"
        )


class RebuildRunning(Exception):
    """Another process is rebuilding the projection (its checkpoint says ``rebuilding``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"projection {name} is being rebuilt by another process")


def rebuild_lock(name: str) -> str:
    """The advisory lock a process rebuilding ``name`` holds while it runs (PostgreSQL
    releases it when that process's connection ends, however it ends)."""
    return f"collab.rebuild:{name}"


async def try_rebuild_lock(tx: Sql, name: str) -> bool:
    """Take :func:`rebuild_lock` until ``tx`` ends; False if another session holds it."""
    return bool(
        await tx.fetchval("select pg_try_advisory_xact_lock(hashtext($1))", rebuild_lock(name))
    )


async def load_checkpoint(tx: Sql, name: str) -> int:
    await tx.execute(
        "insert into projection_checkpoints (name) values ($1) on conflict (name) do nothing",
        name,
    )
    return int(
        await tx.fetchval("select position from projection_checkpoints where name = $1", name)
    )


async def reset(store: SqlDatabase, projection: Projection) -> None:
    """Empty the projection's tables and move its checkpoint to 0, in one transaction.

    Raises :class:`RebuildRunning` while another process rebuilds it.
    """
    async with store.transaction() as tx:
        _, state = await lock_checkpoint(tx, projection.name)
        abandoned = await _abandoned_rebuild(tx, projection.name, state)
        await empty(tx, projection, "stopped" if abandoned else None)
    projection.forget()


async def lock_checkpoint(tx: Sql, name: str) -> tuple[int, str]:
    """The checkpoint's position and state, its row (made if missing) locked until
    ``tx`` ends."""
    query = "select position, state from projection_checkpoints where name = $1 for update"
    row = await tx.fetchrow(query, name)
    if row is None:
        await load_checkpoint(tx, name)
        (row,) = await tx.fetch(query, name)
    return int(row["position"]), str(row["state"])


async def _abandoned_rebuild(tx: Sql, name: str, state: str) -> bool:
    """True if ``state`` says ``rebuilding`` but the process rebuilding it has died;
    raises :class:`RebuildRunning` while it lives (holds :func:`rebuild_lock`)."""
    if state != REBUILDING:
        return False
    if not await try_rebuild_lock(tx, name):
        raise RebuildRunning(name)
    return True


async def empty(tx: Sql, projection: Projection, state: str | None) -> None:
    """Inside ``tx`` (which holds the checkpoint row): truncate the projection's tables,
    forget the events it quarantined (folding again finds them again) and :func:`settle`
    its checkpoint at 0."""
    await tx.execute(f"truncate {', '.join(projection.tables)} cascade")
    await quarantine.clear(tx, projection.name)
    await settle(tx, projection.name, 0, state)


async def settle(tx: Sql, name: str, position: int, state: str | None) -> None:
    """Inside ``tx`` (which holds the checkpoint row): drop the checkpoints of a
    parallel rebuild's shares, move the checkpoint to ``position`` and, unless ``state``
    is None, set its state (and clear its error)."""
    await tx.execute("delete from projection_checkpoints where starts_with(name, $1)", f"{name}#")
    await tx.execute(
        "update projection_checkpoints set position = $2, updated_at = now(),"
        " state = coalesce($3, state), error = case when $3 is null then error end,"
        " failures = case when $3 is null then failures else 0 end where name = $1",
        name,
        position,
        state,
    )


async def apply_batch(
    store: SqlDatabase,
    projection: Projection,
    events: Sequence[StoredEvent],
    start: int,
    *,
    running: bool = True,
) -> None:
    """Fold ``events`` (which follow position ``start``) and move the checkpoint.

    The row then says the projection is ``running`` (no error), or, for a one-off
    fold such as a rebuild (``running=False``), keeps its state, unless that was
    ``failing``: the failed batch is folded now, and nothing is running it.

    When the batch fails with an error that says an event cannot be folded
    (:func:`projections.quarantine.unfoldable`), it is folded in halves, down to the
    events that fail alone; each of those is quarantined (recorded, not folded) in the
    transaction that moves the checkpoint past it, and the rest is folded. Any other
    error is raised, and what was committed before it stays (the checkpoint says how
    far).

    Raises :class:`CheckpointMoved` when the checkpoint is not at ``start`` (also
    after emptying a read model whose parallel rebuild was abandoned: it is at 0
    then), and :class:`RebuildRunning` while another process rebuilds it.
    """
    try:
        await _commit_batch(store, projection, events, start, running=running)
    except (CheckpointMoved, RebuildRunning):
        raise
    except BaseException as exc:
        if not quarantine.unfoldable(exc):
            raise
        log.warning(
            "batch cannot be folded; looking for the events that fail",
            projection=projection.name,
            first=events[0].position,
            last=events[-1].position,
            error=quarantine.reason(exc),
        )
        await _narrow(store, projection, events, start, exc, running=running)


async def _narrow(
    store: SqlDatabase,
    projection: Projection,
    events: Sequence[StoredEvent],
    start: int,
    error: BaseException,
    *,
    running: bool,
) -> None:
    """``events`` failed with ``error``, which :func:`quarantine.unfoldable` accepts:
    quarantine the one event, or fold each half and narrow down the half that fails."""
    if len(events) == 1:
        await _quarantine(store, projection, events[0], start, error, running=running)
        return
    middle = len(events) // 2
    for part in (events[:middle], events[middle:]):
        try:
            await _commit_batch(store, projection, part, start, running=running)
        except (CheckpointMoved, RebuildRunning):
            raise
        except BaseException as exc:
            if not quarantine.unfoldable(exc):
                raise
            await _narrow(store, projection, part, start, exc, running=running)
        start = part[-1].position


async def _quarantine(
    store: SqlDatabase,
    projection: Projection,
    event: StoredEvent,
    start: int,
    error: BaseException,
    *,
    running: bool,
) -> None:
    why = quarantine.reason(error)
    async with store.transaction() as tx:
        await tx.execute("set local synchronous_commit = off")
        moved = await _claim(tx, projection, start, running=running)
        if moved is None:
            await quarantine.record(tx, projection.name, event, why)
            await _advance(tx, projection.name, event.position, running=running)
    if moved is not None:
        projection.forget()
        raise CheckpointMoved(projection.name, moved, start)
    log.error(
        "event quarantined: it cannot be folded",
        projection=projection.name,
        position=event.position,
        stream=event.stream_id,
        event_type=event.event_type,
        reason=why,
    )


async def _commit_batch(
    store: SqlDatabase,
    projection: Projection,
    events: Sequence[StoredEvent],
    start: int,
    *,
    running: bool,
) -> None:
    """Fold ``events`` and move the checkpoint, in one transaction (see apply_batch)."""
    try:
        async with store.transaction() as tx:
            # Read models are derived: if a crash loses the last commits, it loses their
            # checkpoint with them, and the events are folded again. Not waiting for the
            # WAL flush keeps the projections' commits off the live appends' disk path.
            await tx.execute("set local synchronous_commit = off")
            moved = await _claim(tx, projection, start, running=running)
            if moved is None:
                await projection.apply(tx, events)
                await _advance(tx, projection.name, events[-1].position, running=running)
    except BaseException:
        projection.forget()
        raise
    if moved is not None:
        projection.forget()
        raise CheckpointMoved(projection.name, moved, start)


async def _advance(tx: Sql, name: str, position: int, *, running: bool) -> None:
    await tx.execute(
        "update projection_checkpoints set position = $2, updated_at = now(),"
        " error = null, failures = 0, state = case when $3 then 'running'"
        " when state = 'failing' then 'stopped' else state end where name = $1",
        name,
        position,
        running,
    )


async def _claim(tx: Sql, projection: Projection, start: int, *, running: bool) -> int | None:
    """Lock the checkpoint row; None if it is at ``start``, else where it is now."""
    stored, state = await lock_checkpoint(tx, projection.name)
    if await _abandoned_rebuild(tx, projection.name, state):
        # What its shares folded is partial.
        log.warning("abandoned rebuild; folding again from 0", projection=projection.name)
        await empty(tx, projection, "running" if running else "stopped")
        return 0
    return None if stored == start else stored
