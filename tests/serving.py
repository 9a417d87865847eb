"""``collab serve`` as a process of its own, for suites that stop, kill and restart it.

The server runs on a free loopback port of a database the caller owns, with its log
(JSON lines) appended to a file across restarts, so that a suite can read afterwards
everything every incarnation wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support import clean_env, free_port, timeout, wait_ready

COLLAB = [sys.executable, "-m", "collab.cli"]
#: lines of a log that say something went wrong inside the server
_ALARMS = (
    "Traceback",
    "Fatal Python error",
    '"exception"',
    '"level": "error"',
    '"level": "critical"',
)


class ServeProcess:
    """One ``collab serve`` on ``database_url``; start, stop (SIGTERM) or kill it, and
    start it again on the same port and database."""

    def __init__(self, database_url: str, log: Path, **settings: str) -> None:
        self.database_url = database_url
        self.log = log
        self.settings = settings
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = clean_env(
            **{"DATABASE_URL": self.database_url, "COLLAB_LOG_FORMAT": "json", **self.settings}
        )
        with self.log.open("ab") as sink:  # the child keeps its own descriptor
            return subprocess.Popen(
                [*COLLAB, "serve", "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )

    async def start(self, seconds: float = 60) -> None:
        """Start the server and wait until ``/ready`` answers 200."""
        if self.alive:
            raise AssertionError("the server is already running")
        self.process = self._spawn()
        await wait_ready(
            f"http://{self.address}",
            seconds=seconds,
            message=f"collab serve did not become ready on startup (log: {self.log})",
            process=self.process,
            interval=0.05,
        )

    async def stop(self, seconds: float = 60) -> int:
        """SIGTERM, and wait for the exit code."""
        process = self._running()
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, timeout(seconds))
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, timeout(seconds))
            raise AssertionError(
                f"collab serve did not stop within {seconds}s of SIGTERM"
            ) from None

    async def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        process = self._running()
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, timeout(30))

    def close(self) -> None:
        """Kill the server if it still runs (for ``finally``)."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout(30))

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError("the server is not running")
        return self.process


@contextlib.asynccontextmanager
async def serving(database_url: str, log: Path, **settings: str) -> AsyncIterator[ServeProcess]:
    """A started ``ServeProcess``, stopped at the end (killed if anything went wrong)."""
    server = ServeProcess(database_url, log, **settings)
    try:
        await server.start()
        yield server
        if server.alive:
            await server.stop()
    finally:
        server.close()


def log_alarms(log: Path, limit: int = 20) -> tuple[int, list[str]]:
    """Lines of a server log that show a traceback, an error or a 5xx answer: how many,
    and the first ``limit`` of them (shortened)."""
    count, shown = 0, list[str]()
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            alarm = any(word in line for word in _ALARMS)
            if not alarm and '"status": 5' in line:
                try:
                    alarm = int(json.loads(line).get("status", 0)) >= 500
                except ValueError:
                    alarm = True
            if alarm:
                count += 1
                if len(shown) < limit:
                    shown.append(line.strip()[:300])
    return count, shown
