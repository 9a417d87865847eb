"""Overload costs latency, not connections: while updates wait for the database, the
server stops reading editors' frames and refuses new connections (1013); once the
database catches up every frame is read, nothing is lost, and nobody was closed.
The database is made to fall behind for real: a transaction holds the log's table
lock while the editors type."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pycrdt

from music import document
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


@contextlib.asynccontextmanager
async def _log_locked(database_url: str) -> AsyncIterator[None]:
    """The database falls behind for real: a transaction holds the log's table lock
    until the block ends."""
    blocker = await asyncpg.connect(database_url)
    try:
        held = blocker.transaction()
        await held.start()
        await blocker.execute("lock table events in exclusive mode")
        try:
            yield
        finally:
            await held.rollback()  # it wrote nothing
    finally:
        await blocker.close()


async def test_a_database_that_falls_behind_slows_editors_down_and_closes_nobody(
    database_url: str,
) -> None:
    async with running_server(database_url, max_pending_updates=MAX_PENDING) as address:
        project = await create_project(address, "Overload")
        editors = [YClient(address, project) for _ in range(EDITORS)]
        for editor in editors:
            await editor.connect()
            await editor.wait_synced()
        async with _log_locked(database_url):
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


async def _metric(address: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


async def test_the_busiest_socket_pauses_first_and_a_light_editor_is_still_read(
    database_url: str,
) -> None:
    """Under congestion the socket that sent the most lately stops being read; an
    editor who sends a change now and then is read as before (collab.live.intake)."""
    limit = 80  # congestion at 40 waiting updates, every writer paused at 50
    async with running_server(database_url, max_pending_updates=limit) as address:
        project = await create_project(address, "Fair")
        flooder, light = YClient(address, project), YClient(address, project)
        for editor in (flooder, light):
            await editor.connect()
            await editor.wait_synced()
        async with _log_locked(database_url):
            flooded = flooder.doc.get(document.META, type=pycrdt.Map)
            for n in range(100):
                flooded["tempo"] = float(60 + n)
                await asyncio.sleep(0.002)
            await eventually(lambda: _paused(address), 10, "intake never paused")
            # the flooder pauses once it takes its next frame; the light editor waits
            # for frames as before
            await eventually(
                lambda: _count(address, "collab_paused_sockets", 1), 10, "flooder not paused"
            )
            before = await _metric(address, "collab_updates_received_total")
            typed = light.doc.get(document.META, type=pycrdt.Map)
            for n in range(3):
                typed["tempo"] = float(100 + n)
                await asyncio.sleep(0.01)
            await eventually(
                lambda: _at_least(address, "collab_updates_received_total", before + 3),
                10,
                "the light editor's changes were not read",
            )
            # read one by one as they came, it never paused: all three were read while
            # only the flooder waited (were every writer paused, the light editor's
            # second change would wait for its socket's next 2-second slice)
            assert await _metric(address, "collab_paused_sockets") == 1

        async def caught_up() -> bool:
            logged = await log_document(database_url, project)
            return flooder.json() == logged and light.json() == logged

        await eventually(caught_up, 30, "the editors' updates did not all arrive")
        assert (flooder.close_code, light.close_code) == (None, None)
        await flooder.disconnect()
        await light.disconnect()


async def _count(address: str, name: str, value: float) -> bool:
    return await _metric(address, name) == value


async def _at_least(address: str, name: str, value: float) -> bool:
    return await _metric(address, name) >= value
