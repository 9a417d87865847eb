"""Applying the schema migrations (``events.schema``) under an advisory lock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from events.errors import MigrationError
from events.postgres.connection import CONNECTION_ERRORS, Database
from events.schema import migrations

log = structlog.get_logger("events.postgres")

#: advisory lock key taken while migrating ("collab" in ASCII)
MIGRATION_LOCK_KEY: Final = 0x636F6C6C6162
#: seconds one migration statement may take (schema changes of a large log are slow,
#: and the advisory lock waits for another process migrating): the store's own
#: statement timeout is meant for the live path, not for these
MIGRATION_TIMEOUT: Final = 900.0


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


async def migrate(db: Database) -> list[int]:
    """Apply pending migrations; safe when several processes start at once.

    Returns the versions applied by this call (empty when already current).
    """
    slow = MIGRATION_TIMEOUT
    try:
        async with db.connection() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=slow)
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
                    "insert into schema_migrations (version, name, checksum) values ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
                done.append(migration.version)
    except CONNECTION_ERRORS as exc:
        raise await db.lost(exc) from exc
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    if done:
        log.info("migrations applied", versions=done)
    return done


async def migration_status(db: Database) -> MigrationStatus:
    available = tuple(m.version for m in migrations())
    try:
        async with db.connection() as conn:
            exists = await conn.fetchval("select to_regclass('schema_migrations') is not null")
            rows = (
                await conn.fetch("select version from schema_migrations order by version")
                if exists
                else []
            )
    except CONNECTION_ERRORS as exc:
        raise await db.lost(exc) from exc
    return MigrationStatus(tuple(row["version"] for row in rows), available)
