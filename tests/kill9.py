"""kill -9 at a random moment: no update any client saw as a broadcast is lost.

A trial opens a new project: editors edit without pause (each also receives the
others' broadcasts) and observers only watch. At a moment drawn from the seed the
server gets SIGKILL. Once every client has seen its connection drop (so every
broadcast that reached it is recorded), the server starts again on the same database,
and before any client reconnects the log must hold every update a client received as
a broadcast: applied to the log's replay, they change nothing. Then the clients
reconnect, and all of them, the room and the log's replay converge.

The server broadcasts an update only once it is committed; an update in flight when
the server died may be missing from the log, but then nobody saw it, and its editor
sends it again on reconnect (the convergence at the end checks that too).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pycrdt
from websockets.exceptions import WebSocketException

from music import document
from tests.convergence import settle
from tests.live import YClient, contains, create_project, log_doc, random_edit
from tests.serving import ServeProcess
from tests.support import eventually
from tests.yjs_values import state_vector

#: the longest stretch of editing before the kill, in seconds (drawn uniformly)
LONGEST_RUN = 1.5


@dataclass
class KillTrial:
    seed: int
    #: seconds of editing before the kill
    moment: float = 0.0
    #: broadcast updates the clients had received when the server died
    broadcasts: int = 0
    #: of those, how many brought items the log did not hold after the restart
    missing: int = 0
    seconds: float = 0.0
    problem: str | None = None

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.problem} (killed after {self.moment:.3f} s of editing,"
            f" {self.broadcasts} broadcasts received, {self.missing} missing from the log)"
        )


async def _edit(client: YClient, rng: random.Random, who: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        random_edit(rng, client.doc, who)
        await asyncio.sleep(rng.choice([0.0, 0.001, 0.005]))


async def _broadcasts_kept(
    server: ServeProcess, project: str, received: list[bytes], result: KillTrial
) -> None:
    log = await log_doc(server.database_url, project)
    if received and not contains(log, pycrdt.merge_updates(*received)):
        # How many brought items the log lacks (missing deletions are not counted).
        clone = document.copy_of(log)
        for update in received:
            before = state_vector(clone.get_state())
            clone.apply_update(update)
            result.missing += state_vector(clone.get_state()) != before
        raise AssertionError("an update a client received as a broadcast is not in the log")


async def kill_trial(
    server: ServeProcess, seed: int, *, editors: int = 3, observers: int = 2
) -> KillTrial:
    """One seeded trial on a new project of ``server`` (running again afterwards)."""
    rng = random.Random(seed)
    result = KillTrial(seed, moment=rng.uniform(0.05, LONGEST_RUN))
    started = time.monotonic()
    project = await create_project(server.address, f"Kill {seed}")
    clients = [YClient(server.address, project) for _ in range(editors + observers)]
    try:
        for client in clients:
            await client.connect()
            await client.wait_synced()
        stop = asyncio.Event()
        editing = [
            asyncio.create_task(_edit(c, random.Random(rng.random()), i, stop))
            for i, c in enumerate(clients[:editors])
        ]
        # The moment of the kill is part of the trial's schedule, drawn from its seed.
        await asyncio.sleep(result.moment)
        await server.kill()
        stop.set()
        await asyncio.gather(*editing)
        await eventually(
            lambda: all(c.close_code is not None for c in clients),
            10,
            "a client never saw the kill",
        )
        received = [update for c in clients for update in c.received]
        result.broadcasts = len(received)
        await server.start()
        await _broadcasts_kept(server, project, received, result)
        await settle(server, project, clients, None)
    except (AssertionError, TimeoutError, OSError, WebSocketException) as exc:
        result.problem = f"{type(exc).__name__}: {exc}"
    finally:
        for client in clients:
            await client.disconnect()
        if not server.alive:
            await server.start()
        result.seconds = time.monotonic() - started
    return result
