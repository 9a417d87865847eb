"""The deployment of compose.yaml without Docker: two ``collab serve`` processes on one
PostgreSQL and one Redis, behind deploy/nginx.conf in a real nginx, and a stock
y-websocket editor connected through the balancer.

Its node is SIGKILLed mid-edit: the provider reconnects through the balancer, which
sends it to the other node; nothing it wrote is lost, and an editor on the surviving
node, the editor itself and the log end equal.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.balancing import nginx_in_front
from tests.live import NodeClient, YClient, log_document, metric
from tests.redis_server import RedisServer
from tests.serving import ServeProcess
from tests.support import eventually


async def test_an_editor_behind_the_balancer_survives_its_node_killed(
    database_url: str, redis_server: RedisServer, node_client_script: Path, tmp_path: Path
) -> None:
    nodes = {
        name: ServeProcess(database_url, tmp_path / f"{name}.log", REDIS_URL=redis_server.url)
        for name in ("node1", "node2")
    }
    editor: NodeClient | None = None
    watchers: dict[str, YClient] = {}
    try:
        for node in nodes.values():
            await node.start()
        ports = {name: node.port for name, node in nodes.items()}
        with nginx_in_front(tmp_path, ports) as listen:
            balancer = f"127.0.0.1:{listen}"
            async with httpx.AsyncClient(base_url=f"http://{balancer}") as http:
                created = await http.post("/api/projects", json={"name": "Through nginx"})
                assert created.status_code == 201, created.text
                project = created.json()["id"]
            for name, node in nodes.items():
                watchers[name] = YClient(node.address, project)
                await watchers[name].connect()
                await watchers[name].wait_synced()
            editor = await NodeClient.start(node_client_script, balancer, project)
            await editor.wait_synced()
            # The editor's node holds two sockets (it and its watcher), the other one.
            counts = {
                n: await metric(node.address, "collab_connections") for n, node in nodes.items()
            }
            home = max(counts, key=lambda n: counts[n])
            survivor = next(n for n in nodes if n != home)
            assert counts == {home: 2, survivor: 1}, counts

            await editor.edit(20, seed=5)
            await nodes[home].kill()
            await editor.event("synced", seconds=30)  # reconnected, through the balancer
            assert await metric(nodes[survivor].address, "collab_connections") == 2
            await editor.edit(20, seed=6)

            async def converged() -> bool:
                assert editor is not None
                logged = await log_document(database_url, project)
                return await editor.dump() == logged and watchers[survivor].json() == logged

            await eventually(converged, 30, "the editor, the survivor and the log differ")
            logged = await log_document(database_url, project)
            assert len(logged["tracks"]) > 0
    finally:
        if editor is not None:
            await editor.stop()
        for watcher in watchers.values():
            await watcher.disconnect()
        for node in nodes.values():
            node.close()
