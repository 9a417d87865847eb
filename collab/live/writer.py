"""The group-commit writer: updates of every room, appended together, then released.

Rooms submit events with two callbacks. The writer gathers whatever arrives within
``window`` seconds of the first waiting event (or up to ``max_batch`` events) into one
batched append, and only after that transaction has committed calls ``on_committed`` of
each event, in submission order: that is where rooms apply and broadcast updates, so
nothing becomes visible before it is durable.

If the store cannot be reached (after its own retries) every event of the batch fails
with that error; the queue is bounded (``max_pending``) so that an outage refuses new
updates instead of buffering them without limit.

Overload costs latency before it costs connections: once half of ``max_pending``
events wait, the writer says it is :attr:`~GroupCommitWriter.congested` until the
queue is back under a quarter. The sockets stop reading editors' frames meanwhile
(their updates wait in the clients and in TCP) and new connections are refused with
1013, so the queue's limit, which closes the sender with 1013, is the last resort
for what was already read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from collab.runtime.metrics import Metrics
from events.errors import EventStoreError
from events.records import NewEvent
from events.store import ANY, AppendRequest, AppendResult, EventStore

log = structlog.get_logger("collab.live.writer")
T = TypeVar("T")


class WriterError(Exception):
    """Base of the writer's refusals."""


class Overloaded(WriterError):
    """The queue of events waiting for the database is full."""


class WriterClosed(WriterError):
    """The writer is shutting down and takes no new events."""


@dataclass(frozen=True, slots=True)
class Committed:
    version: int
    position: int
    daid: str


@dataclass(slots=True)
class _Pending:
    stream_id: str
    event: NewEvent
    on_committed: Callable[[Committed], None] | None
    on_failed: Callable[[Exception], None] | None
    future: asyncio.Future[Committed]
    enqueued: float = field(default_factory=time.perf_counter)


class GroupCommitWriter:
    def __init__(
        self,
        store: EventStore,
        metrics: Metrics,
        *,
        window: float = 0.002,
        max_batch: int = 2000,
        max_pending: int = 20_000,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._window = window
        self._max_batch = max_batch
        self._max_pending = max_pending
        #: congestion starts at the high mark and ends at the low one
        self._high = max(1, max_pending // 2)
        self._low = max_pending // 4
        #: set while the writer takes more: readers wait on it while it is not
        self._room_for_more = asyncio.Event()
        self._room_for_more.set()
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(
        self,
        stream_id: str,
        event: NewEvent,
        on_committed: Callable[[Committed], None] | None = None,
        on_failed: Callable[[Exception], None] | None = None,
    ) -> asyncio.Future[Committed]:
        """Queue ``event``; callbacks run in submission order once its batch is decided.

        The returned future resolves at the same moment (after ``on_committed``).
        Raises :class:`Overloaded` or :class:`WriterClosed` at once instead of queueing.
        """
        if self._closed:
            raise WriterClosed("the server is shutting down")
        if len(self._queue) >= self._max_pending:
            raise Overloaded(f"{len(self._queue)} updates are waiting for the database")
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(stream_id, event, on_committed, on_failed, future))
        self._idle.clear()
        self._wakeup.set()
        if len(self._queue) >= self._high and self._room_for_more.is_set():
            self._room_for_more.clear()
            self._metrics.intake_paused.set(1)
            log.warning(
                "updates wait for the database: editors' sockets are not read for now",
                waiting=len(self._queue),
            )
        return future

    @property
    def congested(self) -> bool:
        """Whether so many updates wait that readers should stop taking more."""
        return not self._room_for_more.is_set()

    async def room_for_more(self) -> None:
        """Return once the writer is not congested (at once when it is not)."""
        await self._room_for_more.wait()

    def _relieve(self) -> None:
        if not self._room_for_more.is_set() and (len(self._queue) <= self._low or self._closed):
            self._room_for_more.set()
            self._metrics.intake_paused.set(0)
            log.info("updates caught up: sockets are read again", waiting=len(self._queue))

    async def flush(self) -> None:
        """Wait until every event submitted so far has been decided."""
        await self._idle.wait()

    async def close(self) -> None:
        """Refuse new events, write the queued ones, stop."""
        self._closed = True
        self._relieve()  # waiting readers go on, and are refused
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Give other rooms a moment to join this batch, counted from when its first
            # event arrived (events that waited for the previous commit go at once).
            delay = self._queue[0].enqueued + self._window - time.perf_counter()
            if delay > 0 and len(self._queue) < self._max_batch:
                await asyncio.sleep(delay)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            try:
                await self._commit(batch)
            except Exception as exc:
                # a defect: its events are failed, not left waiting with their readers
                log.exception("batch could not be decided", events=len(batch))
                _fail(batch, EventStoreError(f"batch could not be decided: {exc!r}"))
            # The callbacks hold their rooms and connections: do not keep them alive
            # while waiting for the next batch.
            del batch
            self._relieve()

    async def _commit(self, batch: list[_Pending]) -> None:
        by_stream: dict[str, list[_Pending]] = {}
        for item in batch:
            by_stream.setdefault(item.stream_id, []).append(item)
        requests = [
            AppendRequest(stream_id, [item.event for item in items], ANY)
            for stream_id, items in by_stream.items()
        ]
        started = time.perf_counter()
        outcomes: list[AppendResult | EventStoreError]
        try:
            outcomes = await self._store.append_batch(requests)
        except EventStoreError as exc:
            log.warning("batch append failed", events=len(batch), error=str(exc))
            outcomes = [exc] * len(requests)
        except Exception as exc:
            log.exception("batch append crashed", events=len(batch))
            outcomes = [EventStoreError(f"append crashed: {exc!r}")] * len(requests)
        elapsed = time.perf_counter() - started
        self._metrics.commit_latency.observe(elapsed)
        self._metrics.commit_batch_size.observe(len(batch))

        decided: dict[int, Committed | EventStoreError] = {}
        for (_stream_id, items), outcome in zip(by_stream.items(), outcomes, strict=True):
            for offset, item in enumerate(items):
                if isinstance(outcome, AppendResult):
                    decided[id(item)] = Committed(
                        outcome.versions[offset], outcome.positions[offset], outcome.daids[offset]
                    )
                else:
                    decided[id(item)] = outcome
        committed = 0
        for item in batch:
            result = decided[id(item)]
            if isinstance(result, Committed):
                committed += 1
                _call(item.on_committed, result)
                if not item.future.done():
                    item.future.set_result(result)
            else:
                _call(item.on_failed, result)
                if not item.future.done():
                    item.future.set_exception(result)
                    # Nobody may be awaiting it; mark the exception retrieved.
                    item.future.exception()
        self._metrics.updates_committed.inc(committed)


def _fail(batch: list[_Pending], error: EventStoreError) -> None:
    for item in batch:
        if item.future.done():
            continue
        _call(item.on_failed, error)
        item.future.set_exception(error)
        item.future.exception()


def _call(callback: Callable[[T], None] | None, value: T) -> None:
    if callback is None:
        return
    try:
        callback(value)
    except Exception:
        log.exception("commit callback failed")
