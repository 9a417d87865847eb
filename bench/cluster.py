"""Scale-out benchmark: two ``collab serve`` nodes on one PostgreSQL and one Redis.

    .venv/bin/python bench/cluster.py [--runs 3] [--quick] [--only latency,writer,down,throughput]

The load is bench/live.py's DAW scenario (its load generator and ``_rooms_scenario``:
R rooms x 4 clients, each client 10 small map updates/s; latency from a send to each
other client's receipt), against nodes that share one fresh database per run and a
redis-server this script starts on a free port (no persistence) and stops at the end.

Scenarios (each run ``--runs`` times, the layouts alternating within a round so that
the machine's drift hits all of them):
  latency     same-node (two nodes, rooms alternate nodes, a room's 4 clients on one
              node) against cross-node (each room's clients split 2/2 over the nodes):
              the cross-node overhead, against the issue's target (< 5 ms at p50,
              < 20 ms at p99)
  writer      the same two layouts with one writer per room (client 0) and three
              readers, the readers on the other node in the cross-node layout: no two
              nodes append to one project's stream, so the overhead is the fan-out's
  down        cross-node with the redis-server stopped once the nodes have started:
              updates cross through the log (the follower every COLLAB_FOLLOW_SECONDS,
              and the gap a room's own next commit reveals), at the default follow
              interval and at ``--short-follow``
  throughput  the same DAW load against one node and against two (same-node layout):
              durable updates/s and CPU per update of each node, its projection worker
              and PostgreSQL

Every node gets REDIS_URL (one node too: a cluster of one, so that the node count is
the only difference), COLLAB_AUTH=off and COLLAB_RATE_LIMITS=off (the generator has no
tokens). Server output (warnings and up) goes to bench/.work/cluster-logs/; a run line
counts the "update not stored" warnings there (an update the node gave up appending,
whose sender it closed with 1013).

Over 400 lines because it stays one file beside bench/live.py, whose generator it
reuses: the nodes, Redis, the layouts and the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import fresh_database, machine_line, postgres_server  # noqa: E402
from bench.live import (  # noqa: E402
    WORK,
    Placement,
    Result,
    Target,
    _cpu_seconds,
    _rooms_scenario,
    ours,
)
from tests.redis_server import RedisServer  # noqa: E402
from tests.support import timeout  # noqa: E402

LOGS = WORK / "cluster-logs"
CLIENTS = 4
RATE = 10.0


def cross_node(room: int, client: int) -> int:
    # Clients 0-1 on one node, 2-3 on the other; which node comes first alternates by
    # room so that each node creates (and first loads) half of the rooms.
    return (room + client * 2 // CLIENTS) % 2


def writer_apart(room: int, client: int) -> int:
    """The room's writer (client 0) on one node, its readers on the other."""
    return (room + (client > 0)) % 2


def _redis_cpu_seconds(redis: RedisServer) -> float:
    pid = redis.pid
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError):
        return _cpu_seconds(pid)
    return 0.0


async def _metrics(target: Target) -> dict[str, float]:
    """The node's counters and gauges, by name with labels (``/metrics``)."""
    assert target.metrics_url is not None
    async with httpx.AsyncClient() as http:
        text = (await http.get(target.metrics_url)).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


@dataclass
class Run:
    result: Result
    #: per node: gap reads, updates received from other nodes, fan-out messages dropped
    gap_reads: list[float] = field(default_factory=list)
    fanout_in: list[float] = field(default_factory=list)
    dropped: list[float] = field(default_factory=list)
    #: per node, the mean time of one append transaction (two nodes' transactions wait
    #: for each other on the log head)
    commit_ms: list[float] = field(default_factory=list)
    redis_cpu_s: float = 0.0
    #: per node, updates forwarded to their project's home node, and those appended
    #: by the node itself after all
    forwarded: list[float] = field(default_factory=list)
    fallbacks: list[float] = field(default_factory=list)
    #: this process (the load generator) over the load, in cores: with the nodes,
    #: PostgreSQL and Redis it says how close the 2 cores were to saturation
    generator_cpu: float = 0.0
    #: per node, updates it could not store ("update not stored" in its log)
    not_stored: list[int] = field(default_factory=list)

    def line(self) -> str:
        r = self.result
        nodes = ", ".join(
            f"node {i + 1} cpu {cpu:.0%}" + (f" + worker {w:.0%}" if w is not None else "")
            for i, (cpu, w) in enumerate(zip(r.node_cpu, r.node_worker_cpu, strict=True))
        )
        per_update = ""
        if r.durable_per_s:
            nodes_us = 1e6 * (r.server_cpu + (r.worker_cpu or 0.0)) / r.durable_per_s
            db_us = 1e6 * (r.db_cpu or 0.0) / r.durable_per_s
            per_update = f", cpu/update: nodes+workers {nodes_us:.0f} us, postgres {db_us:.0f} us"
        fanout = (
            f"; commit {'/'.join(f'{ms:.1f}' for ms in self.commit_ms)} ms,"
            f" gap reads {_ints(self.gap_reads)}, fan-out in {_ints(self.fanout_in)},"
            f" dropped {_ints(self.dropped)}, forwarded {_ints(self.forwarded)}"
            f" (fell back {_ints(self.fallbacks)}), redis cpu {self.redis_cpu_s:.1f} s,"
            f" generator cpu {self.generator_cpu:.0%}"
        )
        if any(self.not_stored):
            fanout += f", updates not stored {'/'.join(map(str, self.not_stored))}"
        return (
            f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, delivered {r.delivered:.1%},"
            f" sent {r.sent_per_s:,.0f}/s, durable {r.durable_per_s or 0:,.0f}/s, {nodes},"
            f" db cpu {r.db_cpu or 0:.0%}{per_update}{fanout}"
            + (f"; {r.closed} sending clients closed by the server" if r.closed else "")
        )


def _ints(values: list[float]) -> str:
    return "/".join(f"{v:,.0f}" for v in values)


async def _postmaster(server_url: str) -> int:
    connection = await asyncpg.connect(server_url)
    try:
        # Read while the backend lives: it exits with the connection.
        return _parent(int(await connection.fetchval("select pg_backend_pid()")))
    finally:
        await connection.close()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@contextlib.asynccontextmanager
async def cluster(
    database_url: str, nodes: int, redis: RedisServer, label: str, postmaster: int, **settings: str
) -> AsyncIterator[list[Target]]:
    """``nodes`` servers on one database, each with REDIS_URL (and ``settings``)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        targets = [
            await stack.enter_async_context(
                ours(
                    database_url,
                    log=LOGS / f"{label}-node{i + 1}.log",
                    REDIS_URL=redis.url,
                    COLLAB_RATE_LIMITS="off",
                    **settings,
                )
            )
            for i in range(nodes)
        ]
        # Only our PostgreSQL: bench/live.py counts every process named postgres, and
        # other people's tests on this machine start and stop theirs during a run.
        targets[0].db_pids = lambda: [postmaster, *_children(postmaster)]
        yield targets


async def _wait_disconnected(targets: list[Target]) -> None:
    """Until every node says its fan-out is down (it notices a closed connection at
    once, a silent one within 5 s)."""
    deadline = time.monotonic() + timeout(15)
    while time.monotonic() < deadline:
        states = [(await _metrics(t)).get("collab_fanout_connected", 1.0) for t in targets]
        if not any(states):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the nodes never noticed that Redis stopped")


@dataclass
class Layout:
    name: str
    nodes: int
    #: None: a room's clients all on node ``room % nodes`` (bench/live.py's default)
    place: Placement | None = None
    redis_down: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    #: clients of a room that write (the first ones); the others only read
    writers: int = CLIENTS


def _median_line(name: str, runs: list[Run]) -> str:
    def spread(get: Callable[[Result], float], fmt: str) -> str:
        values = [get(run.result) for run in runs]
        each = " / ".join(format(v, fmt) for v in values)
        return f"{format(statistics.median(values), fmt)} (runs {each})"

    rs = [run.result for run in runs]
    node_count = len(rs[0].node_cpu)
    node_cpu = [statistics.median(r.node_cpu[i] for r in rs) for i in range(node_count)]
    workers = [
        statistics.median(r.node_worker_cpu[i] or 0.0 for r in rs) for i in range(node_count)
    ]
    nodes = ", ".join(
        f"node {i + 1} {cpu:.0%} + worker {w:.0%}"
        for i, (cpu, w) in enumerate(zip(node_cpu, workers, strict=True))
    )
    per_update = statistics.median(
        1e6 * (r.server_cpu + (r.worker_cpu or 0.0)) / r.durable_per_s
        for r in rs
        if r.durable_per_s
    )
    db_per_update = statistics.median(
        1e6 * (r.db_cpu or 0.0) / r.durable_per_s for r in rs if r.durable_per_s
    )
    return (
        f"{name}: median of {len(runs)}: p50 {spread(lambda r: r.p50_ms, '.1f')} ms,"
        f" p99 {spread(lambda r: r.p99_ms, '.1f')} ms,"
        f" delivered {statistics.median(r.delivered for r in rs):.1%},"
        f" durable {spread(lambda r: r.durable_per_s or 0.0, ',.0f')}/s, cpu {nodes},"
        f" db {statistics.median(r.db_cpu or 0.0 for r in rs):.0%};"
        f" cpu/update nodes+workers {per_update:.0f} us, postgres {db_per_update:.0f} us"
    )


async def main(commit: str) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5 rooms, 3 s, 1 run (smoke)")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run")
    parser.add_argument("--only", default="latency,down,throughput,writer")
    parser.add_argument(
        "--throughput-rooms",
        default="50,100",
        help="room counts of the one-node / two-node comparison (comma-separated)",
    )
    parser.add_argument(
        "--short-follow",
        default="0.1",
        help="COLLAB_FOLLOW_SECONDS of the second Redis-down layout (empty: skip it)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rooms, args.duration, args.runs, args.throughput_rooms = 5, 3.0, 1, "5"
    only = set(args.only.split(","))
    print(
        machine_line(
            f", commit {commit}, {args.rooms} rooms x {CLIENTS} clients x {RATE:.0f} updates/s,"
            f" {args.duration:.0f} s per run, {args.runs} runs"
        ),
        flush=True,
    )
    print(
        f"# {os.cpu_count()} cores shared by the nodes (each with its projection worker),"
        " PostgreSQL, Redis and this load generator: two nodes compete for them",
        flush=True,
    )

    groups: list[tuple[str, int, list[Layout]]] = []
    if "latency" in only:
        groups.append(
            (
                "latency",
                args.rooms,
                [Layout("same-node", 2), Layout("cross-node", 2, cross_node)],
            )
        )
    if "writer" in only:
        # One writer per room: a node's commits never meet the other's on a stream, so
        # what is left of the overhead is the trip through Redis.
        groups.append(
            (
                "one writer per room",
                args.rooms,
                [
                    Layout("same-node, 1 writer", 2, writers=1),
                    Layout("cross-node, 1 writer", 2, writer_apart, writers=1),
                ],
            )
        )
    if "down" in only:
        default = "cross-node, Redis down, follow 1 s (default)"
        down = [Layout(default, 2, cross_node, redis_down=True)]
        if args.short_follow:
            down.append(
                Layout(
                    f"cross-node, Redis down, follow {args.short_follow} s",
                    2,
                    cross_node,
                    redis_down=True,
                    settings={"COLLAB_FOLLOW_SECONDS": args.short_follow},
                )
            )
        groups.append(("down", args.rooms, down))
    if "throughput" in only:
        groups.extend(
            (
                f"throughput, {rooms} rooms",
                rooms,
                [Layout("one node", 1), Layout("two nodes (same-node)", 2)],
            )
            for rooms in (int(r) for r in args.throughput_rooms.split(","))
        )

    # The logs of this invocation only, so that what they say belongs to these figures.
    shutil.rmtree(LOGS, ignore_errors=True)
    embedded = contextlib.ExitStack()
    server_url = embedded.enter_context(postgres_server(from_environment=False))
    postmaster = await _postmaster(server_url)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    redis.start()
    try:
        for group, rooms, layouts in groups:
            print(f"## {group} ({rooms} rooms x {CLIENTS} clients)", flush=True)
            runs: dict[str, list[Run]] = {layout.name: [] for layout in layouts}
            for index in range(args.runs):
                for layout in layouts:
                    label = f"{group.split(',')[0]}-{rooms}-{index + 1}"
                    run = await _run(server_url, postmaster, redis, layout, rooms, args, label)
                    runs[layout.name].append(run)
                    print(f"  {layout.name}, run {index + 1}: {run.line()}", flush=True)
            for layout in layouts:
                print(_median_line(layout.name, runs[layout.name]), flush=True)
            if group in ("latency", "one writer per room"):
                same, cross = (runs[layout.name] for layout in layouts)
                _overhead(same, cross)
            if group.startswith("throughput"):
                one, two = (runs[layout.name] for layout in layouts)
                ratio = statistics.median(
                    r.result.durable_per_s or 0.0 for r in two
                ) / statistics.median(r.result.durable_per_s or 0.0 for r in one)
                print(
                    f"two nodes / one node, durable updates/s: {ratio:.2f} (the load offered"
                    f" is {rooms * CLIENTS * RATE:,.0f}/s in both: a ratio of 1 means"
                    " both kept up; compare the CPU per update)",
                    flush=True,
                )
    finally:
        redis.stop()
        embedded.close()


async def _run(
    server_url: str,
    postmaster: int,
    redis: RedisServer,
    layout: Layout,
    rooms: int,
    args: argparse.Namespace,
    label: str,
) -> Run:
    if redis.pid is None:
        redis.start()
    tag = label + "-" + re.sub(r"[^a-z0-9.]+", "-", layout.name.lower()).strip("-")
    async with (
        fresh_database(server_url, migrated=True) as url,
        cluster(url, layout.nodes, redis, tag, postmaster, **layout.settings) as targets,
    ):
        if layout.redis_down:
            redis.stop()
            await _wait_disconnected(targets)
        before = [await _metrics(t) for t in targets]
        redis_before = _redis_cpu_seconds(redis)
        generator_before, wall_before = time.process_time(), time.perf_counter()
        result = await _rooms_scenario(
            targets, rooms, CLIENTS, layout.writers, RATE, args.duration, layout.place
        )
        generator_cpu = (time.process_time() - generator_before) / (
            time.perf_counter() - wall_before
        )
        redis_cpu = _redis_cpu_seconds(redis) - redis_before
        after = [await _metrics(t) for t in targets]

    def delta(name: str) -> list[float]:
        return [a.get(name, 0.0) - b.get(name, 0.0) for b, a in zip(before, after, strict=True)]

    commits = delta("collab_commit_seconds_count")
    commit_ms = [
        1000 * total / count if count else 0.0
        for total, count in zip(delta("collab_commit_seconds_sum"), commits, strict=True)
    ]
    not_stored = [
        _count(LOGS / f"{tag}-node{i + 1}.log", '"update not stored"') for i in range(layout.nodes)
    ]
    return Run(
        result,
        not_stored=not_stored,
        commit_ms=commit_ms,
        gap_reads=delta("collab_room_gap_reads_total"),
        fanout_in=delta('collab_fanout_messages_total{direction="in"}'),
        dropped=delta("collab_fanout_dropped_total"),
        forwarded=delta('collab_forwarded_updates_total{direction="out"}'),
        fallbacks=delta("collab_forward_fallbacks_total"),
        redis_cpu_s=redis_cpu,
        generator_cpu=generator_cpu,
    )


def _count(log: Path, text: str) -> int:
    with contextlib.suppress(OSError), log.open() as lines:
        return sum(text in line for line in lines)
    return 0


def _overhead(same: list[Run], cross: list[Run]) -> None:
    p50 = statistics.median(r.result.p50_ms for r in cross) - statistics.median(
        r.result.p50_ms for r in same
    )
    p99 = statistics.median(r.result.p99_ms for r in cross) - statistics.median(
        r.result.p99_ms for r in same
    )
    paired = " / ".join(
        f"{c.result.p50_ms - s.result.p50_ms:+.1f}, {c.result.p99_ms - s.result.p99_ms:+.1f}"
        for s, c in zip(same, cross, strict=True)
    )
    met = "met" if p50 < 5 and p99 < 20 else "NOT met"
    print(
        f"cross-node overhead (medians): p50 {p50:+.1f} ms, p99 {p99:+.1f} ms"
        f" (per round p50, p99: {paired}); target < 5 ms at p50 and < 20 ms at p99: {met}",
        flush=True,
    )


if __name__ == "__main__":
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    asyncio.run(main(head))
