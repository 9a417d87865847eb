"""What every benchmark here needs: a PostgreSQL server, fresh databases, a header line."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg

from events.postgres import PostgresEventStore


@contextlib.contextmanager
def postgres_server(*, from_environment: bool = True) -> Iterator[str]:
    """The server named by DATABASE_URL, or an embedded pgserver in a temporary folder
    (deleted afterwards)."""
    given = os.environ.get("DATABASE_URL") if from_environment else None
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - slow to import, and only needed here

        server = pgserver.get_server(Path(tempfile.mkdtemp()) / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, *, migrated: bool = False) -> AsyncIterator[str]:
    """A new database on ``server_url`` for one run, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"create database {name}")
    await admin.close()
    base, _, query = server_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    if migrated:
        store = await PostgresEventStore.connect(url, min_size=1, max_size=1)
        await store.migrate()
        await store.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


def machine_line(extra: str = "") -> str:
    return (
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}{extra}"
    )


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
