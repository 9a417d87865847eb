"""The SQL port for read models.

Projections keep their read models in tables of the same database as the log, and
write them in the transaction that moves their checkpoint; the API reads them with
plain queries. Both go through this narrow interface so that the driver (asyncpg)
stays inside ``events/postgres/``, whose errors it translates: a lost connection
raises :class:`~events.errors.StoreUnavailable`, any other database error
:class:`~events.errors.QueryFailed`.

Rows come back as plain dicts. ``jsonb`` values travel as JSON text both ways
(cast parameters with ``$1::jsonb``, ``json.loads`` the results). ``copy`` writes many
rows at once with PostgreSQL's COPY (values as they are, jsonb as JSON text): for a
fold's thousands of rows it costs half of an ``insert ... select from unnest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = dict[str, Any]


class Sql(Protocol):
    async def execute(self, query: str, *args: Any) -> None: ...

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None: ...

    async def copy(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


class SqlDatabase(Protocol):
    """Where read models live: single queries, or a transaction."""

    @property
    def queries(self) -> Sql:
        """Each call runs on its own pooled connection (autocommit)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Sql]:
        """Every call inside commits together when the block ends without an error."""
        ...
