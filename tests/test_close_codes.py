"""What the stock y-websocket provider does with the server's close codes: it stops after
a permanent refusal (44xx) and reconnects after a transient one. Real server, the stock
Node client, and a TCP relay in between that counts the connections the client opens
and can stop passing the server's bytes on (a client that stops reading, as the server
sees it)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pycrdt

from collab.live.closecodes import CloseCode
from music import document
from tests.live import NodeClient, create_project, metric, running_server, synced_clients
from tests.support import eventually

EVIL = "http://evil.example"
#: long enough for three reconnects of the provider (200, 400, 800 ms backoff)
RECONNECT_WINDOW = 2.5


class Relay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        #: TCP connections the client opened through the relay
        self.connections = 0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        self.connections += 1
        host, port = self.upstream.split(":")
        # Small buffers, so a stopped relay holds little and the server's queue fills.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        except OSError:
            sock.close()
            to_client.close()
            return
        server, to_server = await asyncio.open_connection(sock=sock, limit=8192)
        pipes = {
            asyncio.create_task(_pipe(client, to_server, None)),
            asyncio.create_task(_pipe(server, to_client, self.flowing)),
        }
        self._tasks |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._tasks -= pipes
            to_server.close()
            to_client.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None
) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(8192):
            if gate is not None:
                await gate.wait()
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def relay_to(address: str) -> AsyncIterator[tuple[Relay, str]]:
    relay = Relay(address)
    try:
        yield relay, await relay.start()
    finally:
        await relay.stop()


@contextlib.asynccontextmanager
async def node_client(
    script: Path, address: str, project: str, origin: str | None = None
) -> AsyncIterator[NodeClient]:
    node = await NodeClient.start(script, address, project, origin=origin)
    try:
        yield node
    finally:
        await node.stop()


def connecting(events: list[dict[str, object]]) -> int:
    return sum(1 for e in events if e == {"event": "status", "status": "connecting"})


def test_only_refusals_reconnecting_cannot_fix_are_permanent():
    permanent = {code for code in CloseCode if code.permanent}
    assert permanent == {4400, 4401, 4403, 4404, 4413}
    # The transient ones are outside the range the stock provider stops on.
    assert {code for code in CloseCode if not code.permanent} == {1012, 1013, 4508, 4529}


async def test_the_stock_client_stops_after_an_unknown_project(database_url, node_client_script):
    async with (
        running_server(database_url) as address,
        relay_to(address) as (relay, through),
        node_client(node_client_script, through, str(uuid.uuid4())) as node,
    ):
        stopped = await node.event("stopped")
        assert stopped["code"] == CloseCode.UNKNOWN_PROJECT
        assert "project" in stopped["reason"]
        later = await node.events_within(RECONNECT_WINDOW)
        assert relay.connections == 1
        assert connecting(node.seen + later) == 1, node.seen + later


async def test_the_stock_client_from_a_foreign_page_stops_with_4403(
    database_url, node_client_script
):
    async with running_server(database_url) as address, relay_to(address) as (relay, through):
        project = await create_project(address)
        async with node_client(node_client_script, through, project, origin=EVIL) as node:
            stopped = await node.event("stopped")
            assert stopped["code"] == CloseCode.FORBIDDEN
            assert EVIL in stopped["reason"]
            assert "COLLAB_ALLOWED_ORIGINS" in stopped["reason"]
            later = await node.events_within(RECONNECT_WINDOW)
            assert relay.connections == 1
            assert connecting(node.seen + later) == 1, node.seen + later
        # A page of an allowed origin syncs through the same relay.
        port = address.split(":")[1]
        async with node_client(
            node_client_script, through, project, origin=f"http://localhost:{port}"
        ) as page:
            await page.wait_synced()


async def test_the_stock_client_reconnects_after_being_dropped_as_too_slow(
    database_url, node_client_script
):
    async with (
        running_server(database_url, send_queue_bytes=1024 * 1024) as address,
        relay_to(address) as (relay, through),
    ):
        project = await create_project(address)
        async with node_client(node_client_script, through, project) as node:
            await node.wait_synced()
            (writer,) = await synced_clients(address, project, 1)
            # The client's connection stops reading; the server's queue for it fills.
            relay.flowing.clear()
            meta = writer.doc.get(document.META, type=pycrdt.Map)
            for i in range(400):
                # Random text: the stock client's connection compresses (permessage-deflate),
                # and repeated letters would shrink to nothing.
                meta["blob"] = f"{i}:" + secrets.token_urlsafe(45_000)
                await asyncio.sleep(0.002)

            async def dropped() -> bool:
                try:
                    slow = 'collab_refused_messages_total{reason="slow_consumer"}'
                    return await metric(address, slow) == 1
                except AssertionError:  # not counted yet, so not exported yet
                    return False

            await eventually(dropped, 20, "the stalled client was not dropped")
            # It reads again within the 10 s the close frame waits for it.
            relay.flowing.set()
            closed = await node.event("closed")
            assert closed["code"] == CloseCode.TOO_SLOW_RECONNECT
            await node.wait_synced()
            assert relay.connections == 2
            assert not [e for e in node.seen if e["event"] == "stopped"]
            blob = str((await node.dump())["meta"]["blob"])
            assert blob.startswith("399:")
            await writer.disconnect()


async def test_the_stock_client_reconnects_after_a_restart(database_url, node_client_script):
    relay = Relay("")
    through = await relay.start()
    node: NodeClient | None = None
    try:
        async with running_server(database_url) as first:
            relay.upstream = first
            project = await create_project(first)
            node = await NodeClient.start(node_client_script, through, project)
            await node.wait_synced()
        # Leaving the block shut the server down the way SIGTERM does.
        closed = await node.event("closed")
        assert closed["code"] == CloseCode.SERVICE_RESTART
        async with running_server(database_url) as second:
            relay.upstream = second
            await node.wait_synced()
            assert relay.connections >= 2
            assert not [e for e in node.seen if e["event"] == "stopped"]
    finally:
        if node is not None:
            await node.stop()
        await relay.stop()
