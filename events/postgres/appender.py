"""The append queue: concurrent appends share one transaction (group commit).

Appends are serialised by the log head anyway, so while one transaction is in flight
the calls that arrive meanwhile are queued and sent together in the next one. The
queue also remembers each stream's version tip (the DAID of its last version), so a
version event's parents are known without asking the database.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, cast
from uuid import UUID

import asyncpg
import structlog

from events.errors import EventStoreError
from events.postgres.append_call import (
    QUERY,
    StaleLineage,
    append_arguments,
    append_outcome,
    check_request,
    check_unique_ids,
)
from events.postgres.connection import CONNECTION_ERRORS, Database, unavailable
from events.records import PreparedEvent, prepare
from events.store import NO_STREAM, AppendRequest, AppendResult

log = structlog.get_logger("events.postgres")

#: most events one coalesced append transaction carries
MAX_GROUP_EVENTS: Final = 5000
#: streams whose version tip (last version DAID) is remembered between appends
TIP_CACHE_SIZE: Final = 10_000
#: attempts of a request whose version tip moved on under it (another writer). The first
#: goes through the shared queue with the tip this process remembers; the ones after
#: it lock their streams' rows, read their tips and append in one transaction, so no
#: other writer can move a tip in between. Guessing again instead starved the process
#: that did not write last: two nodes writing one project at 20 updates/s each gave
#: up after 32 attempts 1,364 times in 15 s (docs/benchmarks.md, cross-node fan-out).
LINEAGE_ATTEMPTS: Final = 4
#: seconds a stream stays "contended" after a stale guess: its version appends skip the
#: guess and go straight to the locked transaction (the guess would fail again while
#: another process keeps writing the stream)
CONTENDED_SECONDS: Final = 2.0
#: the streams' version tips, their rows locked (in the order collab_append locks them,
#: so two such transactions cannot deadlock) until the transaction ends
_LOCK_TIPS: Final = (
    "select stream_id, last_version_daid from streams where stream_id = any($1::text[])"
    " order by stream_id for update"
)

#: awaited inside the append transaction, after the events are written and before
#: the commit. Tests use it to hold transactions open; production passes nothing.
BeforeCommit = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """One caller's append, queued for the next transaction."""

    requests: Sequence[AppendRequest]
    prepared: list[list[PreparedEvent]]
    #: per request, the version tip it was prepared against and the one it makes
    #: (both None when the request makes no version)
    tips: list[tuple[str | None, str | None]]
    done: asyncio.Future[list[AppendResult | EventStoreError]]


class Appender:
    def __init__(
        self, db: Database, *, append_attempts: int, before_commit: BeforeCommit | None
    ) -> None:
        self._db = db
        self._append_attempts = append_attempts
        self._before_commit = before_commit
        self._queue: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        # stream -> DAID of its last version as this process expects it once the
        # queued appends commit; checked by collab_append, so a stale entry costs a
        # retry, never a wrong parent.
        self._tips: OrderedDict[str, str | None] = OrderedDict()
        #: streams a guess failed on lately, and until when they count as contended
        self._contended_until: dict[str, float] = {}

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            await self._writer  # let queued appends finish

    async def append_batch(
        self, requests: Sequence[AppendRequest]
    ) -> list[AppendResult | EventStoreError]:
        """Append; concurrent callers on this store share transactions (group commit).

        Appends are serialised by the log head anyway, so while one transaction is in
        flight the calls that arrive meanwhile are queued and sent together in the next
        one. Each request still succeeds or fails on its own.
        """
        if not requests:
            return []
        for request in requests:
            check_request(request)
        outcomes: list[AppendResult | EventStoreError] = [EventStoreError("not attempted")] * len(
            requests
        )
        todo = list(range(len(requests)))
        for attempt in range(LINEAGE_ATTEMPTS):
            now = time.monotonic()
            locked = [i for i in todo if attempt > 0 or self._contended(requests[i], now)]
            queued = [i for i in todo if attempt == 0 and i not in locked]
            # Both run to their end before either's error is raised: none is left behind.
            done = await asyncio.gather(
                self._append_queued([requests[i] for i in queued]),
                self._append_locked([requests[i] for i in locked]),
                return_exceptions=True,
            )
            for failed in done:
                if isinstance(failed, BaseException):
                    raise failed
            results = cast("list[list[AppendResult | EventStoreError]]", done)
            for index, result in zip(queued + locked, results[0] + results[1], strict=True):
                outcomes[index] = result
            todo = [index for index in todo if isinstance(outcomes[index], StaleLineage)]
            for index in todo:
                self._contended_until[requests[index].stream_id] = now + CONTENDED_SECONDS
            if len(self._contended_until) > TIP_CACHE_SIZE:
                self._contended_until = {
                    s: until for s, until in self._contended_until.items() if until >= now
                }
            if not todo:
                return outcomes
        for index in todo:
            outcomes[index] = EventStoreError(
                f"stream {requests[index].stream_id!r}: other writers kept appending versions; "
                f"gave up after {LINEAGE_ATTEMPTS} attempts"
            )
        return outcomes

    async def _append_queued(
        self, requests: Sequence[AppendRequest]
    ) -> list[AppendResult | EventStoreError]:
        if not requests:
            return []
        await self._learn_tips(requests)
        prepared: list[list[PreparedEvent]] = []
        tips: list[tuple[str | None, str | None]] = []
        for request in requests:
            events, tip = self._prepare(request)
            prepared.append(events)
            tips.append(tip)
        check_unique_ids(requests, prepared)
        waiting = _Waiting(requests, prepared, tips, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="event-store-writer")
        try:
            outcomes = await waiting.done
        except BaseException:
            self._forget_tips(requests)
            raise
        for request, (_base, made), outcome in zip(requests, tips, outcomes, strict=True):
            if made is None or (isinstance(outcome, AppendResult) and made in outcome.daids):
                continue
            # Not written as prepared: what the queue assumed about this stream is wrong.
            self._tips.pop(request.stream_id, None)
            if isinstance(outcome, StaleLineage):
                self._remember_tip(request.stream_id, outcome.tip)
        return outcomes

    def _contended(self, request: AppendRequest, now: float) -> bool:
        until = self._contended_until.get(request.stream_id)
        if until is None:
            return False
        if until < now:
            del self._contended_until[request.stream_id]
            return False
        return any(type(new.event).is_version for new in request.events)

    async def _append_locked(
        self, requests: Sequence[AppendRequest]
    ) -> list[AppendResult | EventStoreError]:
        """Append requests of contended streams in one transaction that holds their
        streams' rows while their tips are read and the events derived from them are
        written."""
        if not requests:
            return []
        streams = sorted({request.stream_id for request in requests})
        try:
            async with self._db.connection() as conn, conn.transaction():
                found = {
                    row["stream_id"]: row["last_version_daid"]
                    for row in await conn.fetch(_LOCK_TIPS, streams)
                }
                # No await between learning the tips and preparing against them: this
                # process's other appends to these streams queue after these.
                for stream_id in streams:
                    self._remember_tip(stream_id, found.get(stream_id))
                prepared, tips = [], []
                for request in requests:
                    events, tip = self._prepare(request)
                    prepared.append(events)
                    tips.append(tip)
                check_unique_ids(requests, prepared)
                rows = await conn.fetch(QUERY, *append_arguments(requests, prepared, tips))
                if self._before_commit is not None:
                    await self._before_commit()
        except TimeoutError as exc:
            self._forget_tips(requests)
            raise self._db.timed_out() from exc
        except CONNECTION_ERRORS as exc:
            self._forget_tips(requests)
            await self._db.pool.expire_connections()
            raise unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            self._forget_tips(requests)
            raise EventStoreError(f"append failed: {exc}") from exc
        outcomes = [
            append_outcome(requests[row["req"] - 1], row)
            for row in sorted(rows, key=lambda row: int(row["req"]))
        ]
        for request, (_base, made), outcome in zip(requests, tips, outcomes, strict=True):
            if made is not None and not (
                isinstance(outcome, AppendResult) and made in outcome.daids
            ):
                self._tips.pop(request.stream_id, None)
        return outcomes

    async def _learn_tips(self, requests: Sequence[AppendRequest]) -> None:
        unknown = set()
        for request in requests:
            if request.stream_id in self._tips or not any(
                type(new.event).is_version for new in request.events
            ):
                continue
            if request.expected_version in (NO_STREAM, 0):
                # A new stream has no version yet (if it does exist the append fails on
                # its expected version anyway): no need to ask, nor to wait for it.
                self._remember_tip(request.stream_id, None)
            else:
                unknown.add(request.stream_id)
        if not unknown:
            return
        rows = await self._db.fetch(
            "select stream_id, last_version_daid from streams where stream_id = any($1)",
            sorted(unknown),
        )
        found = {row["stream_id"]: row["last_version_daid"] for row in rows}
        for stream_id in unknown:
            if stream_id not in self._tips:  # another caller may have learnt it meanwhile
                self._remember_tip(stream_id, found.get(stream_id))

    def _remember_tip(self, stream_id: str, tip: str | None) -> None:
        self._tips[stream_id] = tip
        self._tips.move_to_end(stream_id)
        while len(self._tips) > TIP_CACHE_SIZE:
            self._tips.popitem(last=False)

    def _forget_tips(self, requests: Sequence[AppendRequest]) -> None:
        for request in requests:
            self._tips.pop(request.stream_id, None)

    async def _write_queued(self) -> None:
        while self._queue:
            group = self._take_group()
            requests = [request for waiting in group for request in waiting.requests]
            prepared = [events for waiting in group for events in waiting.prepared]
            tips = [tip for waiting in group for tip in waiting.tips]
            try:
                rows = await self._call_append(append_arguments(requests, prepared, tips))
            except asyncio.CancelledError:
                for waiting in group:
                    waiting.done.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                for waiting in group:
                    self._forget_tips(waiting.requests)
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            outcomes = [
                append_outcome(requests[row["req"] - 1], row)
                for row in sorted(rows, key=lambda row: int(row["req"]))
            ]
            offset = 0
            for waiting in group:
                count = len(waiting.requests)
                if not waiting.done.done():  # the caller may have been cancelled
                    waiting.done.set_result(outcomes[offset : offset + count])
                offset += count

    def _take_group(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        ids: set[UUID] = set()
        events = 0
        while self._queue:
            waiting = self._queue[0]
            waiting_ids = {event.event_id for batch in waiting.prepared for event in batch}
            size = sum(len(batch) for batch in waiting.prepared)
            # An id sent twice in one call would fail the whole group: wait a round.
            if group and (ids & waiting_ids or events + size > MAX_GROUP_EVENTS):
                break
            group.append(self._queue.popleft())
            ids |= waiting_ids
            events += size
        return group

    def _prepare(
        self, request: AppendRequest
    ) -> tuple[list[PreparedEvent], tuple[str | None, str | None]]:
        """Prepare a request's events; a version event derives from the version before it.

        Returns the events and (the tip assumed before them, the tip after them).
        """
        stream_id = request.stream_id
        if not any(type(new.event).is_version for new in request.events):
            return [prepare(stream_id, new) for new in request.events], (None, None)
        base = tip = self._tips.get(stream_id)
        prepared = []
        for new in request.events:
            if type(new.event).is_version:
                if tip is not None:
                    new = replace(new, parents=(tip, *new.parents))  # noqa: PLW2901
                event = prepare(stream_id, new)
                tip = event.daid
            else:
                event = prepare(stream_id, new)
            prepared.append(event)
        self._remember_tip(stream_id, tip)
        return prepared, (base, tip)

    async def _call_append(self, args: list[Any]) -> list[asyncpg.Record]:
        # Retrying is safe: every event carries its id, and a resent event that was
        # already committed comes back as 'existing' with its stored result.
        delay = 0.05
        for attempt in range(1, self._append_attempts + 1):
            try:
                return await self._append_once(args)
            except asyncpg.UniqueViolationError as exc:
                # Two writers raced with the same event id; the retry sees the stored one.
                if attempt == self._append_attempts:
                    raise EventStoreError(f"append kept conflicting: {exc}") from exc
            except TimeoutError as exc:
                # A database that did not answer in time will not answer a retry sooner:
                # the callers hear it now (the live path answers 1013, HTTP 503).
                raise self._db.timed_out() from exc
            except CONNECTION_ERRORS as exc:
                await self._db.pool.expire_connections()
                if attempt == self._append_attempts:
                    raise unavailable(exc) from exc
                log.warning(
                    "append retry after connection error",
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
            except asyncpg.PostgresError as exc:
                raise EventStoreError(f"append failed: {exc}") from exc
            await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter only
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append_once(self, args: list[Any]) -> list[asyncpg.Record]:
        async with self._db.connection() as conn:
            if self._before_commit is None:
                # A single statement is its own transaction: one round trip.
                return list(await conn.fetch(QUERY, *args))
            async with conn.transaction():
                rows = list(await conn.fetch(QUERY, *args))
                await self._before_commit()
                return rows
