"""Seeded random interleavings of edits, disconnects, reconnects and server restarts.

A trial drives several real pycrdt clients (and, when asked, a stock Yjs client in Node)
on one project of a ``collab serve`` process, through a schedule drawn from its seed:
edits (made offline too, while a client is disconnected), short pauses that let frames
cross, disconnects, reconnects, graceful restarts (SIGTERM) and kill -9 restarts of the
server on the same database. At the end every client reconnects, and every client, the
server's room (``GET /api/projects/{id}/document``) and the log's replay must be equal.

A trial that fails says so with its seed and the schedule's last steps; the same seed
draws the same schedule (the timing of frames between steps is the machine's).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException

from music import document, schema
from tests.live import (
    NodeClient,
    YClient,
    create_project,
    invalid_edit,
    log_doc,
    random_edit,
    server_document,
)
from tests.serving import ServeProcess
from tests.support import timeout
from tests.yjs_values import state_vector

#: steps of a schedule and how often each is drawn
STEPS: dict[str, int] = {
    "edit": 24,
    "pause": 8,
    "disconnect": 4,
    "reconnect": 6,
    "node_edit": 3,
    "restart": 1,
    "kill": 1,
}
#: settings of the server under test: the projections take no part in what is checked,
#: and without their worker process a restart takes a third of the time
SERVER_SETTINGS = {"COLLAB_PROJECTIONS": "none", "COLLAB_ROOM_GRACE": "1"}


@dataclass
class Trial:
    seed: int
    steps: list[str] = field(default_factory=list)
    restarts: int = 0
    kills: int = 0
    edits: int = 0
    #: edits that wrote a value outside the document schema
    invalid: int = 0
    seconds: float = 0.0
    #: why the trial failed (None: everything converged)
    problem: str | None = None

    def describe(self) -> str:
        tail = ", ".join(self.steps[-12:])
        return f"seed {self.seed}: {self.problem} (last steps: {tail})"


async def _reconnect(client: YClient) -> None:
    await client.disconnect()
    await client.connect()


async def trial(
    server: ServeProcess,
    seed: int,
    *,
    clients: int = 3,
    steps: int = 30,
    node_script: Path | None = None,
    invalid: int = 0,
) -> Trial:
    """One seeded trial on a new project of ``server`` (left running afterwards);
    ``invalid`` is how often edits outside the document schema are drawn (as a weight
    against the other steps)."""
    result = Trial(seed)
    started = time.monotonic()
    project = await create_project(server.address, f"Convergence {seed}")
    run = _Run(
        random.Random(seed), server, [YClient(server.address, project) for _ in range(clients)]
    )
    try:
        for peer in run.peers:
            await peer.connect()
            await peer.wait_synced()
        if node_script is not None:
            run.node = await NodeClient.start(node_script, server.address, project)
            await run.node.wait_synced()
        drawn = {**STEPS, "invalid_edit": invalid}
        kinds = [k for k in drawn if run.node is not None or k != "node_edit"]
        weights = [drawn[k] for k in kinds]
        for _ in range(steps):
            await run.step(run.rng.choices(kinds, weights)[0], result)
        await settle(server, project, run.peers, run.node)
    except (AssertionError, TimeoutError, OSError, WebSocketException) as exc:
        result.problem = f"{type(exc).__name__}: {exc}"
    finally:
        for peer in run.peers:
            await peer.disconnect()
        if run.node is not None:
            await run.node.stop()
        result.seconds = time.monotonic() - started
    return result


@dataclass
class _Run:
    rng: random.Random
    server: ServeProcess
    peers: list[YClient]
    node: NodeClient | None = None

    async def step(self, step: str, result: Trial) -> None:
        rng, server = self.rng, self.server
        index = rng.randrange(len(self.peers))
        peer = self.peers[index]
        if step == "edit":
            count = rng.randint(1, 4)
            for _ in range(count):
                random_edit(rng, peer.doc, index)
            result.edits += count
            result.steps.append(f"edit {index} x{count}")
        elif step == "invalid_edit":
            invalid_edit(rng, peer.doc, index)
            result.invalid += 1
            result.steps.append(f"invalid edit {index}")
        elif step == "pause":
            # Part of the schedule, not a wait for a condition: lets frames cross.
            pause = rng.choice([0.0, 0.001, 0.01, 0.05])
            await asyncio.sleep(pause)
            result.steps.append(f"pause {pause}")
        elif step == "disconnect":
            await peer.disconnect()
            result.steps.append(f"disconnect {index}")
        elif step == "reconnect":
            await _reconnect(peer)  # no wait for the sync: edits may race it
            result.steps.append(f"reconnect {index}")
        elif step == "node_edit" and self.node is not None:
            count = rng.randint(1, 4)
            await self.node.edit(count, rng.randrange(2**31))
            result.edits += count
            result.steps.append(f"node edit x{count}")
        elif step == "restart":
            assert await server.stop() == 0, "the server did not stop cleanly on SIGTERM"
            await server.start()
            result.restarts += 1
            result.steps.append("restart")
        elif step == "kill":
            await server.kill()
            await server.start()
            result.kills += 1
            result.steps.append("kill -9 and restart")


async def settle(
    server: ServeProcess, project: str, peers: list[YClient], node: NodeClient | None
) -> None:
    """Every client reconnects; all of them, the room and the log's replay are equal."""
    for peer in peers:
        await _reconnect(peer)
        await peer.wait_synced(20)
    deadline = time.monotonic() + timeout(30)
    room: dict[str, Any] = {}
    while time.monotonic() < deadline:
        room = await server_document(server.address, project)
        dumps = [await node.dump()] if node is not None else []
        if all(p.json() == room for p in peers) and all(d == room for d in dumps):
            break
        await asyncio.sleep(0.05)
    else:
        differ = [i for i, p in enumerate(peers) if p.json() != room]
        if node is not None and await node.dump() != room:
            differ.append(-1)
        raise AssertionError(f"clients {differ} differ from the room after 30 s (-1: node)")
    replay = await log_doc(server.database_url, project)
    if document.to_json(replay) != room:
        raise AssertionError("the log's replay differs from the room")
    invalid = [
        p for root, spec in schema.DOCUMENT.items() for p in schema.problems(spec, room[root])
    ]
    if invalid:
        raise AssertionError(f"the document holds values outside the schema: {invalid[:5]}")
    expected = state_vector(replay.get_state())
    for index, peer in enumerate(peers):
        if state_vector(peer.doc.get_state()) != expected:
            raise AssertionError(f"client {index}'s state vector differs from the log's replay")
