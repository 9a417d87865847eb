"""What every benchmark here needs: a PostgreSQL server, fresh databases, a header line."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

from events.postgres import PostgresEventStore
from projections.progress import ProjectionProgress
from projections.runner import PARALLEL_LAG, ParallelFold, Projection, ProjectionRunner
from tests.support import clean_env, wait_ready


@contextlib.contextmanager
def postgres_server(*, from_environment: bool = True) -> Iterator[str]:
    """The server named by DATABASE_URL, or an embedded pgserver in a temporary folder
    (deleted afterwards)."""
    given = os.environ.get("DATABASE_URL") if from_environment else None
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - slow to import, and only needed here

        server = pgserver.get_server(Path(tempfile.mkdtemp()) / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, *, migrated: bool = False) -> AsyncIterator[str]:
    """A new database on ``server_url`` for one run, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"create database {name}")
    await admin.close()
    base, _, query = server_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    if migrated:
        store = await PostgresEventStore.connect(url, min_size=1, max_size=1)
        await store.migrate()
        await store.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


def machine_line(extra: str = "") -> str:
    return (
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}{extra}"
    )


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def collab_server(
    database_url: str,
    *,
    log: Path | None = None,
    cores: Sequence[int] = (),
    **settings: str,
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``collab serve`` as its own process on ``database_url``, on a free loopback port,
    with ``settings`` as environment variables; yields its base URL once ``/ready``
    answers, and stops it afterwards. Its output goes to ``log`` (appended) if given;
    ``cores``: the CPUs it (and the worker it starts) may run on (all if empty)."""
    port = free_port()
    env = clean_env(
        **{
            "DATABASE_URL": database_url,
            "COLLAB_LOG_LEVEL": "warning",
            "COLLAB_LOG_FORMAT": "json",
            **settings,
        }
    )
    output = contextlib.ExitStack()
    sink = subprocess.DEVNULL if log is None else output.enter_context(log.open("ab"))
    with output:
        process = subprocess.Popen(
            [*pinned(cores), sys.executable, "-m", "collab.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=sink,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(base, process=process, message=f"{base}/ready never answered 200")
            yield base, process
        finally:
            stop(process)


def pinned(cores: Sequence[int]) -> list[str]:
    """The command prefix that runs a program on ``cores`` only (none if empty): taskset
    execs the program, so the process keeps its pid, and what it starts inherits the
    cores."""
    return ["taskset", "--cpu-list", ",".join(map(str, cores))] if cores else []


def resident_kib(pid: int) -> float:
    """The resident memory of process ``pid`` in KiB (0 if /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


def postgres_pids(database_url: str) -> list[int]:
    """The processes of the PostgreSQL server at ``database_url``, if it runs on this
    machine with its socket in its data folder (as the embedded pgserver does): its
    postmaster, named by ``postmaster.pid`` there, and every process under it. Empty if
    that server cannot be found."""
    query = parse_qs(urlsplit(database_url).query)
    folders = query.get("host", [])
    if not folders:
        return []
    try:
        postmaster = int((Path(folders[0]) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids, frontier = [], [postmaster]
    while frontier:
        pid = frontier.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                frontier += [int(child) for child in (task / "children").read_text().split()]
    return pids


def pin_postgres(database_url: str, cores: Sequence[int]) -> None:
    """Put the PostgreSQL server at ``database_url`` (see :func:`postgres_pids`) on
    ``cores``; the backends its postmaster starts later inherit them."""
    pids = postgres_pids(database_url)
    if not pids:
        raise RuntimeError(f"no PostgreSQL processes found for {database_url} to pin")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a backend that just ended
            os.sched_setaffinity(pid, set(cores))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process (killed if it does not exit within 30 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def fold_to_head(
    store: PostgresEventStore,
    projections: Sequence[Projection],
    batch_size: int,
    parallel: Mapping[str, ParallelFold] | None = None,
    parallel_lag: int = PARALLEL_LAG,
) -> float:
    """A fresh runner folds the log from the projections' checkpoints to the head as it
    is now (``parallel``: as the runner's); returns the seconds it took (start to every
    checkpoint at the head)."""
    head = await store.head_position()
    progress = ProjectionProgress(store, [p.name for p in projections])
    await progress.start()
    runner = ProjectionRunner(
        store, projections, batch_size=batch_size, parallel=parallel, parallel_lag=parallel_lag
    )
    started = time.perf_counter()
    runner.start()
    try:
        if not await progress.wait(head, 3600):
            raise RuntimeError("the projections did not catch up within an hour")
        return time.perf_counter() - started
    finally:
        await runner.stop()
        await progress.stop()
