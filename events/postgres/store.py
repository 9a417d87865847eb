"""``PostgresEventStore``: the event store on PostgreSQL >= 14, one facade over the parts.

Each concern lives in its own module of this package (the pool, migrations, the
appender, reads, the state cache, subscriptions, the SQL port, verify); this class
only wires them to one pool and keeps the ``EventStore`` surface in one place.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from events.errors import EventStoreError
from events.group_commit import GroupCommit, Observe
from events.postgres import leadership as leads
from events.postgres import migrations, sql, verify
from events.postgres.append_call import check_request
from events.postgres.appender import Appender, BeforeCommit
from events.postgres.connection import CONNECTION_ERRORS, Database
from events.postgres.reads import Reads
from events.postgres.state_cache import StateCache
from events.postgres.subscriptions import Subscriptions
from events.records import NewEvent, StoredEvent
from events.sql import Sql
from events.store import (
    ANY,
    AppendRequest,
    AppendResult,
    CachedState,
    ExpectedVersion,
    PayloadRecord,
)


class PostgresEventStore:
    """Event store on PostgreSQL >= 14. Create with :meth:`connect`."""

    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float,
        append_attempts: int,
        before_commit: BeforeCommit | None,
        read_cache: int = 0,
        commit_window: float = 0.0,
        observe_commit: Observe | None = None,
    ) -> None:
        self._db = db
        self._appender = Appender(db, append_attempts=append_attempts, before_commit=before_commit)
        self._commits = GroupCommit(
            self._appender.write, window=commit_window, observe=observe_commit
        )
        self._reads = Reads(db, read_cache)
        self._state = StateCache(db)
        self._subscriptions = Subscriptions(db, self._reads, poll_interval)

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
        commit_window: float = 0.0,
        observe_commit: Observe | None = None,
    ) -> PostgresEventStore:
        """A store on a new pool.

        ``read_cache`` keeps that many of the events :meth:`read_all` decoded, by
        position, for the next reader of the same range: several subscribers in one
        process (the projections) then read and decode the log once. Events never
        change and positions are dense, so nothing in it goes stale.

        ``command_timeout`` bounds each statement and ``acquire_timeout`` the wait for a
        pooled connection (opening one included), in seconds; past either the call
        raises :class:`StoreTimeout`. None waits forever.

        ``commit_window`` is how long a batch of :meth:`append_soon` requests waits for
        more to join it, in seconds; ``observe_commit`` sees each batch written (its
        events and the seconds its write took).
        """
        db = await Database.open(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            acquire_timeout=acquire_timeout,
        )
        return cls(
            db,
            poll_interval=poll_interval,
            append_attempts=append_attempts,
            before_commit=before_commit,
            read_cache=read_cache,
            commit_window=commit_window,
            observe_commit=observe_commit,
        )

    async def close(self) -> None:
        await self._commits.close()
        await self._db.close()

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations; safe when several processes start at once.

        Returns the versions applied by this call (empty when already current).
        """
        return await migrations.migrate(self._db)

    async def migration_status(self) -> migrations.MigrationStatus:
        return await migrations.migration_status(self._db)

    async def ping(self) -> None:
        try:
            async with self._db.connection() as conn:
                await conn.fetchval("select 1")
        except CONNECTION_ERRORS as exc:
            raise await self._db.lost(exc) from exc

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

        Each request still succeeds or fails on its own.
        """
        for request in requests:
            check_request(request)
        return await self._commits.append_batch(requests)

    def append_soon(
        self,
        request: AppendRequest,
        decided: Callable[[AppendResult | EventStoreError], None],
        *,
        alone: bool = False,
    ) -> None:
        """Queue ``request`` for a batch that waits up to the commit window for others."""
        check_request(request)
        self._commits.append_soon(request, decided, alone=alone)

    # -- reads ----------------------------------------------------------------------------

    async def stream_version(self, stream_id: str) -> int:
        return await self._reads.stream_version(stream_id)

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        return await self._reads.stream_versions(stream_ids)

    async def event_by_daid(self, daid: str) -> StoredEvent | None:
        return await self._reads.event_by_daid(daid)

    async def version_daid(self, stream_id: str, version: int) -> str | None:
        return await self._reads.version_daid(stream_id, version)

    async def head_position(self) -> int:
        return await self._reads.head_position()

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
        return await self._reads.read_stream(
            stream_id,
            from_version=from_version,
            to_version=to_version,
            backward=backward,
            limit=limit,
        )

    async def read_records(
        self, stream_id: str, event_types: Sequence[str], *, after_version: int = 0
    ) -> list[StoredEvent]:
        return await self._reads.read_records(stream_id, event_types, after_version=after_version)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        return await self._reads.read_all(after_position, limit)

    async def read_share(
        self, share: int, shares: int, *, after_position: int, to_position: int, limit: int = 1000
    ) -> list[StoredEvent]:
        return await self._reads.read_share(
            share, shares, after_position=after_position, to_position=to_position, limit=limit
        )

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
        with ``after_version < version <= to_version`` (see ``Reads.read_payloads``)."""
        return await self._reads.read_payloads(
            stream_id, event_types, after_version=after_version, to_version=to_version, limit=limit
        )

    # -- derived state cache (rebuildable; never part of the log) -------------------------

    async def load_state(self, stream_id: str) -> CachedState | None:
        return await self._state.load(stream_id)

    async def save_state(self, cached: CachedState) -> None:
        """Keep the newest state per stream (an older one never replaces a newer one)."""
        await self._state.save(cached)

    async def clear_state_cache(self) -> None:
        await self._state.clear()

    # -- subscription ---------------------------------------------------------------------

    def subscribe(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """Every event after ``after_position``, in position order, exactly once, forever."""
        return self._subscriptions.subscribe(after_position, batch_size=batch_size)

    def subscribe_batches(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncGenerator[list[StoredEvent], None]:
        """Like :meth:`subscribe`, in the batches it reads (never empty)."""
        return self._subscriptions.subscribe_batches(after_position, batch_size=batch_size)

    def notifications(self, channel: str) -> AsyncGenerator[str | None, None]:
        """The payloads of NOTIFY on ``channel``, forever (``None`` after each reconnection)."""
        return self._subscriptions.notifications(channel)

    # -- leadership -----------------------------------------------------------------------

    def leadership(
        self, name: str, *, holder: str, check_every: float = 1.0
    ) -> leads.PostgresLeadership:
        """A claim to lead under ``name``: a PostgreSQL advisory lock on a connection of
        its own (see ``events.postgres.leadership``)."""
        return leads.PostgresLeadership(self._db.dsn, name, holder=holder, check_every=check_every)

    async def leader(self, name: str) -> str | None:
        return await leads.leader(self._db, name)

    # -- read models (the SQL port) ------------------------------------------------------

    @property
    def queries(self) -> Sql:
        return sql.PooledSql(self._db)

    def transaction(self) -> AbstractAsyncContextManager[Sql]:
        return sql.transaction(self._db)

    # -- integrity ------------------------------------------------------------------------

    async def verify(
        self,
        stream_id: str | None = None,
        *,
        batch_size: int = 5000,
        observe: Callable[[StoredEvent], None] | None = None,
    ) -> verify.VerifyReport:
        """Recompute every hash and link from the raw rows (see ``events.integrity``).

        ``observe`` sees every event read, in position order (another check can run in
        the same pass)."""
        return await verify.verify(self._db, stream_id, batch_size=batch_size, observe=observe)
