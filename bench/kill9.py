"""kill -9 trials: the server is killed at a random moment while clients edit; every
update a client received as a broadcast must be in the log after the restart.

    .venv/bin/python bench/kill9.py --trials 100 [--first-seed 1]

Each trial is ``tests/kill9.py``'s (the CI test runs three): a new project on one
``collab serve`` process on a fresh database of an embedded PostgreSQL (or
DATABASE_URL); 3 editors editing without pause and 2 observers (``--editors``,
``--observers``); the kill comes 0.05-1.5 s into the editing. Prints each failing seed
as it happens, then passed / failed counts, broadcasts checked and the time taken;
exits 1 when a trial failed.
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
from tests.kill9 import KillTrial, kill_trial  # noqa: E402


async def _main(arguments: argparse.Namespace) -> int:
    async with trial_server() as server:
        started = time.monotonic()

        async def one(seed: int) -> KillTrial:
            return await kill_trial(
                server, seed, editors=arguments.editors, observers=arguments.observers
            )

        done = await run_trials(arguments.trials, arguments.first_seed, arguments.seconds, one)
        elapsed = time.monotonic() - started
    failed = [t for t in done if t.problem is not None]
    print(
        f"{len(done)} trials (seeds {arguments.first_seed}-{arguments.first_seed + len(done) - 1}):"
        f" {len(done) - len(failed)} passed, {len(failed)} failed, in {elapsed:.0f} s;"
        f" {sum(t.broadcasts for t in done)} broadcast updates checked against the log,"
        f" {sum(t.missing for t in done)} missing"
    )
    for t in failed:
        print(f"  {t.describe()}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--editors", type=int, default=3)
    parser.add_argument("--observers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3600.0, help="start no trial after")
    arguments = parser.parse_args()
    print(machine_line(f", kill9 --trials {arguments.trials}"))
    sys.exit(asyncio.run(_main(arguments)))


if __name__ == "__main__":
    main()
