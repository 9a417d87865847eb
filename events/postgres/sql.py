"""The SQL port of the read models (``events.sql``) on the store's pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from events.postgres.connection import CONNECTION_ERRORS, Database, query_failed
from events.sql import Row, Sql


@asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Sql]:
    try:
        async with db.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                yield ConnectionSql(conn)
            except (TimeoutError, asyncio.CancelledError):
                # No ROLLBACK, which would wait on the server too: the connection is
                # closed (see Database.connection), and the server rolls back on its own.
                raise
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()
    except CONNECTION_ERRORS as exc:
        raise await db.lost(exc) from exc
    except asyncpg.PostgresError as exc:
        raise query_failed(exc) from exc


class ConnectionSql:
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


class PooledSql:
    """The SQL port on the pool: each call on its own connection, errors translated."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def execute(self, query: str, *args: Any) -> None:
        await self._db.fetch(query, *args)

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        async with transaction(self._db) as tx:
            await tx.executemany(query, args)

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        async with transaction(self._db) as tx:
            await tx.copy(table, columns, rows)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return [dict(row) for row in await self._db.fetch(query, *args)]

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._db.fetchval(query, *args)
