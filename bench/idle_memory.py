"""What an idle WebSocket connection costs the server in memory, measured by tracemalloc.

    .venv/bin/python bench/idle_memory.py [--clients 200] [--compression off,on]

The server runs in this process (tests.live.running_server, an embedded PostgreSQL); the
clients run in a child process (so their memory is not counted), each connecting with
``websockets``' defaults (which offer permessage-deflate, as browsers do) and sending an
empty sync step 1, then staying idle. Printed: KiB per idle connection (the traced
allocations after minus before, over the clients) and the files that hold the most.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import fresh_database, machine_line, postgres_server  # noqa: E402
from tests.live import create_project, running_server  # noqa: E402

CLIENTS = """
import asyncio, sys, websockets
async def main(url, n):
    conns = [await websockets.connect(url, max_size=None) for _ in range(n)]
    for ws in conns:
        await ws.send(b"\\x00\\x00\\x01\\x00")  # sync step 1, empty state vector
    print("connected", flush=True)
    await asyncio.sleep(600)  # killed by the parent long before
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def measure(database_url: str, clients: int, *, compression: bool) -> None:
    async with running_server(database_url, compression=compression) as address:
        project = await create_project(address, "idle")
        gc.collect()
        tracemalloc.start(4)
        before = tracemalloc.take_snapshot()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENTS,
            f"ws://{address}/ws/{project}",
            str(clients),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            await asyncio.wait_for(child.stdout.readline(), 120)
            await asyncio.sleep(2)  # the server answers every step 1
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            child.kill()
            await child.wait()
        tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    total = sum(d.size_diff for d in diff)
    print(
        f"compression {'on' if compression else 'off'}: {total / clients / 1024:.1f} KiB"
        f" per idle connection ({clients} clients)",
        flush=True,
    )
    for item in diff[:6]:
        name = item.traceback[0].filename.split("site-packages/")[-1]
        print(f"  {item.size_diff / clients / 1024:6.2f} KiB  {name}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--compression", default="off,on")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with postgres_server() as server:
        for mode in args.compression.split(","):
            async with fresh_database(server, migrated=True) as url:
                await measure(url, args.clients, compression=mode == "on")


if __name__ == "__main__":
    asyncio.run(main())
