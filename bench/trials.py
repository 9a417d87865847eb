"""What the trial benchmarks share: a server on a fresh database, a loop of seeded
trials with a deadline, and the summary line."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from bench.harness import fresh_database, postgres_server
from tests.convergence import SERVER_SETTINGS
from tests.serving import ServeProcess, log_alarms, serving


class Outcome(Protocol):
    @property
    def problem(self) -> str | None: ...

    def describe(self) -> str: ...


@asynccontextmanager
async def trial_server() -> AsyncIterator[ServeProcess]:
    """``collab serve`` (settings of tests/convergence.py) on a fresh database of an
    embedded PostgreSQL (or DATABASE_URL); its log in a temporary folder."""
    log = Path(tempfile.mkdtemp(prefix="collab-trials-")) / "serve.log"
    with postgres_server() as server_url:
        async with (
            fresh_database(server_url, migrated=True) as database_url,
            serving(database_url, log, **SERVER_SETTINGS) as server,
        ):
            yield server
    count, lines = log_alarms(log)
    print(f"server log: {log}; {count} lines with a traceback, an error or a 5xx")
    for line in lines[:5]:
        print(f"  {line}")


T = TypeVar("T", bound=Outcome)


async def run_trials(
    trials: int,
    first_seed: int,
    seconds: float,
    one: Callable[[int], Awaitable[T]],
) -> list[T]:
    """Trials of seeds ``first_seed``... one after another until ``trials`` ran or
    ``seconds`` passed; each failure is printed as it happens."""
    started = time.monotonic()
    done: list[T] = []
    for seed in range(first_seed, first_seed + trials):
        if time.monotonic() - started > seconds:
            print(f"stopped after {seconds:.0f} s", file=sys.stderr)
            break
        outcome = await one(seed)
        done.append(outcome)
        if outcome.problem is not None:
            print(f"FAILED {outcome.describe()}", flush=True)
        if len(done) % 50 == 0:
            failed = sum(1 for o in done if o.problem is not None)
            print(
                f"  {len(done)} trials, {failed} failed, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return done
