"""Group commit: the one queue every append of a store process goes through.

Appends are serialised by the log head anyway, so the calls that arrive while one
transaction is in flight are written together in the next one. Two kinds of callers
share the queue:

- :meth:`GroupCommit.append_batch` (HTTP commands, imports, the worker's records): a
  caller that awaits its outcome. It goes at once, with whatever waits beside it.
- :meth:`GroupCommit.append_soon` (the live rooms' updates): one event and a callback.
  These *linger*: a batch whose items all linger waits up to ``window`` seconds from
  its first item's arrival for other rooms' updates to join, so a busy server writes
  few, large transactions. Lingering events of one stream in a batch go as one request,
  except a request queued ``alone`` (a resend, which may be stored already: a request
  comes back as stored only if every event of it was).

Outcomes are handed back in queue order once the batch's write has decided them, so a
room applies its committed updates in the order it submitted them. What writes a batch
(``Write``) is the adapter's: preparing, hashing and the transaction are its business.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

import structlog

from events.errors import DuplicateEvent, EventStoreError
from events.records import NewEvent
from events.store import ANY, AppendRequest, AppendResult

log = structlog.get_logger("events.group_commit")

Outcome = AppendResult | EventStoreError
#: what became of one unit (the requests of one caller): each request's outcome in its
#: slot, or the error that refused the unit whole (its events cannot be prepared)
Written = list[Outcome] | ValueError | EventStoreError
#: writes a batch of units in one go
Write = Callable[[Sequence[Sequence[AppendRequest]]], Awaitable[list[Written]]]
#: called with what became of an item, or with the error that decided its whole batch
Decided = Callable[[Written], None]
#: sees each written batch: its number of events and the seconds its write took
Observe = Callable[[int, float], None]

#: most events one batch carries
MAX_BATCH_EVENTS: Final = 5000


@dataclass(slots=True)
class _Item:
    requests: Sequence[AppendRequest]
    decided: Decided
    linger: bool
    events: int
    #: may be written as part of one request with other lingering events of its stream
    merge: bool = False
    enqueued: float = field(default_factory=time.perf_counter)
    #: its caller has heard what became of it (it is never told twice)
    told: bool = False


class GroupCommit:
    def __init__(
        self,
        write: Write,
        *,
        window: float = 0.0,
        max_batch: int = MAX_BATCH_EVENTS,
        observe: Observe | None = None,
    ) -> None:
        self._write = write
        self._window = window
        self._max_batch = max_batch
        self._observe = observe
        self._queue: deque[_Item] = deque()
        #: queued items that do not linger: while any waits, no batch waits for more
        self._urgent = 0
        self._events = 0
        self._task: asyncio.Task[None] | None = None
        #: resolved to end the wait for more (the window is over, or someone is waiting)
        self._waker: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken into a batch."""
        return len(self._queue)

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[Outcome]:
        """Append in the next batch; each request succeeds or fails on its own, in its slot.

        An error that decides the whole batch (the database is unreachable) is raised.
        """
        if not requests:
            return []
        _check_unique_ids(requests)
        done: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()

        def decided(outcome: Written) -> None:
            if done.done():  # the caller was cancelled
                return
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

        self._enqueue(
            _Item(requests, decided, linger=False, events=sum(len(r.events) for r in requests))
        )
        return await done

    def append_soon(
        self, request: AppendRequest, decided: Callable[[Outcome], None], *, alone: bool = False
    ) -> None:
        """Queue one request to linger for the next batch; ``decided`` gets its outcome.
        Unless ``alone``, it may be merged with the other lingering events of its stream."""
        if len(request.events) > 1:
            _check_unique_ids((request,))

        def one(outcome: Written) -> None:
            if isinstance(outcome, ValueError):
                decided(EventStoreError(f"refused: {outcome}"))
            else:
                decided(outcome if isinstance(outcome, EventStoreError) else outcome[0])

        merge = not alone and request.expected_version is ANY
        self._enqueue(_Item((request,), one, linger=True, events=len(request.events), merge=merge))

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self._events += item.events
        if not item.linger:
            self._urgent += 1
        if self._waker is not None and (not item.linger or self._events >= self._max_batch):
            _wake(self._waker)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def close(self) -> None:
        """Return once everything queued so far has been decided."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while self._queue:
            head = self._queue[0]
            if head.linger and not self._urgent:
                # Give other rooms a moment to join, counted from the first arrival (what
                # waited for the previous write goes at once).
                delay = head.enqueued + self._window - time.perf_counter()
                if delay > 0 and self._events < self._max_batch:
                    await self._wait(delay)
            batch = self._take()
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                _decide(batch, EventStoreError("the store is closing"))
                _decide(list(self._queue), EventStoreError("the store is closing"))
                self._queue.clear()
                raise
            except Exception as exc:
                # a defect: its callers hear it instead of waiting forever
                log.exception("batch could not be decided", items=len(batch))
                _decide(batch, EventStoreError(f"batch could not be decided: {exc!r}"))
            del batch  # its callbacks hold rooms and connections
            # Let what the callbacks woke (the sockets sending the broadcasts) run before
            # the next batch is prepared: preparing hashes every event of it.
            await asyncio.sleep(0)

    async def _wait(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if a caller that awaits arrives or the batch
        fills (a timer and a future: cheaper than a task per batch)."""
        loop = asyncio.get_running_loop()
        self._waker = waker = loop.create_future()
        timer = loop.call_later(delay, _wake, waker)
        try:
            await waker
        finally:
            timer.cancel()
            self._waker = None

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        ids: set[UUID] = set()
        events = 0
        while self._queue:
            item = self._queue[0]
            item_ids = [new.event_id for request in item.requests for new in request.events]
            # An id sent twice in one call would fail the whole batch: it waits a round.
            if batch and (events + item.events > self._max_batch or not ids.isdisjoint(item_ids)):
                break
            batch.append(self._queue.popleft())
            self._events -= item.events
            if not item.linger:
                self._urgent -= 1
            ids.update(item_ids)
            events += item.events
        return batch

    async def _commit(self, batch: list[_Item]) -> None:
        # Lingering events of one stream go as one request (one unit), in queue order.
        units: list[Sequence[AppendRequest]] = []
        #: per item: its unit, and the offset of its event in a merged request (or None)
        places: list[tuple[int, int | None]] = []
        merged: dict[str, int] = {}
        merged_events: dict[int, list[NewEvent]] = {}
        for item in batch:
            if item.merge:
                (request,) = item.requests
                unit = merged.get(request.stream_id)
                if unit is None:
                    unit = merged[request.stream_id] = len(units)
                    units.append(item.requests)
                    merged_events[unit] = list(request.events)
                    places.append((unit, 0))
                else:
                    places.append((unit, len(merged_events[unit])))
                    merged_events[unit].extend(request.events)
                continue
            places.append((len(units), None))
            units.append(item.requests)
            for request in item.requests:
                # what follows it on its stream may not be written before it
                merged.pop(request.stream_id, None)
        for unit, events in merged_events.items():
            if len(events) > 1:
                units[unit] = (AppendRequest(units[unit][0].stream_id, events, ANY),)

        started = time.perf_counter()
        try:
            written = await self._write(units)
        except EventStoreError as exc:
            log.warning("batch append failed", units=len(units), error=str(exc))
            self._observed(batch, started)
            _decide(batch, exc)
            return
        self._observed(batch, started)
        for item, (unit, offset) in zip(batch, places, strict=True):
            _call(item, _slice(written[unit], offset, item.events))

    def _observed(self, batch: list[_Item], started: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(sum(item.events for item in batch), time.perf_counter() - started)
        except Exception:
            log.exception("group commit observer failed")


def _slice(written: Written, offset: int | None, events: int) -> Written:
    """An item's part of its unit: the whole unit, or its events of a merged request."""
    if offset is None or isinstance(written, Exception):
        return written
    (outcome,) = written
    if isinstance(outcome, EventStoreError):
        return [outcome]
    end = offset + events
    return [
        AppendResult(
            outcome.stream_id,
            outcome.versions[offset:end],
            outcome.positions[offset:end],
            outcome.daids[offset:end],
        )
    ]


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


def _decide(batch: list[_Item], error: EventStoreError) -> None:
    for item in batch:
        _call(item, error)


def _call(item: _Item, outcome: Written) -> None:
    if item.told:
        return
    item.told = True
    try:
        item.decided(outcome)
    except Exception:
        log.exception("append callback failed")


def _check_unique_ids(requests: Sequence[AppendRequest]) -> None:
    seen: set[UUID] = set()
    for request in requests:
        for new in request.events:
            if new.event_id in seen:
                raise DuplicateEvent(
                    new.event_id, request.stream_id, "the same event id appears twice in one append"
                )
            seen.add(new.event_id)
