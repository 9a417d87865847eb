"""Projections outside the server's process: the supervised worker (killed, restarted,
orphaned) and ``collab projections run`` beside a server that runs none."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collab.app import create_app
from collab.runtime.config import AuditSettings, ReadSettings
from collab.worker import key_line
from events.checkpoints import key_id
from tests.live import running_server
from tests.support import clean_env, eventually, free_port, timeout, wait_ready

COLLAB = [sys.executable, "-m", "collab.cli"]


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return clean_env(**{"DATABASE_URL": database_url, "COLLAB_POLL_INTERVAL": "0.2", **extra})


@contextlib.asynccontextmanager
async def asgi_client(database_url: str, where: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        database_url,
        poll_interval=0.1,
        read=ReadSettings(projections=where),
        audit=AuditSettings(checkpoint_seconds=0.2),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        yield client


async def _ready(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/ready")
    body: dict[str, Any] = response.json()
    body["code"] = response.status_code
    return body


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; its parent has not reaped it yet


async def test_a_killed_worker_is_reported_and_restarted(database_url):
    async with asgi_client(database_url, "worker") as client:
        await wait_ready(client, seconds=30, message="the worker did not start", interval=0.02)
        first = (await _ready(client))["projection_worker"]["pid"]
        os.kill(first, signal.SIGKILL)

        await wait_ready(
            client,
            lambda response: response.status_code == 503,
            seconds=10,
            message="/ready did not notice the dead worker",
            interval=0.02,
        )
        body = await _ready(client)
        assert body["reason"] == (
            f"projection worker not running (it exited with {-signal.SIGKILL}); restarting it"
        )
        assert body["projection_worker"] == {"pid": None, "last_exit_code": -signal.SIGKILL}

        def restarted(response: httpx.Response) -> bool:
            pid = response.json()["projection_worker"]["pid"]
            return response.status_code == 200 and pid not in (None, first)

        await wait_ready(
            client, restarted, seconds=30, message="the worker was not restarted", interval=0.02
        )
        # ... and it folds what came meanwhile: read-your-writes across the processes
        created = await client.post("/api/projects", json={"name": "After"})
        assert created.status_code == 201
        project = created.json()
        view = await client.get(
            f"/api/projects/{project['id']}", params={"min_position": project["position"]}
        )
        assert view.status_code == 200, view.text
        assert view.json()["name"] == "After"
        # The worker signs with the key the server publishes (it came on its stdin).

        async def sealed() -> bool:
            checkpoint = await client.get("/api/audit/checkpoint?format=json")
            return checkpoint.status_code == 200 and checkpoint.json()["tree_size"] >= 1

        await eventually(sealed, 30, "no checkpoint was signed")
        assert (await client.get("/api/audit/checkpoint?format=json")).json()[
            "signed_by_current_key"
        ]


async def test_the_worker_stops_when_its_server_dies(database_url):
    """A ``collab serve`` killed without a chance to stop its worker: the worker sees
    its input close and exits on its own."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *COLLAB,
        "serve",
        "--port",
        str(port),
        env=_env(database_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        def worker_pid(response: httpx.Response) -> int | None:
            pid = response.json().get("projection_worker", {}).get("pid")
            return int(pid) if pid else None

        ready = await wait_ready(
            f"http://127.0.0.1:{port}",
            lambda response: worker_pid(response) is not None,
            seconds=60,
            message="serve did not start its worker",
            interval=0.02,
        )
        pid = worker_pid(ready)
        assert pid is not None
        assert _alive(pid)
        server.kill()
        await asyncio.wait_for(server.wait(), timeout(10))
        await eventually(lambda: not _alive(pid), 15, "the orphaned worker kept running")
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def test_projections_run_beside_a_server_that_runs_none(database_url, tmp_path):
    read = ReadSettings(projections="none", projection_wait=0.5)
    async with (
        running_server(database_url, read=read) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client,
    ):
        ready = (await client.get("/ready")).json()
        assert ready["projections_run"] == "none"
        assert "projection_worker" not in ready
        created = (await client.post("/api/projects", json={"name": "Elsewhere"})).json()
        url = f"/api/projects/{created['id']}"
        params = {"min_position": created["position"]}
        # Nothing folds here: the read waits, then says so.
        waiting = await client.get(url, params=params)
        assert waiting.status_code == 503
        assert "have not reached position" in waiting.json()["message"]

        worker = await asyncio.create_subprocess_exec(
            *COLLAB,
            "projections",
            "run",
            env=_env(database_url, COLLAB_DATA_DIR=str(tmp_path)),
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            async def folded() -> bool:
                return (await client.get(url, params=params)).status_code == 200

            await eventually(folded, 30, "the read never saw the fold")
            assert (await client.get(url)).json()["name"] == "Elsewhere"
            assert (await client.get("/ready")).json()["projections"]["projects"]["state"] == (
                "running"
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(worker.communicate(), timeout(30))
        assert worker.returncode == 0, stderr.decode()[-2000:]
        assert b"projections stopped" in stderr
        # it signed with the key file of its data dir, which it created
        assert (tmp_path / "audit-ed25519.pem").exists()
        states = {p["state"] for p in (await client.get("/ready")).json()["projections"].values()}
        assert states == {"stopped"}


async def test_a_supervised_worker_takes_its_key_from_stdin(database_url):
    """The checkpoints the worker signs carry the key its supervisor gave it."""
    key = Ed25519PrivateKey.generate()
    worker = await asyncio.create_subprocess_exec(
        *COLLAB,
        "projections",
        "run",
        "--supervised",
        env=_env(database_url, COLLAB_CHECKPOINT_SECONDS="0.2"),
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None
    worker.stdin.write(key_line(key))
    try:
        async with (
            running_server(database_url, read=ReadSettings(projections="none")) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as client,
        ):
            await client.post("/api/projects", json={"name": "Signed"})

            async def signed() -> bool:
                return (await client.get("/api/audit/checkpoint?format=json")).status_code == 200

            await eventually(signed, 30, "no checkpoint was signed")
            checkpoint = (await client.get("/api/audit/checkpoint?format=json")).json()
    finally:
        worker.stdin.close()  # what the death of its supervisor looks like
        _, stderr = await asyncio.wait_for(worker.communicate(), timeout(30))
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert checkpoint["key_id"] == key_id(key.public_key())
