"""Provenance benchmark: lineage walks and Merkle sealing.

    .venv/bin/python bench/provenance.py [--runs 3] [--quick] [--only lineage|sealing]

Starts an embedded PostgreSQL (pgserver) in a temporary folder unless DATABASE_URL is
set. Every count is fixed; nothing loops on time.

* lineage: a project of ``--chain`` (default 1,200) versions, where each version
  derives from the one before, and a graph of ``--graph`` (default 10,000) provenance
  records each derived from 1-3 earlier ones, are appended and folded by the
  ``lineage`` projection. Then ``--samples`` walks are timed with ``walk`` (the code
  behind ``GET /api/daids/{daid}/lineage``, without HTTP): ancestors of the chain's tip
  at depth 1,000 (1,001 nodes back), and ancestors (depth 50) and descendants (depth 3)
  of random graph nodes. Baseline in the same session: a ``select 1`` round trip.
  Then ``collab serve`` is started on the same database and the chain walk is timed
  again as ``GET /api/daids/{tip}/lineage`` from an httpx client (baseline: ``GET
  /health``).
  After the setup the process calls ``gc.freeze()``, as the server does once started
  (``--no-freeze`` measures without it).
* sealing: ``--events`` (default 200,000) small events are appended, then the
  ``audit_log`` projection folds them from position 0 (leaf hashes, every complete
  subtree written, a signed checkpoint every 1,000 events). Reported: the fold alone
  on pre-read batches (what sealing costs), the whole catch-up through the runner
  (reading the log included), and, as the baseline, the same tree built in memory
  without the database.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import (
    collab_server,
    fold_to_head,
    fresh_database,
    machine_line,
    percentile,
    postgres_server,
)
from collab.runtime import logging as collab_logging
from events import EventMetadata, NewEvent, merkle
from events.checkpoints import Signer
from events.models import DocUpdated, EntityRef, ProjectCreated, ProvenanceRecorded, ToolInfo
from events.postgres import PostgresEventStore
from events.records import StoredEvent
from events.store import AppendRequest
from projections.audit_log import AuditLogProjection
from projections.fold import apply_batch, reset
from projections.lineage import LineageProjection
from projections.lineage_reads import walk
from projections.runner import rebuild

META = EventMetadata(actor="bench", agent_id="bench")
EVERYTHING = 2**62


def _ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


async def _lineage_part(url: str, args: argparse.Namespace) -> None:
    store = await PostgresEventStore.connect(url, min_size=1, max_size=4)
    try:
        rng = random.Random(5)
        stream = "project-00000000-0000-4000-8000-000000000001"
        await store.append(stream, [NewEvent(ProjectCreated(name="Chain", owner="b"), META)])
        for start in range(0, args.chain - 1, 500):
            count = min(500, args.chain - 1 - start)
            updates = [bytes([1, (start + i) % 250 + 1]) for i in range(count)]
            await store.append(stream, [NewEvent(DocUpdated(update=u), META) for u in updates])
        tip = (await store.read_stream(stream, backward=True, limit=1))[0].daid
        known: list[str] = []
        size = 200
        for batch in range(args.graph // size):
            events = []
            for i in range(size):
                parents = tuple(sorted(set(rng.sample(known, min(len(known), rng.randint(1, 3))))))
                record = ProvenanceRecorded(
                    entity=EntityRef(type="stem", id=f"s{batch}-{i}", content_hash="ab" * 32),
                    activity="generate",
                    tool=ToolInfo(agent_id="generator"),
                    derived_from=parents,
                )
                events.append(NewEvent(record, META, parents=parents))
            known.extend((await store.append("provenance", events)).daids)
        await rebuild(store, LineageProjection(), 5000)
        sql = store.queries
        if not args.no_freeze:
            gc.freeze()  # as the server does once started (collab/app.py)
        for run in range(args.runs):
            baseline: list[float] = []
            chain: list[float] = []
            graph_up: list[float] = []
            graph_down: list[float] = []
            chain_nodes = up_nodes = down_nodes = 0
            for _ in range(args.samples):
                started = time.perf_counter()
                await sql.fetchval("select 1")
                baseline.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = await walk(
                    sql, tip, direction="ancestors", depth=1000, max_nodes=10_000, as_of=EVERYTHING
                )
                chain.append(time.perf_counter() - started)
                chain_nodes = len(result.nodes)
                started = time.perf_counter()
                result = await walk(
                    sql,
                    rng.choice(known),
                    direction="ancestors",
                    depth=50,
                    max_nodes=1000,
                    as_of=EVERYTHING,
                )
                graph_up.append(time.perf_counter() - started)
                up_nodes += len(result.nodes)
                started = time.perf_counter()
                result = await walk(
                    sql,
                    rng.choice(known[:1000]),
                    direction="descendants",
                    depth=3,
                    max_nodes=1000,
                    as_of=EVERYTHING,
                )
                graph_down.append(time.perf_counter() - started)
                down_nodes += len(result.nodes)
            base = percentile(baseline, 0.5)
            print(
                f"run {run + 1}: baseline select 1 {_ms(baseline)}\n"
                f"  chain ancestors depth 1000 ({chain_nodes} nodes): {_ms(chain)}"
                f" (p50 {percentile(chain, 0.5) / base:.0f}x baseline)\n"
                f"  graph of {len(known)}: ancestors depth 50"
                f" (mean {up_nodes / args.samples:.0f} nodes): {_ms(graph_up)};"
                f" descendants depth 3 (mean {down_nodes / args.samples:.0f} nodes):"
                f" {_ms(graph_down)}"
            )
        head = await store.head_position()
    finally:
        await store.close()
    await _lineage_over_http(url, tip, head, args)


async def _lineage_over_http(url: str, tip: str, head: int, args: argparse.Namespace) -> None:
    """The same chain walk as ``GET /api/daids/{tip}/lineage`` from a running server."""
    async with (
        collab_server(url) as (base, _process),
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        path = f"/api/daids/{tip}/lineage"
        asked = {"direction": "ancestors", "depth": 1000, "max_nodes": 10_000}
        # The server folds the lineage projection from the log when it starts; each
        # read with min_position waits for it (bounded, then 503).
        for _attempt in range(60):
            ready = await http.get(path, params={**asked, "min_position": head})
            if ready.status_code == 200:
                break
        else:
            raise RuntimeError("the server's lineage projection did not catch up")
        for run in range(args.runs):
            baseline: list[float] = []
            chain: list[float] = []
            size = 0
            for _ in range(args.samples):
                started = time.perf_counter()
                await http.get("/health")
                baseline.append(time.perf_counter() - started)
                started = time.perf_counter()
                response = await http.get(path, params=asked)
                chain.append(time.perf_counter() - started)
                size = len(response.content)
                if response.status_code != 200:
                    raise RuntimeError(f"lineage answered {response.status_code}")
            print(
                f"run {run + 1} over HTTP: baseline GET /health {_ms(baseline)}\n"
                f"  GET .../lineage?depth=1000 ({size:,} bytes, body not decoded): {_ms(chain)}"
            )


async def _sealing_part(url: str, args: argparse.Namespace) -> None:
    store = await PostgresEventStore.connect(url, min_size=1, max_size=4)
    try:
        for start in range(0, args.events, 1000):
            await store.append_batch(
                [
                    AppendRequest(
                        f"s-{i % 100}", [NewEvent(DocUpdated(update=bytes([1, i % 250 + 1])), META)]
                    )
                    for i in range(start, min(args.events, start + 1000))
                ]
            )
        head = await store.head_position()
        batches: list[list[StoredEvent]] = []
        position = 0
        while events := await store.read_all(position, 5000):
            batches.append(events)
            position = events[-1].position
        signer = Signer(Ed25519PrivateKey.generate())
        memory: list[float] = []
        fold: list[float] = []
        catch_up: list[float] = []
        for run in range(args.runs):
            started = time.perf_counter()
            builder = merkle.Builder()
            for events in batches:
                for event in events:
                    builder.append(merkle.leaf_hash(event.hash))
            builder.root()
            memory.append(head / (time.perf_counter() - started))

            projection = AuditLogProjection(signer, checkpoint_every=1000, checkpoint_seconds=3600)
            await reset(store, projection)
            started = time.perf_counter()
            start = 0
            for events in batches:
                await apply_batch(store, projection, events, start)
                start = events[-1].position
            fold.append(head / (time.perf_counter() - started))

            projection = AuditLogProjection(signer, checkpoint_every=1000, checkpoint_seconds=3600)
            await reset(store, projection)
            catch_up.append(head / await fold_to_head(store, [projection], 5000))
            print(
                f"run {run + 1}: {head} events; in memory {memory[-1]:,.0f}/s;"
                f" sealing fold {fold[-1]:,.0f}/s; catch-up with reads {catch_up[-1]:,.0f}/s"
            )
        print(
            f"median of {args.runs}: in memory {statistics.median(memory):,.0f} events/s;"
            f" sealing fold {statistics.median(fold):,.0f} events/s"
            f" ({statistics.median(fold) / statistics.median(memory):.2f}x in memory);"
            f" catch-up {statistics.median(catch_up):,.0f} events/s"
        )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chain", type=int, default=1200)
    parser.add_argument("--graph", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument(
        "--no-freeze", action="store_true", help="walks without gc.freeze() after the setup"
    )
    parser.add_argument("--only", choices=["lineage", "sealing"], help="one part only")
    args = parser.parse_args()
    if args.quick:
        args.graph //= 5
        args.samples //= 4
        args.events //= 10
    collab_logging.configure("warning")
    print(machine_line())
    with postgres_server() as server_url:
        if args.only != "sealing":
            async with fresh_database(server_url, migrated=True) as url:
                await _lineage_part(url, args)
        if args.only != "lineage":
            async with fresh_database(server_url, migrated=True) as url:
                await _sealing_part(url, args)


if __name__ == "__main__":
    asyncio.run(main())
