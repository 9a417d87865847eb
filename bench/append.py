"""Event store benchmark: appends and subscription catch-up.

    .venv/bin/python bench/append.py [--runs 3] [--quick]

Starts an embedded PostgreSQL (pgserver) in a temporary folder unless DATABASE_URL is
set, and a fresh database per scenario run. Every scenario is bounded by a count of
operations. Prints one line per run and a median per scenario, plus a *baseline*
measured in the same session: plain INSERTs (one row, or ten in one statement) into a
bigserial table with no ordering guarantee, no idempotency and no hashing (the unsafe
design the event store replaces), so the ratio says what the guarantees cost on this
machine today.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import fresh_database, machine_line, postgres_server
from collab.runtime import logging as collab_logging
from events import EventMetadata, NewEvent
from events.models import DocUpdated, project_stream
from events.postgres import PostgresEventStore

META = EventMetadata(actor="bench", agent_id="bench", client_id=7)
UPDATE = bytes(range(24))  # a small Yjs-sized update (a fader move is ~20-30 bytes)


def event() -> NewEvent:
    return NewEvent(DocUpdated(update=UPDATE, client_id=7), META)


async def _appends(
    url: str, writers: int, appends_per_writer: int, batch: int, *, separate: bool = False
) -> float:
    """``writers`` tasks appending; on one store (its appends coalesce into shared
    transactions, as in one server process) or on one store each (``separate``: the
    transactions race in PostgreSQL, as with several processes)."""
    count = writers if separate else 1
    stores = [await PostgresEventStore.connect(url, max_size=writers) for _ in range(count)]
    await stores[0].migrate()

    async def writer(index: int) -> None:
        stream = project_stream(str(index))
        store = stores[index % count]
        for _ in range(appends_per_writer):
            await store.append(stream, [event() for _ in range(batch)])

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    total = writers * appends_per_writer * batch
    if await stores[0].head_position() != total:
        raise RuntimeError("the log does not hold every appended event")
    for store in stores:
        await store.close()
    return total / elapsed


async def _baseline(url: str, writers: int, inserts_per_writer: int, batch: int = 1) -> float:
    """Plain INSERTs of ``batch`` rows per transaction (one statement, autocommit)."""
    pool = await asyncpg.create_pool(url, min_size=writers, max_size=writers)
    await pool.execute(
        "create table plain_events (position bigserial primary key, stream_id text,"
        " event_id uuid, data jsonb, payload bytea)"
    )

    async def writer(index: int) -> None:
        stream = project_stream(str(index))
        for _ in range(inserts_per_writer):
            await pool.execute(
                "insert into plain_events (stream_id, event_id, data, payload)"
                " select $1, unnest($2::uuid[]), $3, $4",
                stream,
                [uuid.uuid4() for _ in range(batch)],
                '{"client_id":7}',
                UPDATE,
            )

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return writers * inserts_per_writer * batch / elapsed


async def _catch_up(url: str, total: int) -> float:
    store = await PostgresEventStore.connect(url)
    await store.migrate()
    for offset in range(0, total, 1000):
        await store.append(project_stream(str(offset % 50)), [event() for _ in range(1000)])
    started = time.perf_counter()
    seen = 0
    async for stored in store.subscribe(0, batch_size=5000):
        seen += 1
        if stored.position == total:
            break
    elapsed = time.perf_counter() - started
    if seen != total:
        raise RuntimeError(f"caught up {seen} of {total} events")
    await store.close()
    return total / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    collab_logging.configure("warning")

    def n(count: int) -> int:
        return max(1, int(count * scale))

    scenarios: list[tuple[str, str, Callable[[str], Awaitable[float]]]] = [
        ("baseline: plain INSERT, 1 writer", "rows/s", lambda u: _baseline(u, 1, n(3000))),
        ("baseline: plain INSERT, 8 writers", "rows/s", lambda u: _baseline(u, 8, n(500))),
        (
            "baseline: plain INSERT of 10 rows, 1 writer",
            "rows/s",
            lambda u: _baseline(u, 1, n(1500), 10),
        ),
        ("append 1 event, 1 writer", "appends/s", lambda u: _appends(u, 1, n(3000), 1)),
        ("append 1 event, 8 writers", "appends/s", lambda u: _appends(u, 8, n(500), 1)),
        (
            "append 1 event, 8 writers on 8 stores",
            "appends/s",
            lambda u: _appends(u, 8, n(500), 1, separate=True),
        ),
        ("append batches of 10, 1 writer", "events/s", lambda u: _appends(u, 1, n(1500), 10)),
        ("append batches of 10, 8 writers", "events/s", lambda u: _appends(u, 8, n(300), 10)),
        (
            "append batches of 10, 8 writers on 8 stores",
            "events/s",
            lambda u: _appends(u, 8, n(300), 10, separate=True),
        ),
        ("append batches of 100, 1 writer", "events/s", lambda u: _appends(u, 1, n(300), 100)),
        ("append batches of 100, 8 writers", "events/s", lambda u: _appends(u, 8, n(50), 100)),
        ("subscribe catch-up, 200k events", "events/s", lambda u: _catch_up(u, n(200_000))),
    ]
    print(machine_line())
    medians: dict[str, float] = {}
    with postgres_server() as server_url:
        for name, unit, run in scenarios:
            figures = []
            for index in range(args.runs):
                async with fresh_database(server_url) as url:
                    figures.append(await run(url))
                print(f"  {name} run {index + 1}: {figures[-1]:,.0f} {unit}", flush=True)
            medians[name] = statistics.median(figures)
            print(f"{name}: median {medians[name]:,.0f} {unit}", flush=True)
    one = medians["append 1 event, 1 writer"] / medians["baseline: plain INSERT, 1 writer"]
    eight = medians["append 1 event, 8 writers"] / medians["baseline: plain INSERT, 8 writers"]
    ten = (
        medians["append batches of 10, 1 writer"]
        / medians["baseline: plain INSERT of 10 rows, 1 writer"]
    )
    print(
        f"ratio appends / plain INSERT: single, 1 writer {one:.2f}; single, 8 writers"
        f" {eight:.2f}; batches of 10, 1 writer {ten:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
