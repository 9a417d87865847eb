"""Overload costs latency, not connections: while updates wait for the database, the
server stops reading editors' frames and refuses new connections (1013); once the
database catches up every frame is read, nothing is lost, and nobody was closed.
The database is made to fall behind for real: a transaction holds the log's table
lock while the editors type."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import httpx

from tests.live import YClient, create_project, log_document, random_edit, running_server
from tests.support import eventually

EDITORS = 4
EDITS = 30
#: the writer's queue limit: congestion starts at half of it (20 waiting updates)
MAX_PENDING = 40


async def _paused(address: str) -> bool:
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        metrics = (await client.get("/metrics")).text
    return "collab_intake_paused 1.0" in metrics


async def test_a_database_that_falls_behind_slows_editors_down_and_closes_nobody(
    database_url: str,
) -> None:
    async with running_server(database_url, max_pending_updates=MAX_PENDING) as address:
        project = await create_project(address, "Overload")
        editors = [YClient(address, project) for _ in range(EDITORS)]
        for editor in editors:
            await editor.connect()
            await editor.wait_synced()
        blocker = await asyncpg.connect(database_url)
        try:
            held = blocker.transaction()
            await held.start()
            await blocker.execute("lock table events in exclusive mode")
            rng = random.Random(7)
            for _ in range(EDITS):
                for index, editor in enumerate(editors):
                    random_edit(rng, editor.doc, index)
                await asyncio.sleep(0.005)
            # four times what the queue takes: the server must have stopped reading
            await eventually(lambda: _paused(address), 10, "intake never paused")
            late = YClient(address, project)
            await late.connect()
            assert await late.wait_closed(10) == 1013
            assert late.close_reason is not None
            assert late.close_reason.startswith("overloaded")
            await held.rollback()
        finally:
            await blocker.close()

        async def caught_up() -> bool:
            logged = await log_document(database_url, project)
            return all(editor.json() == logged for editor in editors)

        await eventually(caught_up, 30, "the editors' updates did not all arrive")
        assert not await _paused(address)
        assert [editor.close_code for editor in editors] == [None] * EDITORS
        logged = await log_document(database_url, project)
        assert len(logged["tracks"]) >= EDITORS  # every editor's tracks made it
        for editor in editors:
            await editor.disconnect()
