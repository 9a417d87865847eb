"""The live path under faults: database outage, SIGTERM, SIGKILL under load."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pycrdt
import pytest
from websockets.protocol import State

from collab.live.closecodes import CloseCode
from music import document
from tests.live import (
    YClient,
    contains,
    create_project,
    log_doc,
    random_edit,
    running_server,
    server_document,
    synced_clients,
)
from tests.support import clean_env, eventually, free_port, start_embedded, timeout, wait_ready

COLLAB = [sys.executable, "-m", "collab.cli"]


def _pg_ctl(server: Any, *args: str) -> None:
    from pgserver import _commands  # noqa: PLC0415 - the wheel's own pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    _commands.pg_ctl(["-w", *args], pgdata=server.pgdata, user=user, timeout=60)


def _start_args(server: Any) -> list[str]:
    # The same options pgserver starts it with: no TCP, socket in its socket dir.
    socket_dir = parse_qs(urlsplit(str(server.get_uri())).query)["host"][0]
    return [
        "-o",
        '-h ""',
        "-o",
        f"-k {socket_dir}",
        "-l",
        str(Path(server.pgdata) / "log"),
        "start",
    ]


async def test_database_outage_refuses_updates_with_1013_and_recovers(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "pgdata")
    try:
        url = str(server.get_uri())
        async with running_server(url) as address:
            project = await create_project(address)
            alice, bob = await synced_clients(address, project, 2)
            meta = alice.doc.get(document.META, type=pycrdt.Map)
            meta["key"] = "E"
            await eventually(lambda: bob.json()["meta"].get("key") == "E", 5, "first edit")

            await asyncio.to_thread(_pg_ctl, server, "-m", "fast", "stop")
            meta["tempo"] = 99.0  # made while the database is down
            assert await alice.wait_closed(30) == CloseCode.TRY_AGAIN_LATER
            assert "database unavailable" in (alice.close_reason or "")
            assert bob.json()["meta"].get("tempo") != 99.0  # never broadcast: not durable
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                ready = await http.get("/ready")
                assert ready.status_code == 503

            await asyncio.to_thread(_pg_ctl, server, *_start_args(server))
            # The editor kept its edit and sends it again when it reconnects.
            await alice.disconnect()
            await alice.connect()
            await alice.wait_synced()
            await eventually(lambda: bob.json()["meta"].get("tempo") == 99.0, 20, "no recovery")
            final = await server_document(address, project)
            assert final == alice.json() == bob.json()
            assert document.to_json(await log_doc(url, project)) == final
            await alice.disconnect()
            await bob.disconnect()
    finally:
        server.cleanup()


def _serve(database_url: str, port: int, log: Path) -> subprocess.Popen[str]:
    env = clean_env(DATABASE_URL=database_url, COLLAB_LOG_FORMAT="json", COLLAB_ROOM_GRACE="1")
    with log.open("a") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*COLLAB, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )


async def _ready(port: int, process: subprocess.Popen[str]) -> None:
    await wait_ready(
        f"http://127.0.0.1:{port}", message="serve never became ready", process=process
    )


def _connected(client: YClient) -> bool:
    return client.ws is not None and client.ws.state is State.OPEN


async def _keep_editing(client: YClient, rng: random.Random, who: int, stop: asyncio.Event) -> None:
    """Edit every few milliseconds; reconnect whenever the connection is gone."""
    while not stop.is_set():
        if client.ws is None or client.ws.state is not State.OPEN:
            await client.disconnect()
            try:
                await client.connect()
            except OSError:
                await asyncio.sleep(0.1)
                continue
        random_edit(rng, client.doc, who)
        await asyncio.sleep(0.005)


async def _settle(clients: list[YClient], address: str, project: str) -> dict[str, Any]:
    for client in clients:
        if client.ws is None or client.ws.state is not State.OPEN:
            await client.disconnect()
            await client.connect()
        await client.wait_synced(20)

    async def converged() -> bool:
        wanted = await server_document(address, project)
        return all(c.json() == wanted for c in clients)

    await eventually(converged, 30, "clients did not converge")
    return await server_document(address, project)


@pytest.mark.slow
async def test_kill_9_under_load_loses_no_broadcast_update(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = _serve(database_url, port, tmp_path / "serve.log")
    try:
        await _ready(port, process)
        project = await create_project(address)
        clients = await synced_clients(address, project, 3)
        stop = asyncio.Event()
        editors = [
            asyncio.create_task(_keep_editing(c, random.Random(i), i, stop))
            for i, c in enumerate(clients)
        ]

        def broadcasts() -> int:
            return sum(len(c.received) for c in clients)

        # Under load: the kill comes once plenty of broadcasts have gone out.
        await eventually(lambda: broadcasts() > 50, 30, "the editors' updates were not broadcast")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout(10))
        broadcast_before_kill = broadcasts()
        # Every editor has lost its connection (and keeps editing offline) before the
        # server comes back.
        await eventually(
            lambda: not any(_connected(c) for c in clients), 10, "an editor did not see the kill"
        )
        process = _serve(database_url, port, tmp_path / "serve.log")
        await _ready(port, process)
        # Every editor is back, synced, and gets broadcasts from the new server.
        received_at_restart = [len(c.received) for c in clients]
        await eventually(
            lambda: all(
                _connected(c) and c.synced.is_set() and len(c.received) > before
                for c, before in zip(clients, received_at_restart, strict=True)
            ),
            30,
            "the editors did not edit together again after the restart",
        )
        stop.set()
        await asyncio.gather(*editors)

        final = await _settle(clients, address, project)
        log = await log_doc(database_url, project)
        assert document.to_json(log) == final
        assert broadcast_before_kill > 50  # the kill really happened under load
        received = [u for c in clients for u in c.received]
        # One merged update holds exactly what the broadcasts held together.
        assert contains(log, pycrdt.merge_updates(*received)), "a broadcast is not in the log"
        for client in clients:
            await client.disconnect()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_sigterm_flushes_closes_with_1012_and_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = _serve(database_url, port, tmp_path / "serve.log")
    try:
        await _ready(port, process)
        project = await create_project(address)
        clients = await synced_clients(address, project, 2)
        rng = random.Random(3)
        for i in range(200):
            random_edit(rng, clients[i % 2].doc, i % 2)
            await asyncio.sleep(0.002)  # the scenario: edits paced like a person typing
        # A last burst is still in flight when the signal arrives.
        for i in range(100):
            random_edit(rng, clients[i % 2].doc, i % 2)
        await asyncio.sleep(0)  # the scenario: the burst is handed to the sockets, not more
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, timeout(60)) == 0
        for client in clients:
            assert await client.wait_closed() == CloseCode.SERVICE_RESTART
        log = await log_doc(database_url, project)
        received = [u for c in clients for u in c.received]
        assert received
        assert contains(log, pycrdt.merge_updates(*received))

        process = _serve(database_url, port, tmp_path / "serve.log")
        await _ready(port, process)
        final = await _settle(clients, address, project)
        assert document.to_json(await log_doc(database_url, project)) == final
        for client in clients:
            await client.disconnect()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
