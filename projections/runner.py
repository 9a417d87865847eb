"""The projection runner: fold the log into read models, exactly once, in order.

Each projection has a checkpoint row (``projection_checkpoints``). The runner reads
batches of events after it and, for each batch, in **one transaction**
(:func:`projections.fold.apply_batch`): locks the
checkpoint row, checks it still says where the batch starts, lets the projection
write its rows, and moves the checkpoint to the batch's last position. A crash at
any point therefore leaves rows and checkpoint agreeing, and a restart resumes from
there: no event is applied twice or skipped.

If the checkpoint moved underneath (``collab projections rebuild``, or another node
running the same projection got there first) the batch is abandoned and reading
resumes from the stored checkpoint. While a rebuild in several processes
(:mod:`projections.sharded`) holds the projection, its row says ``rebuilding``: the
runner waits for it to finish, or, if the process that started it has died, empties
the read model and folds it again from the start.

An event that cannot be folded (:mod:`projections.quarantine`) is set aside with a
record of why, and the fold goes on past it. Any other failure (the database away, a
constraint it enforces, a fault of the fold's code) is logged, written to the checkpoint
row (state ``failing``, the error, the failure count: what ``/ready`` shows, through
:mod:`projections.progress`), and the same batch is retried with a growing delay;
nothing after it is applied before it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

import structlog

from events.errors import EventStoreError
from events.records import StoredEvent
from events.sql import SqlDatabase
from events.store import EventStore
from projections.fold import (
    CheckpointMoved,
    Projection,
    RebuildRunning,
    apply_batch,
    load_checkpoint,
    reset,
)
from projections.progress import State

log = structlog.get_logger("projections.runner")

# What a caller of the runner meets: the read models it runs, and the refusal of
# rebuild() while another process rebuilds one.
__all__ = [
    "LINGER",
    "PARALLEL_LAG",
    "REBUILD_WAIT",
    "ParallelFold",
    "Projection",
    "ProjectionRunner",
    "RebuildRunning",
    "Store",
    "rebuild",
]

#: seconds a runner at the head of the log waits before reading again (what a read
#: with ``min_position`` may wait more than the fold itself), after a batch of up to
#: LINGER_EVENTS events; after a larger one it waits in proportion, up to LINGER_MAX
LINGER: Final = 0.05
LINGER_EVENTS: Final = 20
LINGER_MAX: Final = 0.25
#: seconds between two looks at a projection another process is rebuilding
REBUILD_WAIT: Final = 1.0
#: a runner this many events behind catches up by its parallel fold, where it has one
PARALLEL_LAG: Final = 100_000

#: folds a projection from its checkpoint to the head by several processes
#: (:func:`projections.sharded.fold_in_parallel`, its arguments bound)
ParallelFold = Callable[[], Awaitable[int]]


class Store(EventStore, SqlDatabase, Protocol):
    """What the runner needs: the log and the database the read models live in."""


async def rebuild(
    store: Store,
    projection: Projection,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Empty the projection and fold the log again from position 0, up to the head as it
    was when this started; returns how many events this call folded.

    A running server may fold some batches meanwhile (its checkpoint moves): those are
    skipped. ``progress`` gets the folded position after each batch.
    """
    await reset(store, projection)
    head = await store.head_position()
    position = folded = 0
    while position < head:
        events = await store.read_all(position, min(batch_size, head - position))
        if not events:
            break
        try:
            await apply_batch(store, projection, events, position, running=False)
        except CheckpointMoved as exc:
            position = exc.stored
        else:
            folded += len(events)
            position = events[-1].position
        if progress is not None:
            progress(position)
    return folded


def lingering(linger: float, events: int) -> float:
    """How long to wait at the head after folding ``events``: ``linger`` after a few,
    longer after many, up to LINGER_MAX (and never less than ``linger``).

    A batch costs some writes whatever its size (each project's row and document
    parts, the checkpoint, the commit): under steady traffic a longer wait folds the
    same events in fewer, larger batches. Measured at 1,000 updates/s on one core, the
    worker and PostgreSQL took about 30 % less CPU at 0.25 s than at 0.05 s
    (docs/benchmarks.md). A quiet log keeps the short wait, so an editor's read of
    their own write stays quick when few are writing."""
    return max(linger, min(LINGER_MAX, linger * events / LINGER_EVENTS))


class _Runner:
    """One projection's loop."""

    def __init__(
        self,
        store: Store,
        projection: Projection,
        batch_size: int,
        linger: float,
        *,
        parallel: ParallelFold | None,
        parallel_lag: int,
    ) -> None:
        self.store = store
        self.projection = projection
        self.batch_size = batch_size
        self.linger = linger
        self.parallel = parallel
        self.parallel_lag = parallel_lag
        self.state: State = "starting"
        self.position = 0
        self.error: str | None = None
        self.failures = 0
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self.store.transaction() as tx:
                    self.position = await load_checkpoint(tx, self.projection.name)
                    # Also after a failure: a batch that still fails says so again at
                    # once, and anything else that failed has just worked. The last
                    # error stays until a batch folds.
                    await tx.execute(
                        "update projection_checkpoints set state = 'running'"
                        " where name = $1 and state <> 'rebuilding'",
                        self.projection.name,
                    )
                if self.state != "failing":
                    self.state = "running"
                if await self._caught_up_in_parallel():
                    continue
                await self._follow()
            except EventStoreError as exc:
                # Reading the checkpoint failed (database away): same back-off.
                await self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _caught_up_in_parallel(self) -> bool:
        """Far behind, with a parallel fold: catch up by it; True if it ran."""
        if self.parallel is None:
            return False
        behind = await self.store.head_position() - self.position
        if behind < self.parallel_lag:
            return False
        name = self.projection.name
        log.info("catching up in parallel", projection=name, position=self.position, lag=behind)
        try:
            await self.parallel()
        except RebuildRunning:
            return False  # another process does it; the fold waits for it
        except EventStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - the read model is emptied: fold it here
            log.error(  # noqa: TRY400 - a share's error, told in its message
                "parallel catch-up failed; folding in this process", projection=name, error=str(exc)
            )
            self.parallel = None
        self.projection.forget()
        return True

    async def _follow(self) -> None:
        batches = self.store.subscribe_batches(self.position, batch_size=self.batch_size)
        # Closed on the way out (also when cancelled), so its LISTEN connection is too.
        async with contextlib.aclosing(batches):
            reading = asyncio.ensure_future(anext(batches))
            try:
                while True:
                    batch = await reading
                    behind = len(batch) == self.batch_size
                    if behind:
                        # Catching up: the next batch is read while this one is folded
                        # (the database works on the read while Python folds).
                        reading = asyncio.ensure_future(anext(batches))
                    if not await self._fold(batch):
                        return
                    if not behind:
                        # Following the head: let new events gather for a moment, so
                        # that live traffic makes a few larger transactions per second
                        # instead of one per append.
                        await asyncio.sleep(lingering(self.linger, len(batch)))
                        reading = asyncio.ensure_future(anext(batches))
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await reading

    async def _fold(self, batch: list[StoredEvent]) -> bool:
        """Fold one batch, retrying until it succeeds; False if the checkpoint moved."""
        delay = 0.1
        waiting = False
        started = time.perf_counter()
        while True:
            try:
                await apply_batch(self.store, self.projection, batch, self.position)
            except CheckpointMoved as exc:
                log.info(
                    "checkpoint moved; resuming from it",
                    projection=self.projection.name,
                    stored=exc.stored,
                    batch_start=self.position,
                )
                return False
            except RebuildRunning:
                if not waiting:
                    log.info("waiting for a rebuild to finish", projection=self.projection.name)
                    waiting = True
                await asyncio.sleep(REBUILD_WAIT)
                continue
            except Exception as exc:  # noqa: BLE001 - not the events' fault: retried, never skipped
                await self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            break
        if self.state != "running":
            log.info(
                "projection running", projection=self.projection.name, position=batch[-1].position
            )
        self.state, self.error = "running", None
        self.position = batch[-1].position
        log.debug(
            "batch folded",
            projection=self.projection.name,
            events=len(batch),
            position=self.position,
            seconds=round(time.perf_counter() - started, 4),
        )
        return True

    async def _failed(self, exc: BaseException) -> None:
        self.state = "failing"
        self.failures += 1
        self.error = f"{type(exc).__name__}: {exc}"
        log.error(
            "projection failed; retrying the same batch",
            projection=self.projection.name,
            position=self.position,
            failures=self.failures,
            error=self.error,
            exc_info=exc if not isinstance(exc, EventStoreError) else None,
        )
        # For readers in other processes; when the database itself is the failure they
        # learn that from it.
        with contextlib.suppress(EventStoreError):
            await self.store.queries.execute(
                "update projection_checkpoints set state = 'failing', error = $2,"
                " failures = failures + 1 where name = $1 and state <> 'rebuilding'",
                self.projection.name,
                self.error,
            )


class ProjectionRunner:
    def __init__(
        self,
        store: Store,
        projections: Sequence[Projection],
        *,
        batch_size: int = 1000,
        linger: float = LINGER,
        parallel: Mapping[str, ParallelFold] | None = None,
        parallel_lag: int = PARALLEL_LAG,
    ) -> None:
        """``parallel``: by projection name, how to catch up by several processes when
        ``parallel_lag`` events behind or more."""
        self._store = store
        self._runners = {
            p.name: _Runner(
                store,
                p,
                batch_size,
                linger,
                parallel=(parallel or {}).get(p.name),
                parallel_lag=parallel_lag,
            )
            for p in projections
        }

    @property
    def names(self) -> list[str]:
        return list(self._runners)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, runner in self._runners.items():
            runner.task = loop.create_task(runner.run(), name=f"projection-{name}")

    async def stop(self, *, mark_stopped: bool = True) -> None:
        """Cancel the folds (a batch in flight is rolled back). ``mark_stopped`` False
        leaves the checkpoint rows alone: another process folds them now. Stopping
        again does nothing."""
        if all(runner.task is None for runner in self._runners.values()):
            return
        for runner in self._runners.values():
            if runner.task is not None:
                runner.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner.task
                runner.task = None
            runner.state = "stopped"
        if not mark_stopped:
            return
        # Best effort, and only what this process stopped: another process running
        # the same projections marks them running again with its next batch.
        with contextlib.suppress(EventStoreError):
            await self._store.queries.execute(
                "update projection_checkpoints set state = 'stopped'"
                " where name = any($1::text[]) and state = 'running'",
                self.names,
            )
