"""Live-path benchmark: DAW sessions, fan-out and a join storm over real WebSockets.

    .venv/bin/python bench/live.py [--runs 3] [--quick] [--peers] [--only daw,fanout,join]
        [--frames valid|invalid]

One load generator in this process speaks the y-websocket protocol for every client:
pre-built update frames (one pycrdt document per client, built before the clock
starts), one monotonic clock, and a unique token inside every update so that its
receipt is recognised even when a server re-encodes it. Latency is from the send of
a frame to its receipt by each other client of the room.

The server under test runs as its own process: ``collab serve`` on an embedded
PostgreSQL (pgserver, a fresh database per run). With ``--peers`` the DAW and
fan-out scenarios also run, in the same session, against pycrdt-websocket 0.16.5
with its SQLite store and the y-websocket reference server (@y/websocket-server
0.1.1), installed under ``bench/.work`` by this script (never committed).

Scenarios (all bounded by a duration and stop by themselves):
  daw     R rooms x 4 clients, each client 10 small map updates/s (one field of its
          own track, like a fader move)
  fanout  1 writer -> 200 observers in one room, 50 updates/s
  join    100 clients join at once a room whose log holds 50,000 updates

The script stays one file (about 800 lines): the load generator, the three servers
under test and the scenarios make one experiment, run as ``python bench/live.py``;
what other benchmarks share is in bench/harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    collab_server,
    free_port,
    fresh_database,
    machine_line,
    pin_postgres,
    pinned,
    postgres_pids,
    postgres_server,
    resident_kib,
    stop,
)
from collab.access.issuing import issue  # noqa: E402
from collab.live import protocol  # noqa: E402
from events import EventMetadata, NewEvent  # noqa: E402
from events.models import DocUpdated, ProjectCreated, project_stream  # noqa: E402
from events.postgres import PostgresEventStore  # noqa: E402
from events.store import AppendRequest  # noqa: E402
from tests.support import timeout  # noqa: E402

WORK = ROOT / "bench" / ".work"
TOKEN = re.compile(rb"~(\d+)~")
STEP1_EMPTY = protocol.encode_sync_step1(b"\x00")
STEP2_EMPTY = protocol.encode_sync_step2(b"\x00\x00")


# -- load generator ---------------------------------------------------------------------


@dataclass
class Tally:
    #: token -> (send time, sending client); servers that echo to the sender are not
    #: credited for it
    sent_at: dict[int, tuple[float, int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    #: why the server closed clients that were sending (the run goes on without them)
    closed: list[str] = field(default_factory=list)


class Frames:
    """Update frames of one client, built ahead of time; token ids are unique.

    Each client edits its own track: the first frame adds it, every frame sets one of
    its fields (the track's name, carrying the token) as a fader move sets
    ``volume_db``. With ``invalid`` every frame instead writes a string where a track
    belongs (what this benchmark sent before the document schema was enforced), which
    our server must follow with a correction each time: its worst case.
    """

    _next_token = 1

    def __init__(self, client_id: int, count: int, *, invalid: bool = False) -> None:
        doc: pycrdt.Doc[pycrdt.Map[Any]] = pycrdt.Doc(client_id=client_id)
        tracks = doc.get("tracks", type=pycrdt.Map)
        updates: list[bytes] = []
        doc.observe(lambda event: updates.append(event.update))
        self.frames: list[tuple[int, bytes]] = []
        key = f"fader-{client_id}"
        for index in range(count):
            token = Frames._next_token
            Frames._next_token += 1
            if invalid:
                tracks[key] = f"~{token}~"
            elif index == 0:
                tracks[key] = pycrdt.Map({"name": f"~{token}~", "volume_db": 0.0})
            else:
                tracks[key]["name"] = f"~{token}~"
            self.frames.append((token, protocol.encode_update(updates[-1])))


class Client:
    def __init__(self, url: str, tally: Tally) -> None:
        self.url = url
        self.tally = tally
        self.synced = asyncio.Event()
        self.ws: websockets.ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.synced.clear()
        self.ws = await websockets.connect(
            self.url,
            max_size=None,
            ping_interval=None,
            compression=None,
            open_timeout=60,
            close_timeout=1,
        )
        await self.ws.send(STEP1_EMPTY)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        tally = self.tally
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.ws:
                assert isinstance(message, bytes)
                if message[0] != 0:
                    continue
                kind = message[1]
                if kind == 2:
                    now = time.perf_counter()
                    found = TOKEN.search(message)
                    if found is not None:
                        sent = tally.sent_at.get(int(found.group(1)))
                        if sent is not None and sent[1] != id(self):
                            tally.latencies.append(now - sent[0])
                elif kind == 1:
                    self.synced.set()
                elif kind == 0:
                    await self.ws.send(STEP2_EMPTY)

    async def send_at_rate(
        self, frames: Frames, rate: float, duration: float, start: float
    ) -> None:
        assert self.ws is not None
        interval = 1.0 / rate
        due = start + random.random() * interval
        end = start + duration
        for token, frame in frames.frames:
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.tally.sent_at[token] = (time.perf_counter(), id(self))
            self.tally.sent += 1
            try:
                await self.ws.send(frame)
            except websockets.ConnectionClosed as exc:
                # A server that cannot store an update closes its sender (1013); one
                # such client says so instead of ending every other client's run.
                self.tally.sent -= 1
                self.tally.closed.append(str(exc))
                return
            due += interval

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


# -- servers under test -------------------------------------------------------------------


@dataclass
class Target:
    name: str
    process: subprocess.Popen[bytes]
    url: Callable[[str], str]
    new_room: Callable[[], str]
    metrics_url: str | None = None
    db_pids: Callable[[], list[int]] = list

    def helper_pids(self) -> list[int]:
        """The server's child processes (our projection worker)."""
        pid = self.process.pid
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return [int(child) for child in children]
        return []

    def stop(self) -> None:
        stop(self.process)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: with ``--pin``: the cores of the server under test and of everything it runs (its
#: PostgreSQL, our projection worker); the load generator runs on the others
SERVER_CORES: tuple[int, ...] = ()


#: the HS256 secret of the server when a run has authentication on
BENCH_SECRET = "bench-secret-bench-secret-bench-secret"  # noqa: S105 - a benchmark's own


@contextlib.asynccontextmanager
async def ours(
    database_url: str,
    projections: str = "worker",
    auth: str = "off",
    *,
    log: Path | None = None,
    **extra: str,
) -> AsyncIterator[Target]:
    """Our server; with ``auth`` on, every room is created by a user (its owner) whose
    token every client presents: the socket then verifies it and reads the project's
    members once per connection, as for any member who is not an admin; and the rate
    limits are checked on every connection and frame. ``extra``: more settings (a node
    of a cluster: ``REDIS_URL``); ``log``: where its output goes."""
    settings = {"COLLAB_PROJECTIONS": projections, "COLLAB_AUTH": auth, **extra}
    query = ""
    headers: dict[str, str] = {}
    if auth == "on":
        settings["COLLAB_JWT_SECRET"] = BENCH_SECRET
        # Rate limits on, as they are by default, but out of reach: every client here
        # is one principal on one address, and the cost of the checks is measured.
        settings["COLLAB_RATE_LIMITS"] = "on"
        settings["COLLAB_RATE_CONNECTIONS"] = "1000000/minute"
        settings["COLLAB_RATE_UPDATES"] = "1000000/second"
        settings["COLLAB_RATE_UPDATE_BYTES"] = "1000000000000/minute"
        token = issue(BENCH_SECRET.encode(), user="bench", ttl=None)
        query = f"?token={token}"
        headers = {"Authorization": f"Bearer {token}"}
    async with collab_server(database_url, log=log, cores=SERVER_CORES, **settings) as (
        base,
        process,
    ):
        http = httpx.Client(base_url=base, headers=headers)
        port = base.rsplit(":", 1)[1]

        def new_room() -> str:
            return str(http.post("/api/projects", json={"name": "bench"}).json()["id"])

        yield Target(
            "collab (this server, durable)",
            process,
            lambda room: f"ws://127.0.0.1:{port}/ws/{room}{query}",
            new_room,
            metrics_url=f"{base}/metrics",
            db_pids=lambda: postgres_pids(database_url),
        )


def ensure_peers() -> tuple[Path, Path]:
    """Install the comparison servers under bench/.work (once)."""
    venv = WORK / "pycrdt-websocket"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "pycrdt-websocket==0.16.5",
                "uvicorn[standard]",
            ],
            check=True,
        )
    node_dir = WORK / "yws"
    server = node_dir / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
    if not server.exists():
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "package.json").write_text('{"private": true}\n')
        npm = shutil.which("npm") or "npm"
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "@y/websocket-server@0.1.1",
            ],
            cwd=node_dir,
            check=True,
        )
    return python, server


@contextlib.asynccontextmanager
async def pycrdt_websocket(python: Path) -> AsyncIterator[Target]:
    port = free_port()
    folder = Path(tempfile.mkdtemp())
    process = subprocess.Popen(
        [
            *pinned(SERVER_CORES),
            str(python),
            str(ROOT / "bench" / "peers" / "pycrdt_websocket_server.py"),
            str(port),
            str(folder / "ystore.db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_port(port, process)
        yield Target(
            "pycrdt-websocket 0.16.5 + SQLiteYStore",
            process,
            lambda room: f"ws://127.0.0.1:{port}/{room}",
            lambda: uuid.uuid4().hex,
        )
    finally:
        Target("", process, str, str).stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def y_websocket(server: Path) -> AsyncIterator[Target]:
    port = free_port()
    process = subprocess.Popen(
        [*pinned(SERVER_CORES), "node", str(server)],
        env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_port(port, process)
        yield Target(
            "y-websocket reference server (@y/websocket-server 0.1.1, in memory)",
            process,
            lambda room: f"ws://127.0.0.1:{port}/{room}",
            lambda: uuid.uuid4().hex,
        )
    finally:
        Target("", process, str, str).stop()


async def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout(60)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"port {port} never opened")


# -- scenarios ------------------------------------------------------------------------------


@dataclass
class Result:
    p50_ms: float
    p99_ms: float
    delivered: float
    sent_per_s: float
    durable_per_s: float | None
    server_cpu: float
    db_cpu: float | None
    rss_mib: float
    #: the projection worker's CPU (None when the projections run in the server)
    worker_cpu: float | None = None
    #: with several nodes, each one's server and worker CPU (their sums are above)
    node_cpu: list[float] = field(default_factory=list)
    node_worker_cpu: list[float | None] = field(default_factory=list)
    #: sending clients the server closed during the run
    closed: int = 0
    #: the updates sent, and the seconds over which the CPU figures were taken (the
    #: load's duration plus its start and the stragglers' second)
    updates: int = 0
    window_s: float = 0.0

    @property
    def cpu_per_update_us(self) -> float:
        """CPU of the server and everything it runs (PostgreSQL, the worker) per update
        sent, in microseconds of one core."""
        busy = self.server_cpu + (self.db_cpu or 0.0) + (self.worker_cpu or 0.0)
        return busy * self.window_s / self.updates * 1e6 if self.updates else 0.0

    def line(self) -> str:
        durable = f", durable {self.durable_per_s:,.0f}/s" if self.durable_per_s is not None else ""
        db = f", db cpu {self.db_cpu:.0%}" if self.db_cpu is not None else ""
        if self.worker_cpu is not None:
            db += f", worker cpu {self.worker_cpu:.0%}"
        return (
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, delivered {self.delivered:.1%},"
            f" sent {self.sent_per_s:,.0f}/s{durable}, server cpu {self.server_cpu:.0%}{db},"
            f" {self.cpu_per_update_us:.0f} µs cpu/update, rss {self.rss_mib:.0f} MiB"
        )


async def _committed(target: Target) -> float | None:
    if target.metrics_url is None:
        return None
    async with httpx.AsyncClient() as http:
        text = (await http.get(target.metrics_url)).text
    for line in text.splitlines():
        if line.startswith("collab_updates_committed_total "):
            return float(line.split()[1])
    return 0.0


#: the node (an index into the targets) that client ``c`` of room ``r`` connects to
Placement = Callable[[int, int], int]


async def _rooms_scenario(
    target: Target | Sequence[Target],
    rooms: int,
    clients_per_room: int,
    writers_per_room: int,
    rate: float,
    duration: float,
    place: Placement | None = None,
    *,
    invalid: bool = False,
) -> Result:
    """The rooms' load against one server, or against the nodes of a cluster sharing one
    log (``place`` puts each client on a node; by default a room's clients all go to
    node ``r % nodes``). With several nodes the CPU, durable rate and RSS are their sums,
    and ``node_cpu`` / ``node_worker_cpu`` say what each took."""
    targets = [target] if isinstance(target, Target) else list(target)
    where: Placement = place or (lambda r, _c: r % len(targets))
    tally = Tally()
    room_ids = [targets[where(r, 0)].new_room() for r in range(rooms)]
    groups = [
        [Client(targets[where(r, c)].url(room), tally) for c in range(clients_per_room)]
        for r, room in enumerate(room_ids)
    ]
    frames = {
        id(client): Frames(random.randrange(1, 2**31), int(rate * duration) + 2, invalid=invalid)
        for group in groups
        for client in group[:writers_per_room]
    }
    everyone = [client for group in groups for client in group]
    name = targets[0].name
    # Rooms fill one client at a time (a join storm is its own scenario); a client that
    # has not synced after a few seconds reconnects, as an editor would.
    retries = 0
    for client in everyone:
        for _attempt in range(5):
            await client.connect()
            try:
                await asyncio.wait_for(client.synced.wait(), 5)
                break
            except TimeoutError:
                retries += 1
                await client.close()
        else:
            raise RuntimeError(f"{name}: a client never synced")
    if retries:
        print(f"  ({name}: {retries} joins never synced and were retried)", flush=True)
    await asyncio.sleep(0.5)

    committed_before = [await _committed(t) for t in targets]
    cpu_before = [_cpu_seconds(t.process.pid) for t in targets]
    db_pids = targets[0].db_pids()
    db_before = sum(_safe_cpu(pid) for pid in db_pids)
    helpers = [t.helper_pids() for t in targets]
    helpers_before = [sum(_safe_cpu(pid) for pid in pids) for pids in helpers]
    began = time.perf_counter()
    start = began + 0.2
    await asyncio.gather(
        *(
            client.send_at_rate(frames[id(client)], rate, duration, start)
            for group in groups
            for client in group[:writers_per_room]
        )
    )
    await asyncio.sleep(1.0)  # stragglers
    elapsed = time.perf_counter() - began
    if tally.closed:
        print(
            f"  ({name}: the server closed {len(tally.closed)} sending clients, the first"
            f" with: {tally.closed[0]})",
            flush=True,
        )
    node_cpu = [
        (_cpu_seconds(t.process.pid) - before) / elapsed
        for t, before in zip(targets, cpu_before, strict=True)
    ]
    db_cpu = (sum(_safe_cpu(pid) for pid in db_pids) - db_before) / elapsed if db_pids else None
    node_worker_cpu = [
        (sum(_safe_cpu(pid) for pid in pids) - before) / elapsed if pids else None
        for pids, before in zip(helpers, helpers_before, strict=True)
    ]
    workers = [cpu for cpu in node_worker_cpu if cpu is not None]
    committed_after = [await _committed(t) for t in targets]
    rss = sum(resident_kib(t.process.pid) for t in targets) / 1024
    await asyncio.gather(*(client.close() for client in everyone))

    expected = (
        tally.sent * (clients_per_room - 1)
        if writers_per_room == clients_per_room
        else (tally.sent * (clients_per_room - writers_per_room))
    )
    latencies = sorted(tally.latencies)
    durable = None
    if None not in committed_before and None not in committed_after:
        after = sum(count or 0.0 for count in committed_after)
        durable = (after - sum(count or 0.0 for count in committed_before)) / duration
    return Result(
        p50_ms=1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        delivered=len(latencies) / expected if expected else 0.0,
        sent_per_s=tally.sent / duration,
        durable_per_s=durable,
        server_cpu=sum(node_cpu),
        db_cpu=db_cpu,
        rss_mib=rss,
        worker_cpu=sum(workers) if workers else None,
        node_cpu=node_cpu,
        node_worker_cpu=node_worker_cpu,
        closed=len(tally.closed),
        updates=tally.sent,
        window_s=elapsed,
    )


async def _connect_scenario(target: Target, connections: int, concurrency: int) -> float:
    """Connections per second: each opens a socket to one room and waits for the
    server's sync step 2 (answering its step 1), then closes; ``concurrency`` at once."""
    room = target.new_room()
    tally = Tally()
    warm = Client(target.url(room), tally)
    await warm.connect()  # the room is loaded before the clock starts
    await asyncio.wait_for(warm.synced.wait(), 30)
    pending = iter(range(connections))

    async def worker() -> None:
        for _ in pending:
            client = Client(target.url(room), tally)
            await client.connect()
            await asyncio.wait_for(client.synced.wait(), 30)
            await client.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = connections / (time.perf_counter() - began)
    await warm.close()
    return rate


def _safe_cpu(pid: int) -> float:
    try:
        return _cpu_seconds(pid)
    except OSError:
        return 0.0


async def _join_storm(
    database_url: str, updates: int, joiners: int, settings: dict[str, str]
) -> float:
    project = str(uuid.uuid4())
    stream = project_stream(project)
    store = await PostgresEventStore.connect(database_url)
    try:
        meta = EventMetadata(actor="bench")
        await store.append(stream, [NewEvent(ProjectCreated(name="storm", owner="bench"), meta)])
        doc: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc()
        tracks = doc.get("tracks", type=pycrdt.Map)
        produced: list[bytes] = []
        doc.observe(lambda event: produced.append(event.update))
        for i in range(updates):
            tracks[f"fader-{i % 64}"] = float(i)
        for start in range(0, updates, 2000):
            chunk = produced[start : start + 2000]
            events = [NewEvent(DocUpdated(update=u), meta) for u in chunk]
            await store.append_batch([AppendRequest(stream, events)])
    finally:
        await store.close()
    async with ours(database_url, **settings) as target:
        tally = Tally()
        clients = [Client(target.url(project), tally) for _ in range(joiners)]
        began = time.perf_counter()
        await asyncio.gather(*(client.connect() for client in clients))
        await asyncio.gather(*(client.synced.wait() for client in clients))
        elapsed = time.perf_counter() - began
        await asyncio.gather(*(client.close() for client in clients))
    return elapsed


# -- driver ---------------------------------------------------------------------------------


def _summary(name: str, results: list[Result]) -> str:
    p50 = statistics.median(r.p50_ms for r in results)
    p99 = statistics.median(r.p99_ms for r in results)
    cpu = statistics.median(r.server_cpu for r in results)
    workers = [r.worker_cpu for r in results if r.worker_cpu is not None]
    extra_cpu = f", worker cpu {statistics.median(workers):.0%}" if workers else ""
    rss = statistics.median(r.rss_mib for r in results)
    delivered = statistics.median(r.delivered for r in results)
    durable = [r.durable_per_s for r in results if r.durable_per_s is not None]
    extra = f", durable {statistics.median(durable):,.0f}/s" if durable else ""
    per_update = statistics.median(r.cpu_per_update_us for r in results)
    worst = max(r.p99_ms for r in results)
    return (
        f"{name}: median of {len(results)}: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        f" (worst {worst:.1f}), delivered {delivered:.1%}{extra}, server cpu {cpu:.0%}"
        f"{extra_cpu}, {per_update:.0f} µs cpu/update, rss {rss:.0f} MiB"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--peers", action="store_true", help="also run the peer servers")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each server under test, with its PostgreSQL and worker, on core 0; the load"
        " generator on the other cores",
    )
    parser.add_argument("--only", default="daw,fanout,join", help="of daw,fanout,join,connect")
    parser.add_argument("--rooms", default="25,50,75,100", help="room counts of the DAW sweep")
    parser.add_argument(
        "--projections",
        default="worker",
        help="where our server folds its projections (COLLAB_PROJECTIONS): worker, inline,"
        " none; several, comma-separated, alternate run by run; empty: in the daw and fanout"
        " scenarios only the peers run",
    )
    parser.add_argument(
        "--auth",
        default="off",
        help="our server's COLLAB_AUTH: off, on, or off,on to alternate run by run",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="COLLAB_NAME=VALUE",
        help="a setting of our server (repeatable), e.g. COLLAB_COMMIT_WINDOW_MS=5",
    )
    parser.add_argument(
        "--frames",
        choices=("valid", "invalid"),
        default="valid",
        help="DAW frames inside the document schema, or all outside it (each corrected)",
    )
    args = parser.parse_args()
    invalid = args.frames == "invalid"
    only = set(args.only.split(","))
    duration = 3.0 if args.quick else 10.0
    sweep = [int(r) for r in args.rooms.split(",")]

    # Always embedded here: the peers are measured on the same local PostgreSQL.
    embedded = contextlib.ExitStack()
    server_url = embedded.enter_context(postgres_server(from_environment=False))
    pin = ""
    if args.pin:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            parser.error(f"--pin needs two cores; this process may run on {allowed}")
        global SERVER_CORES  # noqa: PLW0603 - one setting for the whole run, set once here
        SERVER_CORES = (allowed[0],)
        pin_postgres(server_url, SERVER_CORES)
        os.sched_setaffinity(0, set(allowed[1:]))
        pin = f", servers on core {allowed[0]}, generator on {allowed[1:]}"
    print(machine_line(f", {duration:.0f} s per run{pin}"), flush=True)
    targets: list[Callable[[], contextlib.AbstractAsyncContextManager[Target]]] = []
    if args.peers:
        python, node_server = ensure_peers()
        targets += [lambda: pycrdt_websocket(python), lambda: y_websocket(node_server)]

    modes = [
        (projections, auth)
        for projections in args.projections.split(",")
        if projections
        for auth in args.auth.split(",")
    ]

    def named(mode: tuple[str, str]) -> str:
        return f"{mode[0]}, auth {mode[1]}"

    malformed = [item for item in args.setting if "=" not in item]
    if malformed:
        parser.error(f"--setting takes COLLAB_NAME=VALUE, not {malformed[0]!r}")
    settings = dict(item.split("=", 1) for item in args.setting)

    async def run_ours(scenario: Callable[[Target], object], mode: tuple[str, str]) -> Result:
        async with (
            fresh_database(server_url, migrated=True) as url,
            ours(url, *mode, **settings) as target,
        ):
            return await scenario(target)  # type: ignore[misc]

    async def ours_runs(label: str, scenario: Callable[[Target], object]) -> None:
        """``args.runs`` runs of each mode, alternating (the machine drifts)."""
        results: dict[tuple[str, str], list[Result]] = {mode: [] for mode in modes}
        for index in range(args.runs):
            for mode in modes:
                result = await run_ours(scenario, mode)
                results[mode].append(result)
                print(
                    f"  {label}, ours ({named(mode)}), run {index + 1}: {result.line()}",
                    flush=True,
                )
        for mode in modes:
            print(_summary(f"{label}, ours ({named(mode)})", results[mode]), flush=True)

    try:
        if "daw" in only:
            for rooms in sweep:
                await ours_runs(
                    f"daw {rooms} rooms x 4 clients",
                    lambda t, r=rooms: _rooms_scenario(t, r, 4, 4, 10.0, duration, invalid=invalid),
                )
            for make in targets:
                for rooms in sweep:
                    results = []
                    for index in range(args.runs):
                        async with make() as target:
                            result = await _rooms_scenario(
                                target, rooms, 4, 4, 10.0, duration, invalid=invalid
                            )
                        results.append(result)
                        print(
                            f"  daw {rooms} rooms, {target.name}, run {index + 1}: {result.line()}",
                            flush=True,
                        )
                    print(
                        _summary(f"daw {rooms} rooms x 4 clients, {target.name}", results),
                        flush=True,
                    )
        if "fanout" in only:
            await ours_runs(
                "fanout 1 -> 200 at 50/s", lambda t: _rooms_scenario(t, 1, 201, 1, 50.0, duration)
            )
            for make in targets:
                results = []
                for index in range(args.runs):
                    async with make() as target:
                        result = await _rooms_scenario(target, 1, 201, 1, 50.0, duration)
                    results.append(result)
                    print(f"  fanout, {target.name}, run {index + 1}: {result.line()}", flush=True)
                print(_summary(f"fanout 1 -> 200 at 50/s, {target.name}", results), flush=True)
        if "connect" in only:
            rates: dict[tuple[str, str], list[float]] = {mode: [] for mode in modes}
            count = 100 if args.quick else 1000
            for index in range(args.runs):
                for mode in modes:
                    async with (
                        fresh_database(server_url, migrated=True) as url,
                        ours(url, *mode, **settings) as target,
                    ):
                        rates[mode].append(await _connect_scenario(target, count, 10))
                    print(
                        f"  connect {count} x 10 at once, ours ({named(mode)}), run {index + 1}:"
                        f" {rates[mode][-1]:,.0f} connections/s",
                        flush=True,
                    )
            for mode in modes:
                print(
                    f"connect, ours ({named(mode)}): median"
                    f" {statistics.median(rates[mode]):,.0f} connections/s",
                    flush=True,
                )
        if "join" in only:
            updates = 5_000 if args.quick else 50_000
            times = []
            for index in range(args.runs):
                async with fresh_database(server_url, migrated=True) as url:
                    times.append(await _join_storm(url, updates, 100, settings))
                print(f"  join storm run {index + 1}: {times[-1]:.2f} s", flush=True)
            print(
                f"join storm, 100 clients, {updates:,} updates in the log:"
                f" median {statistics.median(times):.2f} s",
                flush=True,
            )
    finally:
        embedded.close()


if __name__ == "__main__":
    asyncio.run(main())
