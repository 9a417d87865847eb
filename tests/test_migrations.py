from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.errors import MigrationError
from events.postgres import PostgresEventStore
from events.schema import latest_version, migrations


async def test_migrations_apply_once_and_are_idempotent(empty_database_url):
    store = await PostgresEventStore.connect(empty_database_url)
    try:
        status = await store.migration_status()
        assert not status.current
        assert await store.migrate() == [m.version for m in migrations()]
        assert await store.migrate() == []
        status = await store.migration_status()
        assert status.current
        assert status.applied == tuple(range(1, latest_version() + 1))
    finally:
        await store.close()


async def test_two_servers_starting_at_once(empty_database_url):
    stores = [await PostgresEventStore.connect(empty_database_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for store in stores:
            await store.close()
    assert sorted(applied, key=len) == [[], [], [], [m.version for m in migrations()]]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("select count(*) from schema_migrations") == latest_version()
        assert await conn.fetchval("select last_position from event_log_head") == 0
    finally:
        await conn.close()


async def test_a_changed_applied_migration_is_refused(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("update schema_migrations set checksum = 'x' where version = 1")
    finally:
        await conn.close()
    store = await PostgresEventStore.connect(database_url)
    try:
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await store.migrate()
    finally:
        await store.close()
