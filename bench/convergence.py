"""Convergence trials: seeded interleavings of edits, disconnects, reconnects and
server restarts, checked for convergence of every client, the room and the log.

    .venv/bin/python bench/convergence.py --trials 1000 [--first-seed 1] [--node]

Each trial is ``tests/convergence.py``'s (the CI test runs three): a new project on one
``collab serve`` process (restarted by the trials themselves, with SIGTERM and with
kill -9) on a fresh database of an embedded PostgreSQL (or DATABASE_URL); 3 pycrdt
clients (``--clients``), 30 steps (``--steps``), and with ``--node`` a stock Yjs client
in Node too. Prints each failing seed as it happens, then passed / failed counts and
the time taken; exits 1 when a trial failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import machine_line  # noqa: E402
from bench.trials import run_trials, trial_server  # noqa: E402
from tests.convergence import Trial, trial  # noqa: E402

NODE_CLIENT = ROOT / "tests" / "node" / "client.mjs"


async def _main(arguments: argparse.Namespace) -> int:
    node = NODE_CLIENT if arguments.node else None
    if node is not None and not (NODE_CLIENT.parent / "node_modules").is_dir():
        print("run `npm ci` in tests/node first (or run the Node tests once)")
        return 2
    async with trial_server() as server:
        started = time.monotonic()

        async def one(seed: int) -> Trial:
            return await trial(
                server, seed, clients=arguments.clients, steps=arguments.steps, node_script=node
            )

        done = await run_trials(arguments.trials, arguments.first_seed, arguments.seconds, one)
        elapsed = time.monotonic() - started
    failed = [t for t in done if t.problem is not None]
    print(
        f"{len(done)} trials (seeds {arguments.first_seed}-{arguments.first_seed + len(done) - 1}):"
        f" {len(done) - len(failed)} passed, {len(failed)} failed, in {elapsed:.0f} s"
        f" ({elapsed / max(1, len(done)):.2f} s per trial);"
        f" {sum(t.edits for t in done)} edits, {sum(t.restarts for t in done)} SIGTERM"
        f" restarts, {sum(t.kills for t in done)} kill -9 restarts"
    )
    for t in failed:
        print(f"  {t.describe()}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--node", action="store_true", help="a Node y-websocket client too")
    parser.add_argument("--seconds", type=float, default=7200.0, help="start no trial after")
    arguments = parser.parse_args()
    print(machine_line(f", convergence --trials {arguments.trials}"))
    sys.exit(asyncio.run(_main(arguments)))


if __name__ == "__main__":
    main()
