"""Reading the log: streams, the whole log by position, shares of it, payloads."""

from __future__ import annotations

from collections.abc import Sequence

from events.models import VERSION_EVENTS
from events.postgres.connection import Database
from events.postgres.rows import EVENT_COLUMNS, RecentEvents, decoded, stored
from events.records import StoredEvent
from events.store import PayloadRecord


class Reads:
    """The read side of the store; ``read_cache`` as in ``PostgresEventStore.connect``."""

    def __init__(self, db: Database, read_cache: int) -> None:
        self._db = db
        self._recent = RecentEvents(read_cache)

    async def stream_version(self, stream_id: str) -> int:
        version = await self._db.fetchval(
            "select version from streams where stream_id = $1", stream_id
        )
        return int(version) if version is not None else 0

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        rows = await self._db.fetch(
            "select stream_id, version from streams where stream_id = any($1::text[])",
            list(stream_ids),
        )
        return {row["stream_id"]: int(row["version"]) for row in rows}

    async def event_by_daid(self, daid: str) -> StoredEvent | None:
        rows = await self._db.fetch(f"select {EVENT_COLUMNS} from events where daid = $1", daid)
        return stored(rows[0]) if rows else None

    async def version_daid(self, stream_id: str, version: int) -> str | None:
        daid: str | None = await self._db.fetchval(
            "select daid from events where stream_id = $1 and stream_version <= $2"
            " and event_type = any($3) order by stream_version desc limit 1",
            stream_id,
            version,
            list(VERSION_EVENTS),
        )
        return daid

    async def head_position(self) -> int:
        return int(await self._db.fetchval("select last_position from event_log_head"))

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
        rows = await self._db.fetch(
            f"select {EVENT_COLUMNS} from events where stream_id = $1"
            " and stream_version >= $2 and ($3::bigint is null or stream_version <= $3)"
            f" order by stream_version {order} limit $4",
            stream_id,
            from_version,
            to_version,
            limit,
        )
        return await decoded(rows)

    async def read_records(
        self, stream_id: str, event_types: Sequence[str], *, after_version: int = 0
    ) -> list[StoredEvent]:
        """Events of one stream of ``event_types`` (never ``doc.updated``), in order."""
        # The literal "<> 'doc.updated'" lets the planner use the partial index of
        # migration 0011, whose predicate it is.
        rows = await self._db.fetch(
            f"select {EVENT_COLUMNS} from events where stream_id = $1"
            " and event_type <> 'doc.updated' and event_type = any($2::text[])"
            " and stream_version > $3 order by stream_version",
            stream_id,
            list(event_types),
            after_version,
        )
        return await decoded(rows)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        cached = self._recent.take(after_position, limit) if self._recent else []
        if len(cached) == limit:
            return cached
        after = cached[-1].position if cached else after_position
        rows = await self._db.fetch(
            f"select {EVENT_COLUMNS} from events where position > $1 order by position limit $2",
            after,
            limit - len(cached),
        )
        events = await decoded(rows)
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
        rows = await self._db.fetch(
            f"select {EVENT_COLUMNS} from events where position > $1 and position <= $2"
            " and mod(hashtext(stream_id)::bigint + 2147483648, $3) = $4"
            " order by position limit $5",
            after_position,
            to_position,
            shares,
            share,
            limit,
        )
        return await decoded(rows)

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
        rows = await self._db.fetch(
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
