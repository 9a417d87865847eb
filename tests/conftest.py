"""Real PostgreSQL for every database test.

``DATABASE_URL`` (a role that may create databases) is used when set; otherwise the
session starts an embedded PostgreSQL from the pgserver wheel. Each test gets its
own database, cloned from a migrated template.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from events.postgres import PostgresEventStore
from tests.jwks import JwksServer
from tests.redis_server import RedisServer
from tests.support import ROOT, create_database, drop_database, start_embedded, with_database

TEMPLATE = "collab_template"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    server = start_embedded(tmp_path_factory.mktemp("pg") / "pgdata")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> str:
    async def build() -> None:
        admin_url = server_url
        conn_name = TEMPLATE
        await drop_database(admin_url, conn_name)
        import asyncpg  # noqa: PLC0415

        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f"create database {conn_name}")
        finally:
            await conn.close()
        store = await PostgresEventStore.connect(with_database(admin_url, conn_name))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(build())
    return TEMPLATE


@pytest.fixture
async def database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of our own."""
    name = await create_database(server_url, template=template_database)
    yield with_database(server_url, name)
    await drop_database(server_url, name)


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    name = await create_database(server_url)
    yield with_database(server_url, name)
    await drop_database(server_url, name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.connect(database_url, poll_interval=0.2)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def node_client_script() -> Path:
    """The Node Yjs client, with its locked dependencies installed on first use."""
    node_dir = ROOT / "tests" / "node"
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the Node client tests need {' and '.join(missing)} (Node 20) on PATH")
    installed = node_dir / "node_modules"
    if not all((installed / name).is_dir() for name in ("y-websocket", "@tonejs/midi")):
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=node_dir,
            check=True,
            timeout=600,
        )
    return node_dir / "client.mjs"


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    """A JWKS endpoint that counts its requests (tests/jwks.py)."""
    server = JwksServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own (tests/redis_server.py)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
