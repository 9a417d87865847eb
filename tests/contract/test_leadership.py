"""The store's leadership: one holder at a time, released when its connection ends."""

from __future__ import annotations

import asyncio

import asyncpg

from events.postgres import PostgresEventStore
from tests.support import eventually, timeout


async def test_one_holder_at_a_time_and_the_next_when_it_lets_go(store: PostgresEventStore):
    first = store.leadership("test.lead", holder="first", check_every=0.2)
    second = store.leadership("test.lead", holder="second", check_every=0.2)
    other = store.leadership("test.other", holder="other", check_every=0.2)
    try:
        assert await store.leader("test.lead") is None
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await other.try_acquire()  # another name is another lock
        assert await store.leader("test.lead") == "first"
        assert await store.leader("test.other") == "other"

        await first.close()
        assert await store.leader("test.lead") is None
        assert await second.try_acquire()
        assert await store.leader("test.lead") == "second"
    finally:
        for claim in (first, second, other):
            await claim.close()


async def test_a_holder_whose_connection_ends_learns_it_and_a_standby_takes_over(
    store: PostgresEventStore, database_url: str
):
    leading = store.leadership("test.lead", holder="leading", check_every=0.2)
    standby = store.leadership("test.lead", holder="standby", check_every=0.2)
    admin = await asyncpg.connect(database_url)
    try:
        assert await leading.try_acquire()
        watch = asyncio.create_task(leading.lost())
        await asyncio.sleep(0.3)
        assert not watch.done()
        # What a dead process or a vanished host amounts to: its connection ends.
        await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1",
            "leading",
        )
        await asyncio.wait_for(watch, timeout(5))
        await eventually(standby.try_acquire, 5, "the standby did not get the lead")
        assert await store.leader("test.lead") == "standby"
        # The old holder may claim again, and is told no.
        assert not await leading.try_acquire()
    finally:
        await admin.close()
        await leading.close()
        await standby.close()
