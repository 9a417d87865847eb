"""The embedded PostgreSQL under faults, with real ``collab serve`` processes.

Each test starts servers on a data dir of its own, so the PostgreSQL it kills or
freezes is its own, never the one the other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pycrdt
import pytest

from collab.live.closecodes import CloseCode
from music import document
from tests.live import YClient, server_document
from tests.support import clean_env, eventually, free_port, ready_and_running, timeout, wait_ready

COLLAB = [sys.executable, "-m", "collab.cli"]

pytestmark = pytest.mark.slow


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def log_events(self) -> list[str]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line).get("event", "") for line in lines if line.startswith("{")]


def _serve(data_dir: Path, **env: str) -> Served:
    port = free_port()
    log = data_dir.parent / f"serve-{port}.log"
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [*COLLAB, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=clean_env(**{"COLLAB_LOG_FORMAT": "json", **env}),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    return Served(process, port, data_dir, log)


def _wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """The first true result of ``check``, polled until a scaled deadline."""
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout(seconds):.0f} s: {what}")


def _ready(
    served: Served,
    also: Callable[[dict[str, Any]], bool] = lambda _: True,
    seconds: float = 120,
    what: str = "serve never became ready",
) -> dict[str, Any]:
    """/ready's body once it answers 200 with every projection running (and ``also``
    accepts the body); in a loop of its own, so that sync and async tests can call it."""

    def wanted(response: httpx.Response) -> bool:
        return ready_and_running(response) and also(response.json())

    waited = wait_ready(served.base, wanted, seconds=seconds, message=what, process=served.process)
    body: dict[str, Any] = asyncio.run(waited).json()
    return body


def _stop(served: Served) -> int:
    served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(timeout(60))
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        raise AssertionError("serve did not stop on SIGTERM") from None


def _postmaster(pgdata: Path) -> psutil.Process:
    """The running postmaster of ``pgdata`` (first line of its postmaster.pid)."""
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return psutil.Process(pid)


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    """Every PostgreSQL process of ``pgdata``: its postmasters and their children."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(process)
            found += process.children(recursive=True)
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir of the test's own; whatever PostgreSQL is left on it is killed."""
    path = (tmp_path / "data").resolve()
    yield path
    for process in _postgres_of(path / "pgdata"):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                break


def test_killed_postgresql_is_restarted_and_the_server_resumes(data_dir: Path) -> None:
    served = _serve(data_dir)
    try:
        body = _ready(served)
        assert body["embedded_database"]["restarts"] == 0
        killed = _postmaster(served.pgdata)
        assert body["embedded_database"]["pid"] == killed.pid
        created = httpx.post(f"{served.base}/api/projects", json={"name": "Song"}, timeout=30)
        assert created.status_code == 201, created.text
        project = created.json()["id"]

        killed.kill()

        # Nobody restarts anything: the server does, and answers again by itself.
        body = _ready(
            served,
            lambda b: b["embedded_database"]["restarts"] >= 1,
            90,
            "the server did not come back after PostgreSQL was killed",
        )
        assert body["embedded_database"]["pid"] != killed.pid
        assert _postmaster(served.pgdata).pid == body["embedded_database"]["pid"]
        edit = httpx.post(
            f"{served.base}/api/projects/{project}/edits",
            json={"operations": [{"op": "set_meta", "fields": {"tempo": 128}}]},
            timeout=30,
        )
        assert edit.status_code == 200, edit.text
        position = edit.json()["position"]
        # the projection worker resumed too: it folds the edit made after the restart
        _ready(
            served,
            lambda b: all(p["position"] >= position for p in b["projections"].values()),
            60,
            "the projections did not fold the edit made after the restart",
        )
    finally:
        code = _stop(served)
    assert code == 0
    events = served.log_events()
    assert "embedded postgresql is not running; restarting it" in events
    assert "embedded postgresql restarted" in events
    # the PostgreSQL the server restarted is stopped with it, like the first one
    _wait_for(lambda: not _postgres_of(served.pgdata), 30, "PostgreSQL outlived the server")


def _freeze(pgdata: Path) -> list[psutil.Process]:
    """SIGSTOP every PostgreSQL process of ``pgdata`` (the postmaster first, so it
    starts no new ones meanwhile)."""
    postmaster = _postmaster(pgdata)
    postmaster.suspend()
    frozen = [postmaster]
    for child in postmaster.children(recursive=True):
        child.suspend()
        frozen.append(child)
    return frozen


def _thaw(frozen: list[psutil.Process]) -> None:
    for process in frozen:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.resume()


async def test_frozen_database_answers_503_and_1013_within_the_timeouts(data_dir: Path) -> None:
    served = _serve(
        data_dir,
        COLLAB_DB_COMMAND_TIMEOUT="2",
        COLLAB_DB_ACQUIRE_TIMEOUT="2",
        COLLAB_READY_TIMEOUT="1",
    )
    edits = {"operations": [{"op": "set_meta", "fields": {"key": "E"}}]}
    try:
        await asyncio.to_thread(_ready, served)
        async with httpx.AsyncClient(base_url=served.base, timeout=timeout(30)) as http:
            created = await http.post("/api/projects", json={"name": "Song"})
            assert created.status_code == 201, created.text
            project = created.json()["id"]
            alice = YClient(served.address, project)
            await alice.connect()
            await alice.wait_synced()
            first = await http.post(f"/api/projects/{project}/edits", json=edits)
            assert first.status_code == 200, first.text

            frozen = _freeze(served.pgdata)
            try:
                # Each answer comes within its deadline (far below the minute of
                # asyncpg's own timeouts), and says why.
                ready = await http.get("/ready", timeout=timeout(15))
                assert ready.status_code == 503
                assert ready.json() == {
                    "status": "unavailable",
                    "reason": "database unavailable: no answer within 1 s",
                }
                edit = await http.post(
                    f"/api/projects/{project}/edits", json=edits, timeout=timeout(30)
                )
                assert edit.status_code == 503, edit.text
                # The reason stays in the server's log; clients get the store's general word.
                assert edit.json()["message"].startswith("database unavailable")
                alice.doc.get(document.META, type=pycrdt.Map)["tempo"] = 99.0
                assert await alice.wait_closed(30) == CloseCode.TRY_AGAIN_LATER
            finally:
                _thaw(frozen)

            # Thawed, it serves again by itself; the editor's refused edit lands once it
            # reconnects (the client keeps it and sends it again).
            await asyncio.to_thread(_ready, served)
            await alice.disconnect()
            await alice.connect()
            await alice.wait_synced()

            async def landed() -> bool:
                return (await server_document(served.address, project))["meta"].get("tempo") == 99.0

            await eventually(landed, 30, "the refused edit never landed", interval=0.1)
            edit = await http.post(f"/api/projects/{project}/edits", json=edits)
            assert edit.status_code == 200, edit.text
            await alice.disconnect()
    finally:
        assert await asyncio.to_thread(_stop, served) == 0


def test_clean_stop_after_a_kill_9_stops_postgresql(data_dir: Path) -> None:
    first = _serve(data_dir)
    worker: int | None = None
    try:
        worker = _ready(first)["projection_worker"]["pid"]
        postmaster = _postmaster(first.pgdata)
        first.process.kill()
        first.process.wait(timeout(30))
        handles = json.loads((first.pgdata / ".handle_pids.json").read_text())
        assert first.process.pid in handles  # pgserver never heard it went

        second = _serve(data_dir)
        try:
            _ready(second)
            assert _postmaster(second.pgdata).pid == postmaster.pid  # joined, not restarted
        finally:
            code = _stop(second)
        assert code == 0
        # the last process using it is gone: PostgreSQL stopped
        _wait_for(lambda: not _alive(postmaster), 30, "PostgreSQL outlived a clean stop")
        assert not _postgres_of(second.pgdata)
        assert not (second.pgdata / "postmaster.pid").exists()
        assert "forgot handles of processes gone without stopping the embedded postgresql" in (
            second.log_events()
        )
    finally:
        if first.process.poll() is None:
            first.process.kill()
        if worker is not None and psutil.pid_exists(worker):
            psutil.Process(worker).kill()
