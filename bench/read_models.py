"""Projection benchmark: catch-up, time travel and rebuild of the ``projects`` read model.

    .venv/bin/python bench/read_models.py [--runs 3] [--quick] [--jobs 2]

Starts an embedded PostgreSQL (pgserver) in a temporary folder unless DATABASE_URL is
set. Every count is fixed; nothing loops on time.

* catch-up: ``--events`` (default 200,000) ``doc.updated`` events of realistic small
  edits (fader and pan moves, notes, clips, tempo, tracks, effect parameters) spread
  over 100 projects are appended first; then a fresh projection runner folds the log
  from position 0 to its head: read, fold (Yjs apply, change records, summaries),
  write (project rows, parts, history, stored states) and commit; again as the worker
  does with ``COLLAB_PROJECTION_JOBS=--jobs``: by that many processes, from the
  checkpoint to the head (whatever the lag), then following. Baseline in the same
  session: the store's subscription reading the same log without folding it.
  Then all three projections (``projects``, ``lineage``, ``audit_log``) from position
  0 as the worker process folds them: one store whose decoded batches they share.
  And the floor of the fold on one core: the same kind of edits applied in memory,
  with and without the change tracking the history needs.
* time travel: one project of ``--travel-events`` (default 100,000) events is folded,
  then ``--samples`` random versions are read with ``view_at`` (the code behind
  ``GET /api/projects/{id}/versions/{v}``, without the HTTP layer): p50 and p99 in ms.
* rebuild: ``collab projections rebuild`` run as a process on the catch-up log; then
  ``rebuild projects`` alone, by one process and by ``--jobs`` (default 2) processes
  (events/s from the command's start to its exit).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pycrdt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import fold_to_head, fresh_database, machine_line, percentile, postgres_server
from collab import worker
from collab.runtime import logging as collab_logging
from collab.runtime.config import ReadSettings
from events import EventMetadata, NewEvent
from events.models import DocUpdated, ProjectCreated, project_stream
from events.postgres import PostgresEventStore
from events.store import AppendRequest
from music import document
from music.changes import DocumentTracker
from music.summaries import summarize
from projections import project_reads, registry
from projections.fold import reset
from projections.projects import ProjectsProjection
from projections.registry import Needs
from projections.runner import ParallelFold
from projections.sharded import fold_in_parallel
from tests.support import clean_env

META = EventMetadata(actor="bench", agent_id="bench")


class Editor:
    """One project's document and a seeded stream of plausible small edits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.doc = document.new_document()
        self.tracks = self.doc.get(document.TRACKS, type=pycrdt.Map)
        self.order = self.doc.get(document.TRACK_ORDER, type=pycrdt.Array)
        self.meta = self.doc.get(document.META, type=pycrdt.Map)
        self.clips: list[pycrdt.Map[Any]] = []

    def update(self) -> bytes:
        # What an editor sends: the transaction's own update (as y-websocket does).
        return document.transact(self.doc, self._edit)

    def _edit(self) -> None:
        rng = self.rng
        roll = rng.random()
        if len(self.tracks) < 4 or roll < 0.01:
            track_id = f"t{len(self.tracks)}"
            self.tracks[track_id] = pycrdt.Map(
                {
                    "name": f"Track {len(self.tracks)}",
                    "kind": "midi",
                    "volume_db": 0.0,
                    "pan": 0.0,
                    "clips": pycrdt.Map(),
                    "effects": pycrdt.Array(
                        [
                            pycrdt.Map(
                                {"id": "eq", "type": "eq", "params": pycrdt.Map({"gain": 0.0})}
                            )
                        ]
                    ),
                }
            )
            self.order.append(track_id)
            return
        track = self.tracks[f"t{rng.randrange(len(self.tracks))}"]
        if roll < 0.55:
            track["volume_db"] = round(rng.uniform(-30, 6), 1)
        elif roll < 0.70:
            track["pan"] = round(rng.uniform(-1, 1), 2)
        elif roll < 0.75 or not self.clips:
            clip_id = f"c{len(self.clips)}"
            clip = pycrdt.Map(
                {
                    "name": f"Clip {len(self.clips)}",
                    "start_beats": 0.0,
                    "length_beats": 16.0,
                    "notes": pycrdt.Array(),
                }
            )
            track["clips"][clip_id] = clip
            self.clips.append(clip)
        elif roll < 0.90:
            notes = self.clips[rng.randrange(len(self.clips))]["notes"]
            notes.append(
                pycrdt.Map(
                    {
                        "pitch": float(rng.randrange(36, 96)),
                        "start": float(rng.randrange(64)),
                        "duration": 1.0,
                        "velocity": 100.0,
                    }
                )
            )
        elif roll < 0.95:
            self.meta["tempo"] = float(rng.randrange(80, 160))
        else:
            track["effects"][0]["params"]["gain"] = round(rng.uniform(-12, 12), 1)


async def _fill(store: PostgresEventStore, projects: int, events: int, seed: int) -> list[str]:
    """Append ``events`` doc.updated events over ``projects`` projects; return their ids."""
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(projects)]
    editors = [Editor(random.Random(seed * 1000 + i)) for i in range(projects)]
    await store.append_batch(
        [
            AppendRequest(
                project_stream(pid),
                [NewEvent(ProjectCreated(name=f"Song {i}", owner="bench"), META)],
            )
            for i, pid in enumerate(ids)
        ]
    )
    chunk: list[AppendRequest] = []
    for index in range(events):
        which = rng.randrange(projects)
        update = editors[which].update()
        chunk.append(
            AppendRequest(project_stream(ids[which]), [NewEvent(DocUpdated(update=update), META)])
        )
        if len(chunk) == 2000 or index == events - 1:
            await store.append_batch(chunk)
            chunk = []
    return ids


async def _fold_all(store: PostgresEventStore, batch: int, url: str = "", jobs: int = 1) -> float:
    """A fresh runner folds the whole log; events/s from start to caught up. With
    ``jobs`` > 1, as the worker does with COLLAB_PROJECTION_JOBS: by that many processes
    (the log is longer than ``PARALLEL_LAG``), then following."""
    head = await store.head_position()
    projection = ProjectsProjection(store)
    parallel: dict[str, ParallelFold] = {}
    if jobs > 1:
        opener = functools.partial(worker.projects_share, url, ReadSettings(), "warning", "json")
        parallel[projection.name] = functools.partial(
            fold_in_parallel, store, projection, opener, jobs=jobs, batch_size=batch, rebuild=False
        )
    # Any lag counts as far behind: --quick logs are shorter than PARALLEL_LAG.
    return head / await fold_to_head(store, [projection], batch, parallel, parallel_lag=1)


def _tracking_floor(projects: int, events: int, seed: int) -> tuple[float, float]:
    """Microseconds per event of (bare pycrdt apply, the change tracking the history
    needs: apply with deep observers, records, sentences), in memory, on the same
    kind of edits: what one core spends before any reading or writing."""
    rng = random.Random(seed)
    editors = [Editor(random.Random(seed * 1000 + i)) for i in range(projects)]
    updates = []
    for _ in range(events):
        which = rng.randrange(projects)
        updates.append((which, editors[which].update()))
    docs = [document.new_document() for _ in range(projects)]
    started = time.perf_counter()
    for which, update in updates:
        docs[which].apply_update(update)
    bare = time.perf_counter() - started
    trackers = [DocumentTracker() for _ in range(projects)]
    started = time.perf_counter()
    for which, update in updates:
        tracker = trackers[which]
        summarize(tracker.records(tracker.apply(update)))
    tracked = time.perf_counter() - started
    return bare / events * 1e6, tracked / events * 1e6


async def _fold_every(url: str, batch: int) -> float:
    """Every read model from position 0, as the worker folds them (one store,
    decoded batches shared); events/s until every one is at the head."""
    store = await PostgresEventStore.connect(url, max_size=6, read_cache=2 * batch)
    try:
        projections = registry.build(Needs(store))
        for projection in projections:
            await reset(store, projection)
        head = await store.head_position()
        return head / await fold_to_head(store, projections, batch)
    finally:
        await store.close()


async def _read_only(store: PostgresEventStore, batch: int) -> float:
    head = await store.head_position()
    started = time.perf_counter()
    async for events in store.subscribe_batches(0, batch_size=batch):
        if events[-1].position == head:
            break
    return head / (time.perf_counter() - started)


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(
        "truncate projects, project_members, project_tracks, project_clips, project_effects,"
        " project_snapshots, project_analyses, project_history, project_states;"
        " update projection_checkpoints set position = 0"
    )
    await conn.close()


def _rebuild(url: str, *args: str) -> float:
    """Seconds a ``collab projections rebuild [ARGS]`` process takes, start to exit."""
    env = clean_env(DATABASE_URL=url)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "collab.cli", "projections", "rebuild", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=3600,
    )
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--travel-events", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=ReadSettings().projection_batch)
    parser.add_argument("--quick", action="store_true", help="a tenth of the counts")
    parser.add_argument("--only", choices=["catch-up", "travel"], help="one part only")
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes of the parallel catch-up and rebuild"
    )
    args = parser.parse_args()
    if args.quick:
        args.events //= 10
        args.travel_events //= 10
        args.samples //= 4
    collab_logging.configure("warning")
    print(machine_line())
    with postgres_server() as server_url:
        if args.only != "travel":
            async with fresh_database(server_url) as url:
                await _catch_up_part(url, args)
        if args.only != "catch-up":
            async with fresh_database(server_url) as url:
                await _travel_part(url, args)


async def _catch_up_part(url: str, args: argparse.Namespace) -> None:
    store = await PostgresEventStore.connect(url, max_size=4)
    await store.migrate()
    started = time.perf_counter()
    await _fill(store, 100, args.events, seed=1)
    print(
        f"appended {args.events:,} doc.updated events over 100 projects"
        f" in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    reads, folds, everything, rebuilds, floors = [], [], [], [], []
    alone, parallel, catch_ups = [], [], []
    head = args.events + 100
    for run in range(args.runs):
        floors.append(_tracking_floor(100, min(args.events, 20_000), seed=run + 1))
        reads.append(await _read_only(store, args.batch))
        await _reset(url)
        folds.append(await _fold_all(store, args.batch))
        await _reset(url)
        catch_ups.append(await _fold_all(store, args.batch, url, args.jobs))
        everything.append(await _fold_every(url, args.batch))
        rebuilds.append(_rebuild(url))
        alone.append(head / _rebuild(url, "projects"))
        parallel.append(head / _rebuild(url, "projects", "--jobs", str(args.jobs)))
        print(
            f"  run {run + 1}: read {reads[-1]:,.0f} events/s, catch-up"
            f" {folds[-1]:,.0f} events/s, by {args.jobs} jobs {catch_ups[-1]:,.0f} events/s,"
            f" all three {everything[-1]:,.0f} events/s,"
            f" rebuild {rebuilds[-1]:.1f} s; rebuild projects {alone[-1]:,.0f} events/s,"
            f" --jobs {args.jobs} {parallel[-1]:,.0f} events/s; in memory: bare apply"
            f" {floors[-1][0]:.1f} µs, tracked {floors[-1][1]:.1f} µs per event",
            flush=True,
        )
    read, fold = statistics.median(reads), statistics.median(folds)
    print(f"subscription read only (baseline): median {read:,.0f} events/s")
    print(
        f"projection catch-up: median {fold:,.0f} events/s"
        f" ({fold / read:.2f} of the read-only rate)"
    )
    jobs_fold = statistics.median(catch_ups)
    print(
        f"projection catch-up by {args.jobs} processes (COLLAB_PROJECTION_JOBS):"
        f" median {jobs_fold:,.0f} events/s ({jobs_fold / fold:.2f}x)"
    )
    tracked = statistics.median(floor[1] for floor in floors)
    print(
        f"change tracking in memory (no reads, no writes): median {tracked:.1f} µs per"
        f" event, at most {1e6 / tracked:,.0f} events/s on one core"
        f" (bare pycrdt apply {statistics.median(floor[0] for floor in floors):.1f} µs)"
    )
    print(
        f"catch-up of all three projections (projects, lineage, audit_log): median"
        f" {statistics.median(everything):,.0f} events/s"
    )
    print(
        f"collab projections rebuild ({head:,} events): median {statistics.median(rebuilds):.1f} s"
    )
    one, many = statistics.median(alone), statistics.median(parallel)
    print(
        f"collab projections rebuild projects, process start to exit: median {one:,.0f}"
        f" events/s; with --jobs {args.jobs}: median {many:,.0f} events/s ({many / one:.2f}x)"
    )
    await store.close()


async def _travel_part(url: str, args: argparse.Namespace) -> None:
    store = await PostgresEventStore.connect(url, max_size=4)
    await store.migrate()
    (project,) = await _fill(store, 1, args.travel_events, seed=2)
    rate = await _fold_all(store, args.batch)
    versions = args.travel_events + 1
    print(f"one project of {versions:,} versions folded at {rate:,.0f} events/s")
    rng = random.Random(3)
    for run in range(args.runs):
        timings = []
        for _ in range(args.samples):
            version = rng.randrange(1, versions + 1)
            began = time.perf_counter()
            await project_reads.view_at(store.queries, project, version)
            timings.append((time.perf_counter() - began) * 1000)
        print(
            f"  time travel run {run + 1}: p50 {percentile(timings, 0.5):.1f} ms,"
            f" p99 {percentile(timings, 0.99):.1f} ms, max {max(timings):.1f} ms",
            flush=True,
        )
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
