"""What an idle WebSocket connection, and an idle room, cost the server in memory.

    .venv/bin/python bench/idle_memory.py [--clients 200] [--compression off,on]
        [--rooms 200]

The server runs in this process (tests.live.running_server, an embedded PostgreSQL); the
clients run in a child process (so their memory is not counted), each connecting with
``websockets``' defaults (which offer permessage-deflate, as browsers do) and sending an
empty sync step 1, then staying idle.

* Connections: ``--clients`` clients in one room. Printed: KiB per idle connection (the
  traced allocations after minus before, over the clients) and the files that hold the
  most.
* Rooms (``--rooms N``): a room's document lives in pycrdt's Rust heap, which tracemalloc
  does not see, so rooms are measured by the resident memory of ``collab serve`` run as
  its own process (projections none): its growth with N idle clients in N rooms, less
  its growth with N idle clients in one room, over N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    collab_server,
    fresh_database,
    machine_line,
    postgres_server,
    resident_kib,
)
from tests.live import create_project, running_server  # noqa: E402

CLIENTS = """
import asyncio, sys, websockets
async def main(base, projects, n):
    conns = [await websockets.connect(f"{base}/{p}", max_size=None)
             for p in projects.split(",") for _ in range(n)]
    for ws in conns:
        await ws.send(b"\\x00\\x00\\x01\\x00")  # sync step 1, empty state vector
    print("connected", flush=True)
    await asyncio.sleep(600)  # killed by the parent long before
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@contextlib.asynccontextmanager
async def _idle_clients(address: str, projects: list[str], per_project: int) -> AsyncIterator[None]:
    """``per_project`` clients in each project's room, in a child process; inside, they
    have connected and the server has answered them, and sit idle."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENTS,
        f"ws://{address}/ws",
        ",".join(projects),
        str(per_project),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        await asyncio.wait_for(child.stdout.readline(), 300)
        await asyncio.sleep(2)  # the server answers every step 1
        yield
    finally:
        child.kill()
        await child.wait()


async def _idle(
    address: str, projects: list[str], per_project: int
) -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]:
    """The traced allocations before the clients connect and once they are idle."""
    gc.collect()
    tracemalloc.start(4)
    before = tracemalloc.take_snapshot()
    try:
        async with _idle_clients(address, projects, per_project):
            gc.collect()
            after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return before, after


async def connections(database_url: str, clients: int, *, compression: bool) -> None:
    """Prints the KiB per idle connection (traced) and who holds the most."""
    async with running_server(database_url, compression=compression) as address:
        project = await create_project(address, "idle")
        before, after = await _idle(address, [project], clients)
    diff = after.compare_to(before, "filename")
    traced = sum(d.size_diff for d in diff) / clients / 1024
    print(
        f"compression {'on' if compression else 'off'}: {traced:.1f} KiB per idle connection"
        f" ({clients} clients)",
        flush=True,
    )
    for item in diff[:6]:
        name = item.traceback[0].filename.split("site-packages/")[-1]
        print(f"  {item.size_diff / clients / 1024:6.2f} KiB  {name}", flush=True)


async def _resident_growth(server_url: str, rooms: int, per_room: int) -> float:
    """KiB the resident memory of ``collab serve`` (its own process, a fresh database)
    grows by while ``per_room`` idle clients sit in each of ``rooms`` rooms."""
    async with (
        fresh_database(server_url, migrated=True) as url,
        collab_server(url, COLLAB_PROJECTIONS="none") as (base, process),
    ):
        address = base.removeprefix("http://")
        projects = [await create_project(address, f"idle {i}") for i in range(rooms)]
        await asyncio.sleep(1)
        before = resident_kib(process.pid)
        async with _idle_clients(address, projects, per_room):
            return resident_kib(process.pid) - before


async def rooms(server_url: str, count: int) -> None:
    """Resident memory of ``count`` idle rooms with a client each, less that of as many
    idle clients in one room: what a room costs beyond its connection."""
    one_room = await _resident_growth(server_url, 1, count) / count
    own_rooms = await _resident_growth(server_url, count, 1) / count
    print(
        f"resident, {count} clients: {one_room:.1f} KiB per idle connection in one room;"
        f" {own_rooms:.1f} KiB per idle room with its client: {own_rooms - one_room:.1f} KiB"
        " per idle room",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--compression", default="off,on")
    parser.add_argument("--rooms", type=int, default=0, help="also N idle rooms, one client each")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with postgres_server() as server:
        for mode in args.compression.split(","):
            async with fresh_database(server, migrated=True) as url:
                await connections(url, args.clients, compression=mode == "on")
        if args.rooms:
            await rooms(server, args.rooms)


if __name__ == "__main__":
    asyncio.run(main())
