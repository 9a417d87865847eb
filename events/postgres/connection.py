"""The pool and its connections, and where driver errors become the store's.

Every other module of the package reaches PostgreSQL through :class:`Database`; a
lost connection, a timeout or a refused query leaves it as ``events.errors``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

from events.errors import QueryFailed, StoreTimeout, StoreUnavailable

CONNECTION_ERRORS: Final = (
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


def unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"database unavailable: {type(exc).__name__}: {exc}")


def query_failed(exc: asyncpg.PostgresError) -> QueryFailed:
    return QueryFailed(f"query failed: {exc}", getattr(exc, "sqlstate", None))


class Database:
    """A pool with the store's timeouts; open with :meth:`open`."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        *,
        command_timeout: float | None,
        acquire_timeout: float | None,
    ) -> None:
        self.dsn = dsn
        self.pool = pool
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        command_timeout: float | None,
        acquire_timeout: float | None,
    ) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                reset=_reset_connection,
            )
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            raise StoreUnavailable(f"cannot connect: {exc}") from exc
        return cls(dsn, pool, command_timeout=command_timeout, acquire_timeout=acquire_timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self.connection() as conn:
                return list(await conn.fetch(query, *args))
        except CONNECTION_ERRORS as exc:
            raise await self.lost(exc) from exc
        except asyncpg.PostgresError as exc:
            raise query_failed(exc) from exc

    async def fetchval(self, query: str, *args: Any) -> Any:
        rows = await self.fetch(query, *args)
        return rows[0][0] if rows else None

    async def lost(self, exc: BaseException) -> StoreUnavailable:
        if isinstance(exc, TimeoutError):
            # A slow or frozen server: its other connections may well be fine.
            return self.timed_out()
        # After a server restart every pooled connection is dead; replace them all
        # rather than discovering them one failed query at a time.
        await self.pool.expire_connections()
        return unavailable(exc)

    def timed_out(self) -> StoreTimeout:
        limits = []
        if self._command_timeout is not None:
            limits.append(f"{self._command_timeout:g} s a statement")
        if self._acquire_timeout is not None:
            limits.append(f"{self._acquire_timeout:g} s for a connection")
        within = f" within {' and '.join(limits)}" if limits else ""
        return StoreTimeout(f"database unavailable: no answer{within}")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """A pooled connection, waited for at most ``acquire_timeout`` seconds.

        One whose statement timed out or was cancelled is closed, not reused: asyncpg
        would first ask the server to cancel the statement and wait for its answer,
        which a frozen server never sends, so the caller's timeout would not hold. One
        whose protocol state is off (see ``CONNECTION_ERRORS``) is closed too.
        """
        conn = await self.pool.acquire(timeout=self._acquire_timeout)
        try:
            yield conn
        except (TimeoutError, asyncio.CancelledError, asyncpg.exceptions.InternalClientError):
            conn.terminate()
            raise
        finally:
            await self.pool.release(conn)


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (RESET ALL, UNLISTEN *, ...) is a second round trip on
    # every release. Pooled connections here never change session state (LISTEN uses
    # its own connection), so only a transaction left open by an error is undone.
    if conn.is_in_transaction():
        await conn.execute("rollback")
