"""Writing a batch of appends: prepare against the version tips, one transaction.

``events.group_commit`` decides what goes together; this module writes it. It
remembers each stream's version tip (the DAID of its last version), so a version
event's parents are known without asking the database, and retries a request whose
tip another writer moved on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, cast

import asyncpg
import structlog

from events.errors import EventStoreError
from events.postgres.append_call import (
    QUERY,
    StaleLineage,
    append_arguments,
    append_outcome,
    check_unique_ids,
)
from events.postgres.connection import CONNECTION_ERRORS, Database, unavailable
from events.records import NewEvent, PreparedEvent, prepare
from events.store import NO_STREAM, AppendRequest, AppendResult

log = structlog.get_logger("events.postgres")

#: streams whose version tip (last version DAID) is remembered between appends
TIP_CACHE_SIZE: Final = 10_000
#: attempts of a request whose version tip moved on under it (another writer). The first
#: goes with the tip this process remembers; the ones after
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

#: what :meth:`Appender.write` makes of one unit: its requests' outcomes, or its refusal
Written = list[AppendResult | EventStoreError] | ValueError | EventStoreError

#: awaited inside the append transaction, after the events are written and before
#: the commit. Tests use it to hold transactions open; production passes nothing.
BeforeCommit = Callable[[], Awaitable[None]]


class Appender:
    def __init__(
        self, db: Database, *, append_attempts: int, before_commit: BeforeCommit | None
    ) -> None:
        self._db = db
        self._append_attempts = append_attempts
        self._before_commit = before_commit
        # stream -> DAID of its last version as this process expects it; checked by
        # collab_append, so a stale entry costs a retry, never a wrong parent.
        self._tips: OrderedDict[str, str | None] = OrderedDict()
        #: streams a guess failed on lately, and until when they count as contended
        self._contended_until: dict[str, float] = {}

    async def write(self, units: Sequence[Sequence[AppendRequest]]) -> list[Written]:
        """Write one batch of units (each the requests of one caller).

        A unit whose events cannot be prepared (an invalid event, a value JSON cannot
        hold) is refused on its own with that error and nothing of it is written;
        otherwise each request succeeds or fails on its own, in its slot. The batch goes
        in one statement, except for streams another writer moved on under this
        process's guess: those are retried, each retry in one transaction that locks
        their rows. Raises only when the version tips cannot be read (nothing was
        prepared). The requests are checked (``check_request``) and their event ids
        unique: the group commit's callers see to both.
        """
        await self._learn_tips([request for unit in units for request in unit])
        now = time.monotonic()
        written: list[Written] = []
        requests: list[AppendRequest] = []
        #: per request: its events prepared against the remembered tip, None if contended
        prepared: list[list[PreparedEvent] | None] = []
        tips: list[tuple[str | None, str | None]] = []
        for unit in units:
            start = len(requests)
            # what this process believed of the unit's streams, put back if it is refused
            before = {request.stream_id: self._tips.get(request.stream_id) for request in unit}
            known = {stream for stream in before if stream in self._tips}
            try:
                for request in unit:
                    events: list[PreparedEvent] | None
                    tip: tuple[str | None, str | None]
                    if self._contended(request, now):
                        for new in request.events:  # checked now, prepared under the lock
                            prepare(request.stream_id, new)
                        events, tip = None, (None, None)
                    else:
                        events, tip = self._prepare(request)
                    requests.append(request)
                    prepared.append(events)
                    tips.append(tip)
            except Exception as exc:
                for stream, remembered in before.items():
                    if stream in known:
                        self._remember_tip(stream, remembered)
                    else:
                        self._tips.pop(stream, None)
                del requests[start:], prepared[start:], tips[start:]
                if not isinstance(exc, ValueError | EventStoreError):
                    log.exception("events could not be prepared")
                    exc = EventStoreError(f"events could not be prepared: {exc!r}")
                written.append(exc)
                continue
            written.append([])
        try:
            outcomes = await self._write_requests(requests, prepared, tips, now)
        except EventStoreError as exc:
            # nothing of the batch was written: the refused keep their own reason
            outcomes = [exc] * len(requests)
        taken = iter(outcomes)
        for unit, result in zip(units, written, strict=True):
            if isinstance(result, list):
                result.extend(next(taken) for _ in unit)
        return written

    async def _write_requests(
        self,
        requests: list[AppendRequest],
        prepared: list[list[PreparedEvent] | None],
        tips: list[tuple[str | None, str | None]],
        now: float,
    ) -> list[AppendResult | EventStoreError]:
        outcomes: list[AppendResult | EventStoreError] = [EventStoreError("not attempted")] * len(
            requests
        )
        locked = [i for i, events in enumerate(prepared) if events is None]
        guessed = [i for i, events in enumerate(prepared) if events is not None]
        todo = list(range(len(requests)))
        for attempt in range(LINEAGE_ATTEMPTS):
            if attempt > 0:
                now = time.monotonic()
                locked, guessed = todo, []
            results = await self._append_guessed(
                [requests[i] for i in guessed],
                [cast("list[PreparedEvent]", prepared[i]) for i in guessed],
                [tips[i] for i in guessed],
            )
            try:
                results += await self._append_locked([requests[i] for i in locked])
            except EventStoreError as exc:
                # What the guessed statement wrote is committed: only these failed.
                results += [exc] * len(locked)
            for index, result in zip(guessed + locked, results, strict=True):
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

    async def _append_guessed(
        self,
        requests: Sequence[AppendRequest],
        prepared: Sequence[Sequence[PreparedEvent]],
        tips: Sequence[tuple[str | None, str | None]],
    ) -> list[AppendResult | EventStoreError]:
        """Append against the version tips this process remembers, in one statement."""
        if not requests:
            return []
        try:
            rows = await self._call_append(append_arguments(requests, prepared, tips))
        except BaseException:
            self._forget_tips(requests)
            raise
        outcomes = [
            append_outcome(requests[row["req"] - 1], row)
            for row in sorted(rows, key=lambda row: int(row["req"]))
        ]
        for request, (_base, made), outcome in zip(requests, tips, outcomes, strict=True):
            if made is None or (isinstance(outcome, AppendResult) and made in outcome.daids):
                continue
            # Not written as prepared: what this process assumed about the stream is wrong.
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
                    # built directly: dataclasses.replace was 1 % of the live server
                    new = NewEvent(new.event, new.metadata, new.event_id, (tip, *new.parents))  # noqa: PLW2901
                # the tip is a DAID this store minted or read from the log
                event = prepare(stream_id, new, known=tip)
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
