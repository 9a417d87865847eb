"""The store's cache of decoded events (``read_cache``): what several subscribers in
one process share. Reads through it equal reads without it, at every boundary."""

from __future__ import annotations

import random

from events import EventMetadata, NewEvent
from events.models import DocUpdated
from events.postgres import PostgresEventStore
from events.store import AppendRequest

EVENTS = 300


async def _fill(store: PostgresEventStore) -> None:
    meta = EventMetadata(actor="t")
    await store.append_batch(
        [
            AppendRequest(f"s-{i % 5}", [NewEvent(DocUpdated(update=bytes([i % 250 + 1])), meta)])
            for i in range(EVENTS)
        ]
    )


async def test_reads_through_the_cache_equal_reads_without_it(database_url):
    plain = await PostgresEventStore.connect(database_url)
    cached = await PostgresEventStore.connect(database_url, read_cache=100)
    try:
        await _fill(plain)
        rng = random.Random(3)
        for _ in range(200):
            after = rng.randrange(0, EVENTS + 5)
            limit = rng.randrange(1, 120)
            assert await cached.read_all(after, limit) == await plain.read_all(after, limit)
    finally:
        await plain.close()
        await cached.close()


async def test_a_range_read_again_comes_from_the_cache_until_it_is_pushed_out(database_url):
    store = await PostgresEventStore.connect(database_url, read_cache=100)
    try:
        await _fill(store)
        first = await store.read_all(0, 60)
        again = await store.read_all(10, 40)
        # the very objects decoded the first time: no second read, no second decode
        assert all(a is b for a, b in zip(again, first[10:50], strict=True))
        # partly cached: the first 20 from the cache, the rest from the database
        longer = await store.read_all(40, 50)
        assert [e.position for e in longer] == list(range(41, 91))
        assert longer[0] is first[40]
        # 150 more events read: the oldest ones leave, and are read (and decoded) anew
        await store.read_all(90, 150)
        evicted = await store.read_all(0, 10)
        assert [e.position for e in evicted] == list(range(1, 11))
        assert evicted[0] is not first[0]
        assert evicted == first[:10]
    finally:
        await store.close()
