"""Leading the cluster: one connection at a time holds a named PostgreSQL advisory lock.

The lock lives on a connection of its own, outside the pool: pooled connections are
shared by queries and replaced after errors, while the lock must last exactly as long
as this process's claim. PostgreSQL releases it when that connection ends, however it
ends: the process killed, ``pg_terminate_backend``, or its host gone (noticed by the
server's TCP keepalives, which this connection sets short), so a standby's next
attempt finds it free.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import asyncpg

from events.postgres.connection import CONNECTION_ERRORS, Database, query_failed, unavailable

#: the lock key of a name; the same expression finds its holder in ``pg_locks``
_KEY: Final = "hashtext($1)::bigint"

#: server-side keepalives of the lock's connection (each a setting any connection may
#: change): a leader whose host vanishes without closing its socket loses the lock
#: after about 10 + 3 x 3 s, instead of the operating system's default two hours
_KEEPALIVES: Final = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "3",
    "tcp_keepalives_count": "3",
}

#: PostgreSQL keeps this many bytes of ``application_name``
_NAME_BYTES: Final = 63

#: seconds a check of the lock's connection may take before the lead counts as lost.
#: Not shorter: a busy database answering slowly would make the leader give up and
#: take the lead again, throwing its batch in flight away each time; and not longer
#: than the server's keepalives above, so that a leader cut off from the database
#: gives up before the database lets a standby in.
_ANSWER_WITHIN: Final = 10.0


class PostgresLeadership:
    """A claim to the lock ``name``, made by :meth:`try_acquire`, watched by :meth:`lost`.

    ``holder`` names this process in ``pg_stat_activity`` (its ``application_name``),
    which is how :func:`leader` tells who holds the lock. The connection is checked
    every ``check_every`` seconds while the lock is held (its end is noticed at once).
    """

    def __init__(self, dsn: str, name: str, *, holder: str, check_every: float) -> None:
        self.name = name
        self.holder = holder.encode()[:_NAME_BYTES].decode(errors="ignore")
        self._dsn = dsn
        self._check_every = check_every
        self._answer_within = max(check_every, _ANSWER_WITHIN)
        self._conn: asyncpg.Connection | None = None
        self._ended = asyncio.Event()
        self.held = False

    async def try_acquire(self) -> bool:
        """One attempt; False while another connection holds the lock. Raises
        ``events.errors.StoreUnavailable`` when the database cannot be reached (the next attempt
        connects again)."""
        if self.held:
            return True
        try:
            conn = await self._connection()
            got = await conn.fetchval(
                f"select pg_try_advisory_lock({_KEY})", self.name, timeout=self._answer_within
            )
        except CONNECTION_ERRORS as exc:
            self._drop()
            raise unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            self._drop()
            raise query_failed(exc) from exc
        self.held = bool(got)
        return self.held

    async def lost(self) -> None:
        """Return once the lock may no longer be held: its connection ended, or did not
        answer a check in time. The connection is closed then,
        so that the database drops the lock too if it still had it."""
        try:
            while self.held and self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), self._check_every)
                    break
                try:
                    await self._conn.fetchval("select 1", timeout=self._answer_within)
                except (*CONNECTION_ERRORS, asyncpg.PostgresError):
                    break
        finally:
            self.held = False
            self._drop()

    async def close(self) -> None:
        """Give the lock up (closing its connection releases it)."""
        self.held = False
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=self._answer_within)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._ended = asyncio.Event()
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=self._answer_within,
            command_timeout=self._answer_within,
            server_settings={"application_name": self.holder, **_KEEPALIVES},
        )
        ended = self._ended
        conn.add_termination_listener(lambda _conn: ended.set())
        self._conn = conn
        return conn

    def _drop(self) -> None:
        # Not a polite close: the database may be the one that is gone, and waiting for
        # its answer would keep a process that lost the lead folding.
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()


async def leader(db: Database, name: str) -> str | None:
    """The ``application_name`` of the connection holding the lock ``name`` in this
    database; None when nobody holds it."""
    try:
        async with db.connection() as conn:
            value: Any = await conn.fetchval(
                "select a.application_name from pg_locks l"
                " join pg_stat_activity a on a.pid = l.pid"
                " where l.locktype = 'advisory' and l.granted and l.objsubid = 1"
                " and l.database = (select oid from pg_database"
                "   where datname = current_database())"
                f" and ((l.classid::bigint << 32) | l.objid::bigint) = {_KEY}"
                " limit 1",
                name,
            )
    except CONNECTION_ERRORS as exc:
        raise await db.lost(exc) from exc
    except asyncpg.PostgresError as exc:
        raise query_failed(exc) from exc
    return None if value is None else str(value)
