"""Several nodes on one PostgreSQL and one real Redis: the cross-node fan-out.

Where a test must show that the fan-out (not the log) carried an update, its nodes
follow the log only once an hour (``follow_seconds=3600``): then nothing but Redis and
the rooms' own version checks can bring another node's edit within the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pycrdt

from collab.access.issuing import issue
from collab.access.tokens import TokenSettings
from collab.live import protocol
from collab.live.closecodes import CloseCode
from collab.live.protocol import AwarenessEntry
from music import document
from tests.live import (
    NodeClient,
    YClient,
    create_project,
    log_document,
    metric,
    random_edit,
    running_server,
    server_document,
    synced_clients,
)
from tests.redis_server import RedisServer
from tests.serving import ServeProcess
from tests.support import eventually

#: nodes that only hear of each other through Redis (and their own commits' versions)
FAN_OUT_ONLY = 3600.0


@contextlib.asynccontextmanager
async def _nodes(
    database_url: str, redis: RedisServer, count: int, **overrides: Any
) -> AsyncIterator[list[str]]:
    """``count`` servers on one database and one Redis: the nodes of a cluster."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                running_server(database_url, redis_url=redis.url, **overrides)
            )
            for _ in range(count)
        ]


def _meta(client: YClient) -> Any:
    return client.doc.get(document.META, type=pycrdt.Map)


async def _edit(address: str, project: str, fields: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post(
            f"/api/projects/{project}/edits",
            json={"operations": [{"op": "set_meta", "fields": fields}]},
        )
        assert response.status_code == 200, response.text


def _presence(client: YClient) -> dict[int, Any]:
    """The awareness states ``client`` was told of, the latest per client id."""
    states: dict[int, Any] = {}
    for frame in client.awareness:
        message = protocol.decode(frame)
        assert isinstance(message, protocol.AwarenessUpdate)
        for entry in message.entries:
            states[entry.client_id] = json.loads(entry.state_json)
    return {cid: state for cid, state in states.items() if state is not None}


async def test_a_listening_editor_on_one_node_sees_edits_made_through_another(
    database_url: str, redis_server: RedisServer
) -> None:
    """A passive client on node B gets node A's socket edits, HTTP edits and a
    rollback through Redis (the log is not followed), and B's room equals the log."""
    async with _nodes(database_url, redis_server, 2, follow_seconds=FAN_OUT_ONLY) as (
        node_a,
        node_b,
    ):
        project = await create_project(node_a)
        (listener,) = await synced_clients(node_b, project, 1)
        (writer,) = await synced_clients(node_a, project, 1)
        _meta(writer)["key"] = "G minor"
        await eventually(lambda: _meta(listener).get("key") == "G minor", 10, "socket edit")
        await _edit(node_a, project, {"tempo": 133})
        await eventually(lambda: _meta(listener).get("tempo") == 133.0, 10, "HTTP edit")
        async with httpx.AsyncClient(base_url=f"http://{node_a}") as http:
            # version 2: the project as created, before either edit
            response = await http.post(f"/api/projects/{project}/rollback", json={"version": 2})
            assert response.status_code == 200, response.text
        await eventually(lambda: "key" not in _meta(listener), 10, "rollback")
        assert await metric(node_b, 'collab_fanout_messages_total{direction="in"}') > 0
        assert await server_document(node_b, project) == await log_document(database_url, project)
        await listener.disconnect()
        await writer.disconnect()


async def test_editors_spread_over_three_nodes_converge_on_the_log(
    database_url: str, redis_server: RedisServer, node_client_script: Path
) -> None:
    """Seeded random edits from pycrdt clients on two nodes and a stock y-websocket
    client on one of them, a listener on a third: every client and every node ends
    equal to the log."""
    rng = random.Random(18)
    async with _nodes(database_url, redis_server, 3, follow_seconds=FAN_OUT_ONLY) as (
        node_a,
        node_b,
        node_c,
    ):
        nodes = [node_a, node_b, node_c]
        project = await create_project(node_a)
        # Node A only listens: with the log unfollowed, only the fan-out brings it edits.
        (listener,) = await synced_clients(node_a, project, 1)
        writers = [
            *await synced_clients(node_b, project, 2),
            *await synced_clients(node_c, project, 2),
        ]
        clients = [listener, *writers]
        browser = await NodeClient.start(node_client_script, node_c, project)
        try:
            await browser.wait_synced()
            for _ in range(20):
                for who, client in enumerate(writers):
                    random_edit(rng, client.doc, who)
                await asyncio.sleep(rng.uniform(0, 0.02))
            await browser.edit(30, seed=18)
            expected: dict[str, Any] = {}

            async def settled() -> bool:
                nonlocal expected
                expected = await log_document(database_url, project)
                return all(c.json() == expected for c in clients) and (
                    await browser.dump() == expected
                )

            deadline = asyncio.get_running_loop().time() + 30
            while not await settled():
                assert asyncio.get_running_loop().time() < deadline, "clients did not converge"
                await asyncio.sleep(0.2)
            for node in nodes:
                assert await server_document(node, project) == expected
        finally:
            await browser.stop()
            for client in clients:
                await client.disconnect()


async def test_presence_crosses_nodes_and_leaves_with_its_client(
    database_url: str, redis_server: RedisServer
) -> None:
    async with _nodes(database_url, redis_server, 2) as (
        node_a,
        node_b,
    ):
        project = await create_project(node_a)
        (here,) = await synced_clients(node_a, project, 1)
        (there,) = await synced_clients(node_b, project, 1)
        state = {"user": {"name": "Ada"}, "track": "drums"}
        await here.send_raw(protocol.encode_awareness([AwarenessEntry(77, 1, json.dumps(state))]))
        await eventually(lambda: _presence(there).get(77) == state, 10, "presence not relayed")
        # A client joining node B later is told at once (B asked A when its room loaded,
        # and keeps what it heard).
        (late,) = await synced_clients(node_b, project, 1)
        await eventually(lambda: _presence(late).get(77) == state, 10, "presence not told")
        await here.disconnect()
        await eventually(lambda: 77 not in _presence(there), 10, "presence not removed")
        await there.disconnect()
        await late.disconnect()


async def test_a_node_killed_loses_no_committed_edit_and_its_presence_goes(
    database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Node A (a process of its own) is SIGKILLed while a client writes through it: the
    client reconnects to node B with its document, nothing committed is lost, all
    converge on the log, and the killed node's clients' presence leaves B's room."""
    node_a = ServeProcess(
        database_url, tmp_path / "a.log", REDIS_URL=redis_server.url, COLLAB_ROOM_GRACE="0.5"
    )
    await node_a.start()
    try:
        async with running_server(database_url, redis_url=redis_server.url) as node_b:
            project = await create_project(node_b)
            (watcher,) = await synced_clients(node_b, project, 1)
            (writer,) = await synced_clients(node_a.address, project, 1)
            await writer.send_raw(
                protocol.encode_awareness([AwarenessEntry(91, 1, json.dumps({"u": "w"}))])
            )
            await eventually(lambda: 91 in _presence(watcher), 10, "presence not relayed")
            tracks = writer.doc.get(document.TRACKS, type=pycrdt.Map)
            for index in range(40):
                tracks[f"t{index}"] = pycrdt.Map({"name": f"t{index}"})
                await asyncio.sleep(0.005)
            await eventually(lambda: len(watcher.json()["tracks"]) >= 10, 10, "no edits seen")
            await node_a.kill()
            await eventually(lambda: 91 not in _presence(watcher), 15, "presence stayed")
            await writer.disconnect()
            moved = YClient(node_b, project, doc=writer.doc)
            await moved.connect()
            await moved.wait_synced()
            expected = {f"t{index}" for index in range(40)}

            async def converged() -> bool:
                logged = await log_document(database_url, project)
                return set(logged["tracks"]) == expected and watcher.json() == logged

            await eventually(converged, 20, "edits lost or not converged")
            await moved.disconnect()
            await watcher.disconnect()
    finally:
        node_a.close()


async def test_one_node_appends_a_project_s_updates_and_another_takes_over_when_it_dies(
    database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Writers on two nodes: the node that hosted the room first (its home) appends
    every update, the other forwards its clients' updates there and appends none of them
    itself; all converge on the log. The home is SIGKILLed in the middle of a burst of
    edits: the other node appends what the home did not answer and everything after
    itself, no editor is closed, and nothing is lost."""
    rng = random.Random(22)
    home = ServeProcess(database_url, tmp_path / "home.log", REDIS_URL=redis_server.url)
    await home.start()
    try:
        async with running_server(
            database_url, redis_url=redis_server.url, follow_seconds=FAN_OUT_ONLY
        ) as other:
            project = await create_project(home.address)
            at_home = await synced_clients(home.address, project, 2)
            elsewhere = await synced_clients(other, project, 2)
            forwarded = 'collab_forwarded_updates_total{direction="out"}'
            # the other node learns the home within its claim (or its next heartbeat)
            _meta(elsewhere[0])["probe"] = 0

            async def forwarding() -> bool:
                _meta(elsewhere[0])["probe"] = rng.random()
                return await metric(other, forwarded) > 0

            await eventually(forwarding, 10, "the other node does not forward", interval=0.2)
            appended = "collab_updates_committed_total"
            # what the other node appended itself before it knew the home
            before = await metric(other, appended)
            for _ in range(15):
                for who, client in enumerate([*at_home, *elsewhere]):
                    random_edit(rng, client.doc, who)
                await asyncio.sleep(rng.uniform(0, 0.02))
            clients = [*at_home, *elsewhere]

            async def converged(group: list[YClient]) -> bool:
                logged = await log_document(database_url, project)
                return all(client.json() == logged for client in group)

            await eventually(lambda: converged(clients), 30, "clients did not converge")
            sent = await metric(other, forwarded)
            assert sent >= 15  # every edit of its two clients after the probe
            assert (
                await metric(home.address, 'collab_forwarded_updates_total{direction="in"}') == sent
            )
            assert await metric(other, "collab_forward_fallbacks_total") == 0
            assert await metric(other, appended) == before

            # The home dies in the middle of a burst: what it had not answered, and
            # everything after, the other node appends itself.
            tracks = elsewhere[0].doc.get(document.TRACKS, type=pycrdt.Map)
            for index in range(40):
                tracks[f"after-{index}"] = pycrdt.Map({"name": f"after {index}"})
                if index == 10:
                    await home.kill()
                await asyncio.sleep(0.01)
            for client in at_home:
                await client.disconnect()

            async def all_stored() -> bool:
                logged = await log_document(database_url, project)
                names = {f"after-{index}" for index in range(40)}
                return names <= set(logged["tracks"]) and await converged(elsewhere)

            await eventually(all_stored, 30, "edits lost after the home died")
            assert await metric(other, appended) >= before + 29
            # nobody was told to come back later: the node took the updates over
            assert [client.close_code for client in elsewhere] == [None, None]
            for client in elsewhere:
                await client.disconnect()
    finally:
        home.close()


async def test_a_redis_outage_loses_nothing_and_the_fast_path_returns(
    database_url: str, redis_server: RedisServer
) -> None:
    """Redis stops mid-edit: each node keeps storing its clients' edits and the others
    get them through the log (followed every second), and the other node's presence
    leaves; Redis comes back on its port, the fan-out resumes by itself and the presence
    returns; everything converges on the log."""
    async with _nodes(database_url, redis_server, 2) as (
        node_a,
        node_b,
    ):
        project = await create_project(node_a)
        (on_a,) = await synced_clients(node_a, project, 1)
        (on_b,) = await synced_clients(node_b, project, 1)
        # a presence that is never renewed: only the nodes can bring it back
        await on_a.send_raw(protocol.encode_awareness([AwarenessEntry(55, 1, '{"u": "a"}')]))
        _meta(on_a)["before"] = 1
        await eventually(lambda: _meta(on_b).get("before") == 1, 10, "fan-out not working")
        await eventually(lambda: 55 in _presence(on_b), 10, "presence not relayed")
        redis_server.stop()
        _meta(on_a)["during_a"] = 1
        _meta(on_b)["during_b"] = 1
        await eventually(lambda: _meta(on_b).get("during_a") == 1, 15, "outage: A to B")
        await eventually(lambda: _meta(on_a).get("during_b") == 1, 15, "outage: B to A")
        for node in (node_a, node_b):
            assert await metric(node, "collab_fanout_connected") == 0
        # node A is not heard any more: its client's presence leaves node B's room
        await eventually(lambda: 55 not in _presence(on_b), 15, "presence outlived its node")
        redis_server.start()
        for node in (node_a, node_b):
            await eventually(
                lambda n=node: _metric_is(n, "collab_fanout_connected", 1),  # type: ignore[misc]
                20,
                "the fan-out did not reconnect",
                interval=0.1,
            )
        # node B asks again once it hears the others, rather than wait for a renewal
        await eventually(lambda: 55 in _presence(on_b), 10, "presence did not come back")
        received = await metric(node_b, 'collab_fanout_messages_total{direction="in"}')
        _meta(on_a)["after"] = 1
        await eventually(lambda: _meta(on_b).get("after") == 1, 10, "after the outage")
        # The update itself came through Redis again (heartbeats are not counted).
        await eventually(
            lambda: _metric_above(node_b, 'collab_fanout_messages_total{direction="in"}', received),
            10,
            "node B hears no update through Redis after it returned",
        )
        logged = await log_document(database_url, project)
        assert on_a.json() == logged == on_b.json()
        assert {"before", "during_a", "during_b", "after"} <= set(logged["meta"])
        await on_a.disconnect()
        await on_b.disconnect()


async def _metric_is(address: str, name: str, value: float) -> bool:
    return await metric(address, name) == value


async def _metric_above(address: str, name: str, value: float) -> bool:
    return await metric(address, name) > value


async def test_a_revocation_on_one_node_closes_the_member_s_socket_on_another(
    database_url: str, redis_server: RedisServer
) -> None:
    secret = b"c" * 32
    auth = TokenSettings(secret=secret)
    owner, editor = issue(secret, user="olivia"), issue(secret, user="eddie")
    async with _nodes(database_url, redis_server, 2, auth=auth) as (
        node_a,
        node_b,
    ):
        headers = {"Authorization": f"Bearer {owner}"}
        async with httpx.AsyncClient(base_url=f"http://{node_a}", headers=headers) as http:
            created = await http.post("/api/projects", json={"name": "Song"})
            assert created.status_code == 201, created.text
            project = created.json()["id"]
            granted = await http.post(
                f"/api/projects/{project}/members", json={"member": "eddie", "role": "editor"}
            )
            assert granted.status_code == 201, granted.text
            client = await YClient(node_b, project, token=editor).connect()
            await client.wait_synced()
            revoked = await http.delete(f"/api/projects/{project}/members/eddie")
            assert revoked.status_code == 200, revoked.text
        assert await client.wait_closed(10) == CloseCode.FORBIDDEN
        assert "revoked" in (client.close_reason or "")
