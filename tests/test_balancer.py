"""deploy/nginx.conf in a real nginx, in front of two small HTTP servers that say which
node they are: one project's socket and API calls reach one node, different projects
spread over both, and a dead node's projects go to the other.

The servers stand in for two ``collab serve``: what is tested is where nginx sends a
request, and a node that names itself in every answer shows it directly.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.balancing import await_answer, nginx_in_front, stop
from tests.support import free_port, timeout

#: answers every GET and POST with its node name and the request it received
NODE = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port = sys.argv[1], int(sys.argv[2])

class Node(BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({
            "node": name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Node).serve_forever()
"""


class Balancer:
    def __init__(self, port: int, nodes: dict[str, subprocess.Popen[bytes]]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.nodes = nodes
        self.client = httpx.Client(base_url=self.url, timeout=timeout(10))

    def node(self, path: str, method: str = "GET", **headers: str) -> str:
        response = self.client.request(method, path, headers=headers, content=b"{}")
        assert response.status_code == 200, response.text
        return str(response.json()["node"])


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    ports = {"node1": free_port(), "node2": free_port()}
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, port in ports.items():
            nodes[name] = subprocess.Popen([sys.executable, "-c", NODE, name, str(port)])
        for name, port in ports.items():
            await_answer(f"http://127.0.0.1:{port}/", nodes[name], name)
        with nginx_in_front(tmp_path, ports) as listen:
            balancer = Balancer(listen, nodes)
            with contextlib.closing(balancer.client):
                yield balancer
    finally:
        for process in nodes.values():
            stop(process)


def test_one_project_stays_on_one_node_and_projects_spread(balancer):
    projects = [str(uuid.uuid4()) for _ in range(40)]
    home = {}
    for project in projects:
        reached = {
            balancer.node(f"/ws/{project}?token=t"),
            balancer.node(f"/ws/{project}", Upgrade="websocket", Connection="Upgrade"),
            balancer.node(f"/api/projects/{project}"),
            balancer.node(f"/api/projects/{project}/document"),
            balancer.node(f"/api/projects/{project}/history?group=actor"),
            balancer.node(f"/api/projects/{project}/edits", "POST"),
        }
        assert len(reached) == 1, f"project {project} reached {reached}"
        home[project] = reached.pop()
        # and again: the choice does not drift
        assert balancer.node(f"/ws/{project}") == home[project]
    counts = {node: list(home.values()).count(node) for node in ("node1", "node2")}
    # 40 ids on two nodes: both get a share (all on one would take a broken hash)
    assert min(counts.values()) >= 5, counts


def test_the_socket_upgrade_and_the_callers_host_reach_the_node(balancer):
    response = balancer.client.get(
        f"/ws/{uuid.uuid4()}",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Host": "music.example"},
    )
    seen = response.json()
    assert seen["headers"]["upgrade"] == "websocket"
    assert seen["headers"]["connection"] == "upgrade"
    assert seen["headers"]["host"] == "music.example"
    assert seen["headers"]["x-request-id"]
    assert seen["path"].startswith("/ws/")
    # a plain request does not ask the node to upgrade
    plain = balancer.client.get("/health").json()
    assert plain["headers"]["connection"] == "close"
    assert "upgrade" not in plain["headers"]


def test_a_dead_nodes_projects_go_to_the_other(balancer):
    projects = [str(uuid.uuid4()) for _ in range(20)]
    home = {p: balancer.node(f"/api/projects/{p}/document") for p in projects}
    stopped = home[projects[0]]
    other = "node2" if stopped == "node1" else "node1"
    stop(balancer.nodes[stopped])
    for project in projects:
        # reads and edits alike: a refused connection means the node never saw the edit
        assert balancer.node(f"/api/projects/{project}/document") == other
        assert balancer.node(f"/api/projects/{project}/edits", "POST") == other
        assert balancer.node(f"/ws/{project}") == other
