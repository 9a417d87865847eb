"""A subscription and appends across a real PostgreSQL restart.

This test always starts its own embedded PostgreSQL (even when DATABASE_URL is
set), because it must stop and start the server process.
"""

from __future__ import annotations

import asyncio
import os

from events import EventMetadata, NewEvent
from events.models import DocUpdated
from events.postgres import PostgresEventStore
from tests.support import eventually, start_embedded


def _restart(server) -> None:
    from pgserver import _commands  # noqa: PLC0415 - the wheel's own pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    _commands.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=user, timeout=60)


async def test_subscription_and_appends_survive_a_postgres_restart(tmp_path):
    server = start_embedded(tmp_path / "pgdata")
    meta = EventMetadata(actor="alice")
    store = reader = None
    try:
        url = str(server.get_uri())
        store = await PostgresEventStore.connect(url, append_attempts=8)
        await store.migrate()
        reader = await PostgresEventStore.connect(url, poll_interval=0.2)
        seen: list = []

        async def tail() -> None:
            async for event in reader.subscribe(0):
                seen.append(event)  # noqa: PERF401 - appended live, read while it runs

        task = asyncio.create_task(tail())
        for i in range(30):
            await store.append(f"s{i % 2}", [NewEvent(DocUpdated(update=bytes([i + 1])), meta)])
        await eventually(lambda: len(seen) == 30, 10, "events before the restart")

        await asyncio.to_thread(_restart, server)

        for i in range(30, 60):
            await store.append(f"s{i % 2}", [NewEvent(DocUpdated(update=bytes([i + 1])), meta)])
        await eventually(lambda: len(seen) == 60, 30, "events after the restart")
        assert [e.position for e in seen] == list(range(1, 61))
        assert [e.payload for e in seen] == [bytes([i + 1]) for i in range(60)]
        task.cancel()
        report = await store.verify()
        assert report.ok, report.first_break
    finally:
        if reader is not None:
            await reader.close()
        if store is not None:
            await store.close()
        server.cleanup()
