"""A watch over the embedded PostgreSQL: when it dies, start it again.

In embedded mode the server owns its database. If PostgreSQL dies under it (killed,
out of memory, a crash), the server restarts it in place, through pgserver as at
start-up, with a growing delay between failed attempts, and says so in the log and in
``/ready``. It does not exit instead: PostgreSQL recovers its own data on start (the
log is write-ahead), the new server listens on the same socket (pgserver derives it
from the data dir), and the store, the live path and the projection worker reconnect
by themselves, so a restart in place loses nothing a restart of the whole server would
keep, and keeps the clients' connections.

A frozen PostgreSQL (stopped, not dead) is left alone: it may come back, and the
store's timeouts answer for it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

import psutil
import structlog

log = structlog.get_logger("collab.runtime.supervisor")

#: seconds between two looks at the postmaster (reading /proc: cheap)
WATCH_INTERVAL: Final = 1.0
#: seconds before the first retry of a failed start; doubled each time, up to the max
FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 30.0


class EmbeddedSupervisor:
    """Restarts the PostgreSQL of a pgserver handle whenever its postmaster is gone."""

    def __init__(self, server: Any, *, interval: float = WATCH_INTERVAL) -> None:
        #: the pgserver ``PostgresServer`` (kept referenced: it also stops PostgreSQL
        #: when the last process using it exits)
        self._server = server
        self._interval = interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: restarts done since the server started
        self.restarts = 0
        #: how many starts failed in a row since PostgreSQL was found dead, and why
        self.attempts = 0
        self.last_error: str | None = None
        self._down_since: float | None = None

    @property
    def running(self) -> bool:
        """PostgreSQL was up when last looked at (a restart may be under way)."""
        return self._down_since is None

    @property
    def pid(self) -> int | None:
        info = self._server._postmaster_info  # pgserver keeps it there (no accessor allows None)
        return int(info.pid) if info is not None else None

    def describe(self) -> str:
        """Why the database is down, for ``/ready``."""
        text = "embedded database stopped; restarting it"
        if self.attempts:
            text += f" ({self.attempts} failed attempts, last: {self.last_error})"
        return text

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="embedded-database-watch")

    async def stop(self) -> None:
        """Stop watching. A start under way is waited for (pg_ctl gives up after 10 s):
        pgserver's lock does not keep two threads of one process apart, and stopping
        PostgreSQL at exit must not run beside it."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            if not _alive(self._server):
                await self._revive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _revive(self) -> None:
        self._down_since = time.monotonic()
        self.attempts = 0
        log.error(
            "embedded postgresql is not running; restarting it",
            pid=self.pid,
            pgdata=str(self._server.pgdata),
        )
        delay = FIRST_DELAY
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(_start, self._server)
            except Exception as exc:  # any failure to start is logged and retried
                self.attempts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception(
                    "embedded postgresql did not start; retrying",
                    attempt=self.attempts,
                    in_seconds=delay,
                    error=self.last_error,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            self.restarts += 1
            log.warning(
                "embedded postgresql restarted",
                pid=self.pid,
                restarts=self.restarts,
                down_seconds=round(time.monotonic() - self._down_since, 3),
            )
            self._down_since, self.attempts, self.last_error = None, 0, None
            return


def _alive(server: Any) -> bool:
    """The postmaster pgserver started (or joined) still runs."""
    info = server._postmaster_info  # pgserver keeps it there (no accessor allows None)
    process: psutil.Process | None = info.process if info is not None else None
    if process is None:
        return False
    try:
        # A killed postmaster stays a zombie until its parent (init) reaps it.
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _start(server: Any) -> None:
    """Start PostgreSQL as pgserver does at first (under its lock, which keeps other
    processes from starting or stopping it meanwhile); it records the new postmaster,
    which the last process to exit then stops. A postmaster found running is joined."""
    with server._lock:  # pgserver's inter-process lock
        server.ensure_postgres_running()
    if not _alive(server):
        # pgserver takes a killed postmaster that is not reaped yet for a live one
        raise RuntimeError(f"postmaster {server._postmaster_info.pid} is not running yet")
