"""Real servers and real Yjs clients for the live-path tests.

``running_server`` runs the app under uvicorn on a free loopback port, in the test's
event loop. ``YClient`` is a pycrdt document speaking y-websocket through pycrdt's own
codec (not ours: the server's codec is what is under test) over the ``websockets``
client library.

Over 400 lines because it is the one kit every live test uses (server, clients,
raw-frame helpers); a second module would split helpers that call each other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from collab.access.tokens import TokenSettings
from collab.app import create_app
from collab.live import protocol
from collab.runtime.config import (
    AuditSettings,
    HttpSettings,
    LiveSettings,
    RateSettings,
    ReadSettings,
)
from collab.server import Server, build_config
from events.models import DOCUMENT_EVENTS, project_stream
from events.postgres import PostgresEventStore
from events.records import StoredEvent
from music import document
from tests.support import eventually, free_port, projections_run, timeout, wait_ready

FAST = LiveSettings(room_grace=0.5)


@contextlib.asynccontextmanager
async def running_server(
    database_url: str,
    settings: LiveSettings = FAST,
    *,
    ping_interval: float = 20.0,
    read: ReadSettings | None = None,
    audit: AuditSettings | None = None,
    http: HttpSettings | None = None,
    auth: TokenSettings | None = None,
    rates: RateSettings | None = None,
    port: int | None = None,
    compression: bool = False,
    **overrides: Any,
) -> AsyncIterator[str]:
    """Yield ``host:port`` of a real server on the event store at ``database_url``
    (authentication and rate limits off unless ``auth`` and ``rates`` are given; on a
    free port unless ``port`` is given, to bring a stopped server back where it was)."""
    live = replace(settings, **overrides)
    port = port or free_port()
    app = create_app(
        database_url,
        poll_interval=0.2,
        live=live,
        read=read,
        audit=audit,
        http=replace(http or HttpSettings(), port=port),
        auth=auth,
        rates=rates,
    )
    server = Server(
        build_config(
            app,
            host="127.0.0.1",
            port=port,
            max_message_bytes=live.max_message_bytes,
            ping_interval=ping_interval,
            compression=compression,
        )
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), 20, "server did not start")
    if task.done():
        task.result()
        raise AssertionError("server stopped during startup")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout(30))


async def projections_running(address: str) -> None:
    """Wait until /ready says every projection runs (the worker takes a moment)."""
    await wait_ready(
        f"http://{address}",
        projections_run,
        seconds=30,
        message="the projections did not start",
        interval=0.02,
    )


async def create_project(address: str, name: str = "Song") -> str:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post("/api/projects", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


async def synced_clients(address: str, project_id: str, count: int) -> list[YClient]:
    """``count`` pycrdt clients connected to the project, each synced, in order."""
    clients = [YClient(address, project_id) for _ in range(count)]
    for client in clients:
        await client.connect()
        await client.wait_synced()
    return clients


async def server_document(address: str, project_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.get(f"/api/projects/{project_id}/document")
        assert response.status_code == 200, response.text
        return dict(response.json()["document"])


async def log_document(database_url: str, project_id: str) -> dict[str, Any]:
    """The document rebuilt from the event log alone, in a fresh pycrdt document."""
    return document.to_json(await log_doc(database_url, project_id))


#: y-protocols' auth message type (its one subtype: permission denied)
AUTH_MESSAGE = 2


class YClient:
    """A pycrdt document connected to the server like a y-websocket provider."""

    def __init__(
        self,
        address: str,
        project_id: str,
        doc: pycrdt.Doc[Any] | None = None,
        *,
        token: str | None = None,
    ) -> None:
        self.url = f"ws://{address}/ws/{project_id}" + (f"?token={token}" if token else "")
        self.doc = doc or document.new_document()
        self.ws: ClientConnection | None = None
        self.synced = asyncio.Event()
        #: update payloads this client received as broadcasts (not its own)
        self.received: list[bytes] = []
        self.awareness: list[bytes] = []
        #: reasons of the y-protocols auth messages (permission denied) received
        self.denied: list[str] = []
        self._remote = False
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.doc.observe(self._local_change)

    def _local_change(self, event: pycrdt.TransactionEvent) -> None:
        if not self._remote:
            self._outbox.put_nowait(pycrdt.create_update_message(event.update))

    async def connect(self) -> YClient:
        self.synced.clear()
        self.close_code = None
        self.ws = await websockets.connect(self.url, max_size=None)
        await self.ws.send(pycrdt.create_sync_message(self.doc))
        self._tasks = [
            asyncio.create_task(self._read(self.ws)),
            asyncio.create_task(self._write(self.ws)),
        ]
        return self

    async def wait_synced(self, seconds: float = 10) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout(seconds))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                assert isinstance(message, bytes)
                if message[0] == pycrdt.YMessageType.SYNC:
                    if message[1] == pycrdt.YSyncMessageType.SYNC_UPDATE:
                        self.received.append(pycrdt.read_message(message[2:]))
                    self._remote = True
                    try:
                        reply = pycrdt.handle_sync_message(message[1:], self.doc)
                    finally:
                        self._remote = False
                    if reply is not None:
                        await ws.send(reply)
                    if message[1] == pycrdt.YSyncMessageType.SYNC_STEP2:
                        self.synced.set()
                elif message[0] == pycrdt.YMessageType.AWARENESS:
                    self.awareness.append(message)
                elif message[0] == AUTH_MESSAGE:
                    decoded = protocol.decode(message)
                    assert isinstance(decoded, protocol.AuthDenied)
                    self.denied.append(decoded.reason)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason

    async def _write(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self._outbox.get()
                await ws.send(frame)

    async def send_raw(self, frame: bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def wait_closed(self, seconds: float = 10) -> int | None:
        assert self.ws is not None
        await asyncio.wait_for(self.ws.wait_closed(), timeout(seconds))
        await asyncio.sleep(0)
        return self.ws.close_code

    async def disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Edits made while offline are sent by the sync exchange on reconnect.
        while not self._outbox.empty():
            self._outbox.get_nowait()

    def json(self) -> dict[str, Any]:
        return document.to_json(self.doc)


def random_edit(rng: random.Random, doc: pycrdt.Doc[Any], who: int) -> None:
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    order = doc.get(document.TRACK_ORDER, type=pycrdt.Array)
    meta = doc.get(document.META, type=pycrdt.Map)
    kind = rng.randrange(5)
    if kind == 0 or len(tracks) == 0:
        track_id = f"t{who}-{rng.randrange(10**6)}"
        with doc.transaction():
            tracks[track_id] = pycrdt.Map(
                {"name": track_id, "volume_db": 0.0, "notes": pycrdt.Array()}
            )
            order.append(track_id)
    elif kind == 1:
        meta["tempo"] = float(rng.randrange(60, 180))
    elif kind == 2:
        track = tracks[rng.choice(sorted(tracks.keys()))]
        track["volume_db"] = float(rng.randrange(-60, 6))
    elif kind == 3:
        track = tracks[rng.choice(sorted(tracks.keys()))]
        notes = track.get("notes")
        if isinstance(notes, pycrdt.Array):
            notes.append(pycrdt.Map({"pitch": float(rng.randrange(128)), "start": 0.0}))
    elif len(order) > 0:
        del order[rng.randrange(len(order))]


def invalid_edit(rng: random.Random, doc: pycrdt.Doc[Any], who: int) -> None:
    """An edit that writes a value outside the document schema (docs/document.md),
    which the server must correct."""
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    meta = doc.get(document.META, type=pycrdt.Map)
    kind = rng.randrange(6)
    names = sorted(tracks.keys())
    if kind == 0 or not names:
        meta["tempo"] = rng.choice(["fast", -5.0, 5000.0, True])
    elif kind == 1:
        tracks[rng.choice(names)]["pan"] = rng.choice([5.0, -2.0, "left"])
    elif kind == 2:
        tracks[rng.choice(names)]["kind"] = rng.choice(["kazoo", 3.0])
    elif kind == 3:
        clip = pycrdt.Map(
            {
                "name": f"c{who}",
                "start_beats": 0.0,
                "length_beats": 4.0,
                "notes": pycrdt.Array(
                    [
                        pycrdt.Map({"pitch": 500.0, "start": 0.0, "duration": 1.0}),
                        pycrdt.Map({"pitch": 60.0, "start": 0.0, "duration": 1.0}),
                    ]
                ),
            }
        )
        track = tracks[rng.choice(names)]
        if not isinstance(track.get("clips"), pycrdt.Map):
            track["clips"] = pycrdt.Map()
        track["clips"][f"c{who}-{rng.randrange(10**6)}"] = clip
    elif kind == 4:
        doc.get(document.TRACK_ORDER, type=pycrdt.Array).append(float(rng.randrange(100)))
    else:
        tracks[rng.choice(names)]["color"] = "red"


def contains(doc: pycrdt.Doc[Any], update: bytes) -> bool:
    """Whether ``doc`` already holds everything ``update`` carries."""
    clone = document.copy_of(doc)
    before_state, before_json = clone.get_state(), document.to_json(clone)
    clone.apply_update(update)
    return clone.get_state() == before_state and document.to_json(clone) == before_json


async def project_events(database_url: str, project_id: str) -> list[StoredEvent]:
    """Every event of the project's stream, read straight from the store."""
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    try:
        return await store.read_stream(project_stream(project_id))
    finally:
        await store.close()


async def log_doc(database_url: str, project_id: str) -> pycrdt.Doc[Any]:
    doc = document.new_document()
    for event in await project_events(database_url, project_id):
        if event.event_type in DOCUMENT_EVENTS and event.payload:
            doc.apply_update(event.payload)
    return doc


class NodeClient:
    """A stock ``yjs`` + ``y-websocket`` editor in Node (``tests/node/client.mjs``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        #: every event the client printed so far, in order (but the dumps)
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(
        cls,
        script: Path,
        address: str,
        project_id: str,
        *,
        origin: str | None = None,
        token: str | None = None,
    ) -> NodeClient:
        """``origin``: the Origin header its connections send, as a page of that origin;
        ``token``: sent as the provider's ``params: {token}``, as docs/auth.md shows."""
        process = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            f"ws://{address}/ws",
            project_id,
            *([origin] if origin is not None else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **({"COLLAB_TOKEN": token} if token is not None else {})},
        )
        return cls(process)

    async def _next(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != "dump":  # whole documents: not kept over a long run
            self.seen.append(message)
        return message

    async def _event(self, name: str, seconds: float = 20) -> dict[str, Any]:
        # One deadline for the event, however many other lines come before it.
        async with asyncio.timeout(timeout(seconds)):
            while True:
                message = await self._next()
                if message is None:
                    raise AssertionError(f"node client exited while waiting for {name!r}")
                if message.get("event") == name:
                    return message

    async def event(self, name: str, seconds: float = 20) -> dict[str, Any]:
        """The next ``name`` event the provider reports (others are kept in ``seen``)."""
        return await self._event(name, seconds)

    async def events_within(self, seconds: float) -> list[dict[str, Any]]:
        """Every event printed in the next ``seconds`` (not scaled: a window, not a wait)."""
        events: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (message := await self._next()) is not None:
                    events.append(message)
        return events

    async def _send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def wait_synced(self) -> None:
        await self._event("synced")

    async def edit(self, count: int, seed: int) -> None:
        await self._send({"cmd": "edit", "count": count, "seed": seed})
        await self._event("edited", seconds=60)

    async def dump(self) -> dict[str, Any]:
        await self._send({"cmd": "dump"})
        return dict((await self._event("dump"))["document"])

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self._send({"cmd": "quit"})
            try:
                await asyncio.wait_for(self.process.wait(), timeout(10))
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def count_doc_events(database_url: str, project_id: str) -> int:
    events = await project_events(database_url, project_id)
    return sum(1 for e in events if e.event_type == "doc.updated")


async def metric(address: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


async def close_code(ws: websockets.ClientConnection) -> int | None:
    """Read (and drop) frames until the server closes; its close code."""
    try:
        # Each frame within 10 s, and the close within 30 s however many frames come.
        async with asyncio.timeout(timeout(30)):
            while True:
                await asyncio.wait_for(ws.recv(), timeout(10))
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def raw_websocket(
    address: str, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def raw_close_code(reader: asyncio.StreamReader) -> int:
    """Read server frames (unmasked) until the close frame; its code."""
    # Each frame begins within 10 s, and the close comes within 30 s however many
    # frames come before it.
    async with asyncio.timeout(timeout(30)):
        while True:
            first, second = await asyncio.wait_for(reader.readexactly(2), timeout(10))
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return int.from_bytes(payload[:2], "big")
