"""The store's timeouts and lost connections: its own errors, never a hang.

The freeze test stops every process of a PostgreSQL of its own (never the one the
other tests share) with SIGSTOP, and resumes them however it ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncpg
import psutil
import pytest

from events import EventMetadata, NewEvent
from events.errors import StoreTimeout, StoreUnavailable
from events.models import DocUpdated
from events.postgres import PostgresEventStore
from tests.support import start_embedded, timeout

META = EventMetadata(actor="alice")


def _doc(i: int) -> NewEvent:
    return NewEvent(DocUpdated(update=bytes([i % 256])), META)


async def test_connections_killed_while_idle_surface_as_store_unavailable(database_url: str):
    # A backend that is terminated sends its idle connection a FATAL error, then closes
    # it; asyncpg refuses a statement sent in between with an error of its own.
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    admin = await asyncpg.connect(database_url)
    seen: Counter[str] = Counter()
    try:
        for _ in range(40):
            pid = await store.queries.fetchval("select pg_backend_pid()")
            await admin.execute("select pg_terminate_backend($1)", pid)
            for _spin in range(200):
                try:
                    await store.ping()
                except StoreUnavailable:
                    seen["unavailable"] += 1
                else:
                    break
                await asyncio.sleep(0)
        assert set(seen) <= {"unavailable"}
        await store.append("s", [_doc(1)])
        assert await store.head_position() == 1
    finally:
        await admin.close()
        await store.close()


def _freeze(postmaster: psutil.Process) -> list[psutil.Process]:
    postmaster.suspend()  # first, so that it starts no new process meanwhile
    frozen = [postmaster]
    for child in postmaster.children(recursive=True):
        child.suspend()
        frozen.append(child)
    return frozen


async def test_a_frozen_database_raises_store_timeout_within_the_timeouts(tmp_path: Path):
    server = start_embedded(tmp_path / "pgdata")
    store = patient = None
    try:
        url = str(server.get_uri())
        store = await PostgresEventStore.connect(
            url, min_size=2, max_size=2, command_timeout=1, acquire_timeout=1
        )
        await store.migrate()
        await store.append("s", [_doc(1)])
        patient = await PostgresEventStore.connect(url, min_size=1, max_size=1)
        frozen = _freeze(psutil.Process(server.get_pid()))
        try:
            # each call gives up within its deadline (asyncpg alone waits a minute and
            # more), with the store's own error
            deadline = timeout(15)
            with pytest.raises(StoreTimeout, match="no answer within 1 s a statement"):
                await asyncio.wait_for(store.ping(), deadline)
            with pytest.raises(StoreTimeout):
                await asyncio.wait_for(store.append("s", [_doc(2)]), deadline)
            with pytest.raises(StoreTimeout):
                await asyncio.wait_for(store.read_all(0), deadline)

            async def in_transaction() -> None:
                async with store.transaction() as tx:
                    await tx.execute("select 1")

            with pytest.raises(StoreTimeout):
                await asyncio.wait_for(in_transaction(), deadline)
            # cancelled by the caller's own deadline (as /ready does), a call returns at
            # once, not after asking the frozen server to cancel its statement
            assert await asyncio.wait_for(_given_up(patient), deadline)
            # more callers than connections: none waits past the timeouts
            busy = [asyncio.create_task(store.head_position()) for _ in range(3)]
            done = await asyncio.wait_for(asyncio.gather(*busy, return_exceptions=True), deadline)
            assert all(isinstance(result, StoreTimeout) for result in done), done
        finally:
            for process in frozen:
                process.resume()
        # the same store works again once the database does
        result = await asyncio.wait_for(store.append("s", [_doc(3)]), timeout(15))
        assert result.position >= 2
        assert [e.position for e in await store.read_all(0)] == list(range(1, result.position + 1))
    finally:
        for opened in (store, patient):
            if opened is not None:
                await opened.close()
        server.cleanup()


async def _given_up(store: PostgresEventStore) -> bool:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.ping(), 0.5)
    return True
