"""The PostgreSQL event store: the only module that imports asyncpg.

Driver errors are translated here into the store's own error tree
(``events.errors``). Appends go through the server-side function
``collab_append`` (one round trip); see ``migrations/0001_event_log.sql`` for why
positions are commit-ordered and dense.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Final
from uuid import UUID

import asyncpg
import structlog

from events.errors import (
    CorruptLog,
    DuplicateEvent,
    EventStoreError,
    MigrationError,
    QueryFailed,
    StoreTimeout,
    StoreUnavailable,
    WrongExpectedVersion,
)
from events.integrity import Break, ChainVerifier
from events.models import VERSION_EVENTS
from events.pacing import Pacer
from events.records import NewEvent, PreparedEvent, StoredEvent, prepare
from events.schema import migrations
from events.sql import Row, Sql
from events.store import (
    ANY,
    NO_STREAM,
    AppendRequest,
    AppendResult,
    CachedState,
    ExpectedVersion,
    PayloadRecord,
    describe,
)

log = structlog.get_logger("events.postgres")

NOTIFY_CHANNEL: Final = "collab_events"
#: advisory lock key taken while migrating ("collab" in ASCII)
MIGRATION_LOCK_KEY: Final = 0x636F6C6C6162
MAX_STREAM_ID_LENGTH: Final = 200
#: most events one coalesced append transaction carries
MAX_GROUP_EVENTS: Final = 5000
#: streams whose version tip (last version DAID) is remembered between appends
TIP_CACHE_SIZE: Final = 10_000
#: attempts of a request whose version tip moved on under it (another writer)
LINEAGE_ATTEMPTS: Final = 8
#: seconds one migration statement may take (schema changes of a large log are slow,
#: and the advisory lock waits for another process migrating): the store's own
#: statement timeout is meant for the live path, not for these
MIGRATION_TIMEOUT: Final = 900.0

_CONNECTION_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # A server killed without a shutdown (its postmaster killed, say) sends its idle
    # connections a FATAL error before it closes them; a statement sent in between is
    # refused with this ("another operation is in progress"): the connection is lost.
    asyncpg.exceptions.InternalClientError,
)

_EVENT_COLUMNS: Final = (
    "position, stream_id, stream_version, event_id, event_type, schema_version, data, "
    "payload, metadata, daid, parents, recorded_at, content_hash, prev_hash, hash"
)


@dataclass(frozen=True, slots=True)
class _Waiting:
    """One caller's append, queued for the next transaction."""

    requests: Sequence[AppendRequest]
    prepared: list[list[PreparedEvent]]
    #: per request, the version tip it was prepared against and the one it makes
    #: (both None when the request makes no version)
    tips: list[tuple[str | None, str | None]]
    done: asyncio.Future[list[AppendResult | EventStoreError]]


class _StaleLineage(EventStoreError):
    """Internal: a request was prepared against a version tip that moved on."""

    def __init__(self, stream_id: str, tip: str | None) -> None:
        self.stream_id = stream_id
        self.tip = tip
        super().__init__(f"stream {stream_id!r}: its version lineage moved on; retry")


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    applied: tuple[int, ...]
    available: tuple[int, ...]

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(v for v in self.available if v not in self.applied)

    @property
    def current(self) -> bool:
        return not self.pending


@dataclass(frozen=True, slots=True)
class VerifyReport:
    events: int
    streams: int
    last_position: int
    first_break: Break | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


#: awaited inside the append transaction, after the events are written and before
#: the commit. Tests use it to hold transactions open; production passes nothing.
BeforeCommit = Callable[[], Awaitable[None]]


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"database unavailable: {type(exc).__name__}: {exc}")


class PostgresEventStore:
    """Event store on PostgreSQL >= 14. Create with :meth:`connect`."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        *,
        poll_interval: float,
        append_attempts: int,
        before_commit: BeforeCommit | None,
        read_cache: int = 0,
        command_timeout: float | None = None,
        acquire_timeout: float | None = None,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout
        self._poll_interval = poll_interval
        self._append_attempts = append_attempts
        self._before_commit = before_commit
        self._queue: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        # stream -> DAID of its last version as this process expects it once the
        # queued appends commit; checked by collab_append, so a stale entry costs a
        # retry, never a wrong parent.
        self._tips: OrderedDict[str, str | None] = OrderedDict()
        self._recent = _RecentEvents(read_cache)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        poll_interval: float = 1.0,
        append_attempts: int = 3,
        before_commit: BeforeCommit | None = None,
        read_cache: int = 0,
        command_timeout: float | None = 60.0,
        acquire_timeout: float | None = None,
    ) -> PostgresEventStore:
        """A store on a new pool.

        ``read_cache`` keeps that many of the events :meth:`read_all` decoded, by
        position, for the next reader of the same range: several subscribers in one
        process (the projections) then read and decode the log once. Events never
        change and positions are dense, so nothing in it goes stale.

        ``command_timeout`` bounds each statement and ``acquire_timeout`` the wait for a
        pooled connection (opening one included), in seconds; past either the call
        raises :class:`StoreTimeout`. None waits forever.
        """
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                reset=_reset_connection,
            )
        except _CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            raise StoreUnavailable(f"cannot connect: {exc}") from exc
        return cls(
            dsn,
            pool,
            poll_interval=poll_interval,
            append_attempts=append_attempts,
            before_commit=before_commit,
            read_cache=read_cache,
            command_timeout=command_timeout,
            acquire_timeout=acquire_timeout,
        )

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            await self._writer  # let queued appends finish
        await self._pool.close()

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations; safe when several processes start at once.

        Returns the versions applied by this call (empty when already current).
        """
        slow = MIGRATION_TIMEOUT
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(
                    "select pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=slow
                )
                await conn.execute(
                    "create table if not exists schema_migrations ("
                    " version integer primary key, name text not null,"
                    " checksum text not null, applied_at timestamptz not null default now())"
                )
                rows = await conn.fetch("select version, name, checksum from schema_migrations")
                applied = {row["version"]: row["checksum"] for row in rows}
                done = []
                for migration in migrations():
                    if migration.version in applied:
                        if applied[migration.version] != migration.checksum:
                            raise MigrationError(
                                f"migration {migration.version:04d}_{migration.name} was "
                                "changed after it was applied (checksum differs)"
                            )
                        continue
                    await conn.execute(migration.sql, timeout=slow)
                    await conn.execute(
                        "insert into schema_migrations (version, name, checksum)"
                        " values ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                    done.append(migration.version)
        except _CONNECTION_ERRORS as exc:
            raise await self._lost(exc) from exc
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration failed: {exc}") from exc
        if done:
            log.info("migrations applied", versions=done)
        return done

    async def migration_status(self) -> MigrationStatus:
        available = tuple(m.version for m in migrations())
        try:
            async with self._connection() as conn:
                exists = await conn.fetchval("select to_regclass('schema_migrations') is not null")
                rows = (
                    await conn.fetch("select version from schema_migrations order by version")
                    if exists
                    else []
                )
        except _CONNECTION_ERRORS as exc:
            raise await self._lost(exc) from exc
        return MigrationStatus(tuple(row["version"] for row in rows), available)

    async def ping(self) -> None:
        try:
            async with self._connection() as conn:
                await conn.fetchval("select 1")
        except _CONNECTION_ERRORS as exc:
            raise await self._lost(exc) from exc

    # -- appends --------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        (result,) = await self.append_batch([AppendRequest(stream_id, events, expected_version)])
        if isinstance(result, EventStoreError):
            raise result
        return result

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
            _check_request(request)
        outcomes: list[AppendResult | EventStoreError] = [EventStoreError("not attempted")] * len(
            requests
        )
        todo = list(range(len(requests)))
        for _attempt in range(LINEAGE_ATTEMPTS):
            results = await self._append_queued([requests[index] for index in todo])
            for index, result in zip(todo, results, strict=True):
                outcomes[index] = result
            todo = [index for index in todo if isinstance(outcomes[index], _StaleLineage)]
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
        await self._learn_tips(requests)
        prepared: list[list[PreparedEvent]] = []
        tips: list[tuple[str | None, str | None]] = []
        for request in requests:
            events, tip = self._prepare(request)
            prepared.append(events)
            tips.append(tip)
        _check_unique_ids(requests, prepared)
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
            if isinstance(outcome, _StaleLineage):
                self._remember_tip(request.stream_id, outcome.tip)
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
        rows = await self._fetch(
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
                rows = await self._call_append(_append_arguments(requests, prepared, tips))
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
                _append_outcome(requests[row["req"] - 1], row)
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
                raise self._timed_out() from exc
            except _CONNECTION_ERRORS as exc:
                await self._pool.expire_connections()
                if attempt == self._append_attempts:
                    raise _unavailable(exc) from exc
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
        query = "select * from collab_append($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
        async with self._connection() as conn:
            if self._before_commit is None:
                # A single statement is its own transaction: one round trip.
                return list(await conn.fetch(query, *args))
            async with conn.transaction():
                rows = list(await conn.fetch(query, *args))
                await self._before_commit()
                return rows

    # -- reads ----------------------------------------------------------------------------

    async def stream_version(self, stream_id: str) -> int:
        version = await self._fetchval(
            "select version from streams where stream_id = $1", stream_id
        )
        return int(version) if version is not None else 0

    async def event_by_daid(self, daid: str) -> StoredEvent | None:
        rows = await self._fetch(f"select {_EVENT_COLUMNS} from events where daid = $1", daid)
        return _stored(rows[0]) if rows else None

    async def version_daid(self, stream_id: str, version: int) -> str | None:
        daid: str | None = await self._fetchval(
            "select daid from events where stream_id = $1 and stream_version <= $2"
            " and event_type = any($3) order by stream_version desc limit 1",
            stream_id,
            version,
            list(VERSION_EVENTS),
        )
        return daid

    async def head_position(self) -> int:
        return int(await self._fetchval("select last_position from event_log_head"))

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Events of one stream with ``from_version <= version <= to_version``.

        Backward reads return the newest first.
        """
        order = "desc" if backward else "asc"
        rows = await self._fetch(
            f"select {_EVENT_COLUMNS} from events where stream_id = $1"
            " and stream_version >= $2 and ($3::bigint is null or stream_version <= $3)"
            f" order by stream_version {order} limit $4",
            stream_id,
            from_version,
            to_version,
            limit,
        )
        return await _decoded(rows)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        cached = self._recent.take(after_position, limit) if self._recent else []
        if len(cached) == limit:
            return cached
        after = cached[-1].position if cached else after_position
        rows = await self._fetch(
            f"select {_EVENT_COLUMNS} from events where position > $1 order by position limit $2",
            after,
            limit - len(cached),
        )
        events = await _decoded(rows)
        if self._recent:
            self._recent.keep(events)
        return cached + events if cached else events

    async def read_share(
        self, share: int, shares: int, *, after_position: int, to_position: int, limit: int = 1000
    ) -> list[StoredEvent]:
        if not 0 <= share < shares:
            raise ValueError(f"share {share} is not one of 0 to {shares - 1}")
        # PostgreSQL picks the rows, so each process of a parallel rebuild decodes its
        # share of the log instead of all of it.
        rows = await self._fetch(
            f"select {_EVENT_COLUMNS} from events where position > $1 and position <= $2"
            " and mod(hashtext(stream_id)::bigint + 2147483648, $3) = $4"
            " order by position limit $5",
            after_position,
            to_position,
            shares,
            share,
            limit,
        )
        return await _decoded(rows)

    async def read_payloads(
        self,
        stream_id: str,
        event_types: Sequence[str],
        *,
        after_version: int = 0,
        to_version: int | None = None,
        limit: int = 5000,
    ) -> list[PayloadRecord]:
        """Just the binary payloads of one stream's events of ``event_types``, in order,
        with ``after_version < version <= to_version``.

        Loading a long document needs nothing else, and skipping the JSON columns makes
        it several times cheaper than :meth:`read_stream`.
        """
        rows = await self._fetch(
            "select stream_version, position, event_type, payload from events"
            " where stream_id = $1 and stream_version > $2 and event_type = any($3::text[])"
            " and ($5::bigint is null or stream_version <= $5)"
            " order by stream_version limit $4",
            stream_id,
            after_version,
            list(event_types),
            limit,
            to_version,
        )
        return [
            PayloadRecord(row["stream_version"], row["position"], row["event_type"], row["payload"])
            for row in rows
        ]

    # -- derived state cache (rebuildable; never part of the log) -------------------------

    async def load_state(self, stream_id: str) -> CachedState | None:
        rows = await self._fetch(
            "select version, position, state from state_cache where stream_id = $1", stream_id
        )
        if not rows:
            return None
        row = rows[0]
        return CachedState(stream_id, row["version"], row["position"], row["state"])

    async def save_state(self, cached: CachedState) -> None:
        """Keep the newest state per stream (an older one never replaces a newer one)."""
        await self._fetch(
            "insert into state_cache (stream_id, version, position, state)"
            " values ($1, $2, $3, $4) on conflict (stream_id) do update"
            " set version = excluded.version, position = excluded.position,"
            " state = excluded.state, saved_at = now()"
            " where state_cache.version < excluded.version",
            cached.stream_id,
            cached.version,
            cached.position,
            cached.state,
        )

    async def clear_state_cache(self) -> None:
        await self._fetch("truncate state_cache")

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._connection() as conn:
                return list(await conn.fetch(query, *args))
        except _CONNECTION_ERRORS as exc:
            raise await self._lost(exc) from exc
        except asyncpg.PostgresError as exc:
            raise _query_failed(exc) from exc

    async def _fetchval(self, query: str, *args: Any) -> Any:
        rows = await self._fetch(query, *args)
        return rows[0][0] if rows else None

    async def _lost(self, exc: BaseException) -> StoreUnavailable:
        if isinstance(exc, TimeoutError):
            # A slow or frozen server: its other connections may well be fine.
            return self._timed_out()
        # After a server restart every pooled connection is dead; replace them all
        # rather than discovering them one failed query at a time.
        await self._pool.expire_connections()
        return _unavailable(exc)

    def _timed_out(self) -> StoreTimeout:
        limits = []
        if self._command_timeout is not None:
            limits.append(f"{self._command_timeout:g} s a statement")
        if self._acquire_timeout is not None:
            limits.append(f"{self._acquire_timeout:g} s for a connection")
        within = f" within {' and '.join(limits)}" if limits else ""
        return StoreTimeout(f"database unavailable: no answer{within}")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """A pooled connection, waited for at most ``acquire_timeout`` seconds.

        One whose statement timed out or was cancelled is closed, not reused: asyncpg
        would first ask the server to cancel the statement and wait for its answer,
        which a frozen server never sends, so the caller's timeout would not hold. One
        whose protocol state is off (see ``_CONNECTION_ERRORS``) is closed too.
        """
        conn = await self._pool.acquire(timeout=self._acquire_timeout)
        try:
            yield conn
        except (TimeoutError, asyncio.CancelledError, asyncpg.exceptions.InternalClientError):
            conn.terminate()
            raise
        finally:
            await self._pool.release(conn)

    # -- subscription ---------------------------------------------------------------------

    async def subscribe(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """Every event after ``after_position``, in position order, exactly once, forever."""
        async for batch in self.subscribe_batches(after_position, batch_size=batch_size):
            for event in batch:
                yield event

    async def subscribe_batches(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncGenerator[list[StoredEvent], None]:
        """Like :meth:`subscribe`, in the batches it reads (never empty).

        LISTEN is set up before each catch-up read; a notification only wakes the
        loop, and the loop also polls every ``poll_interval`` seconds, so a lost
        notification, a killed listening connection or a database restart delays
        delivery but never skips or repeats an event.
        """
        last = after_position
        wakeup = asyncio.Event()
        listener: asyncpg.Connection | None = None
        backoff = 0.05
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen(wakeup)
                wakeup.clear()
                try:
                    batch = await self.read_all(last, batch_size)
                except StoreUnavailable as exc:
                    log.warning(
                        "subscription waiting for the database", error=str(exc), position=last
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                for event in batch:
                    if event.position != last + 1:
                        raise CorruptLog(
                            f"hole in the log: expected position {last + 1}, found {event.position}"
                        )
                    last = event.position
                if batch:
                    yield batch
                if len(batch) == batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._poll_interval)
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await listener.close(timeout=2)

    async def _listen(self, wakeup: asyncio.Event) -> asyncpg.Connection | None:
        def notified(*_args: object) -> None:
            wakeup.set()

        return await self._listener(NOTIFY_CHANNEL, notified, notified)

    async def _listener(
        self,
        channel: str,
        on_payload: Callable[[object, object, object, object], None],
        on_lost: Callable[[object], None],
    ) -> asyncpg.Connection | None:
        """A connection LISTENing on ``channel``, or None (logged) when there is none."""
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=5)
        except _CONNECTION_ERRORS as exc:
            log.warning("cannot LISTEN; polling until it can", error=f"{type(exc).__name__}")
            return None
        try:
            await conn.add_listener(channel, on_payload)
        except _CONNECTION_ERRORS as exc:
            conn.terminate()
            log.warning("cannot LISTEN; polling until it can", error=f"{type(exc).__name__}")
            return None
        except BaseException:
            conn.terminate()  # cancelled while subscribing: do not leak the connection
            raise
        # A dropped listener wakes the loop at once, which reconnects it.
        conn.add_termination_listener(on_lost)
        return conn

    async def notifications(self, channel: str) -> AsyncGenerator[str | None, None]:
        """The payloads of NOTIFY on ``channel``, forever.

        ``None`` comes first and after every reconnection: notifications sent while no
        connection listened are lost, so the consumer should look at what they were
        about. While the database is away this retries every ``poll_interval``.
        """
        # payloads, or None once the connection is gone
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        listener: asyncpg.Connection | None = None

        def payload(_conn: object, _pid: object, _channel: object, text: object) -> None:
            queue.put_nowait(str(text))

        def dropped(_conn: object) -> None:
            queue.put_nowait(None)

        try:
            while True:
                listener = await self._listener(channel, payload, dropped)
                if listener is None:
                    await asyncio.sleep(self._poll_interval)
                    continue
                yield None
                while isinstance(item := await queue.get(), str):
                    yield item
                listener.terminate()
                listener = None
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await listener.close(timeout=2)

    # -- read models (the SQL port) ------------------------------------------------------

    @property
    def queries(self) -> Sql:
        return _PooledSql(self)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        try:
            async with self._connection() as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    yield _ConnectionSql(conn)
                except (TimeoutError, asyncio.CancelledError):
                    # No ROLLBACK, which would wait on the server too: the connection is
                    # closed (see _connection), and the server rolls back on its own.
                    raise
                except BaseException:
                    await tx.rollback()
                    raise
                await tx.commit()
        except _CONNECTION_ERRORS as exc:
            raise await self._lost(exc) from exc
        except asyncpg.PostgresError as exc:
            raise _query_failed(exc) from exc

    # -- integrity ------------------------------------------------------------------------

    async def verify(
        self,
        stream_id: str | None = None,
        *,
        batch_size: int = 5000,
        observe: Callable[[StoredEvent], None] | None = None,
    ) -> VerifyReport:
        """Recompute every hash and link from the raw rows (see ``events.integrity``).

        ``observe`` sees every event read, in position order (another check can run in
        the same pass)."""
        verifier = ChainVerifier(check_positions=stream_id is None)
        last = 0
        query = (
            f"select {_EVENT_COLUMNS} from events where position > $1"
            + (" and stream_id = $3" if stream_id is not None else "")
            + " order by position limit $2"
        )
        while True:
            args: list[Any] = [last, batch_size]
            if stream_id is not None:
                args.append(stream_id)
            rows = await self._fetch(query, *args)
            for row in rows:
                event = _stored(row)
                verifier.feed(event)
                if observe is not None:
                    observe(event)
                last = row["position"]
            if verifier.first_break is not None or len(rows) < batch_size:
                break
        heads_query = "select stream_id, version, last_hash from streams where version > 0"
        if stream_id is not None:
            head_rows = await self._fetch(heads_query + " and stream_id = $1", stream_id)
        else:
            head_rows = await self._fetch(heads_query)
        heads = {row["stream_id"]: (row["version"], bytes(row["last_hash"])) for row in head_rows}
        log_head = await self.head_position() if stream_id is None else None
        first_break = verifier.finish(heads, log_head)
        return VerifyReport(verifier.events, verifier.streams, verifier.last_position, first_break)


def _query_failed(exc: asyncpg.PostgresError) -> QueryFailed:
    return QueryFailed(f"query failed: {exc}", getattr(exc, "sqlstate", None))


class _ConnectionSql:
    """The SQL port on one connection (inside the caller's transaction)."""

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn

    async def execute(self, query: str, *args: Any) -> None:
        await self._conn.execute(query, *args)

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(query, args)

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.copy_records_to_table(table, columns=list(columns), records=rows)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return [dict(row) for row in await self._conn.fetch(query, *args)]

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(query, *args)
        return dict(row) if row is not None else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._conn.fetchval(query, *args)


class _PooledSql:
    """The SQL port on the pool: each call on its own connection, errors translated."""

    def __init__(self, store: PostgresEventStore) -> None:
        self._store = store

    async def execute(self, query: str, *args: Any) -> None:
        await self._store._fetch(query, *args)

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        async with self._store.transaction() as tx:
            await tx.executemany(query, args)

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        async with self._store.transaction() as tx:
            await tx.copy(table, columns, rows)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return [dict(row) for row in await self._store._fetch(query, *args)]

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._store._fetchval(query, *args)


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (RESET ALL, UNLISTEN *, ...) is a second round trip on
    # every release. Pooled connections here never change session state (LISTEN uses
    # its own connection), so only a transaction left open by an error is undone.
    if conn.is_in_transaction():
        await conn.execute("rollback")


def _check_request(request: AppendRequest) -> None:
    stream_id = request.stream_id
    if not stream_id or len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise ValueError(f"stream id must be 1-{MAX_STREAM_ID_LENGTH} characters")
    if not request.events:
        raise ValueError(f"append to {stream_id!r}: no events given")
    expected = request.expected_version
    if isinstance(expected, int) and expected < 0:
        raise ValueError(f"expected version must be >= 0, got {expected}")


def _check_unique_ids(
    requests: Sequence[AppendRequest], prepared: Sequence[Sequence[PreparedEvent]]
) -> None:
    seen: set[UUID] = set()
    for request, events in zip(requests, prepared, strict=True):
        for event in events:
            if event.event_id in seen:
                raise DuplicateEvent(
                    event.event_id,
                    request.stream_id,
                    "the same event id appears twice in one append",
                )
            seen.add(event.event_id)


def _append_arguments(
    requests: Sequence[AppendRequest],
    prepared: Sequence[Sequence[PreparedEvent]],
    tips: Sequence[tuple[str | None, str | None]],
) -> list[Any]:
    """The parameters of ``collab_append``: per-request arrays, then per-event arrays."""
    streams = [request.stream_id for request in requests]
    expected = [
        None if version is ANY else 0 if version is NO_STREAM else version
        for version in (request.expected_version for request in requests)
    ]
    per_event = [
        (
            index,
            event.event_id,
            event.event_type,
            event.schema_version,
            event.data_json,
            event.payload,
            event.metadata_json,
            event.daid,
            event.parents_json,
            event.content_hash,
        )
        for index, events in enumerate(prepared, start=1)
        for event in events
    ]
    return [
        streams,
        expected,
        *(list(column) for column in zip(*per_event, strict=True)),
        [base for base, _made in tips],
        [made for _base, made in tips],
    ]


def _append_outcome(request: AppendRequest, row: asyncpg.Record) -> AppendResult | EventStoreError:
    status = row["status"]
    if status in ("ok", "existing"):
        return AppendResult(
            request.stream_id,
            tuple(row["versions"]),
            tuple(row["positions"]),
            tuple(row["daids"]),
        )
    if status == "wrong_version":
        return WrongExpectedVersion(
            request.stream_id, describe(request.expected_version), row["current_version"]
        )
    if status == "stale_lineage":
        return _StaleLineage(request.stream_id, row["detail"])
    if status == "duplicate":
        event_id, _, reason = str(row["detail"]).partition(": ")
        return DuplicateEvent(UUID(event_id), request.stream_id, reason)
    raise EventStoreError(f"unexpected append status {status!r}")  # pragma: no cover


class _RecentEvents:
    """Decoded events by position: at most ``size``, the first kept leaving first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._events: dict[int, StoredEvent] = {}

    def __bool__(self) -> bool:
        return self._size > 0

    def take(self, after_position: int, limit: int) -> list[StoredEvent]:
        """The cached events that follow ``after_position`` without a gap."""
        events: list[StoredEvent] = []
        position = after_position + 1
        while len(events) < limit and (event := self._events.get(position)) is not None:
            events.append(event)
            position += 1
        return events

    def keep(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            self._events[event.position] = event
        overflow = len(self._events) - self._size
        if overflow > 0:
            for position in list(itertools.islice(self._events, overflow)):
                del self._events[position]


#: rows whose JSON columns are parsed by one ``json.loads`` (a slice between pauses)
_DECODE_SLICE: Final = 500


async def _decoded(rows: Sequence[asyncpg.Record]) -> list[StoredEvent]:
    # Up to a batch of thousands of rows: decoded in slices, so the live path keeps going.
    pacer = Pacer()
    events: list[StoredEvent] = []
    for start in range(0, len(rows), _DECODE_SLICE):
        events += _stored_rows(rows[start : start + _DECODE_SLICE])
        await pacer.pause()
    return events


def _stored(row: asyncpg.Record) -> StoredEvent:
    return _stored_rows([row])[0]


def _stored_rows(rows: Sequence[asyncpg.Record]) -> list[StoredEvent]:
    """Rows of ``_EVENT_COLUMNS`` as events.

    The three JSON columns of all the rows are parsed by one ``json.loads`` of their
    texts joined into one array: per call, the parser's set-up costs more than these
    small documents (measured 3 µs against 10-20 µs a row). PostgreSQL writes each
    jsonb value as one complete JSON text, so the join is a valid array.
    """
    if not rows:
        return []
    parsed = json.loads("[" + ",".join(f"{r[6]},{r[8]},{r[10]}" for r in rows) + "]")
    return [
        StoredEvent(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            parsed[3 * i],
            # asyncpg returns bytea as bytes already
            r[7],
            parsed[3 * i + 1],
            r[9],
            tuple(parsed[3 * i + 2]),
            r[11],
            r[12],
            r[13],
            r[14],
        )
        for i, r in enumerate(rows)
    ]
