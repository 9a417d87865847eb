"""Where the projections run: a worker process the server supervises (the default),
the server's own event loop (``inline``), or elsewhere (``none``: a
``collab projections run`` on another machine, say).

Folding shares nothing with the live path but the database, and it is the heavier
of the two: in the server's event loop it took a third of the CPU and its batches
held the loop long enough to triple the live path's p99 (docs/benchmarks.md). The
worker folds in a process of its own at a lower CPU priority (``nice``), so under
load the kernel runs the live path first and the read models lag instead. Readers
learn the worker's progress from the database (:mod:`projections.progress`).

The worker gets the audit signing key on its standard input and stops when that
closes: when the server stops it, or dies without a word.

One process per cluster folds and seals: the one holding the lead (:data:`LEAD`, an
advisory lock in the database, ``EventStore.leadership``). Every other worker stands
by, asking again every ``leader_retry`` seconds, and takes over when the leader's
database connection ends. Two folds at once would be safe for the read models (each
batch moves its checkpoint only from where it started, under the row's lock), but the
audit log must be one log, signed by one process at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from collab.runtime import logging as collab_logging
from collab.runtime.config import AuditSettings, ReadSettings
from events.checkpoints import Signer
from events.errors import EventStoreError
from events.postgres import PostgresEventStore
from events.store import Leadership
from projections import registry
from projections.audit_log import AuditLogProjection
from projections.registry import Needs
from projections.runner import ParallelFold, Projection, ProjectionRunner, Store
from projections.sharded import Opener, fold_in_parallel

log = structlog.get_logger("collab.worker")

#: a worker that lived this long had started fine: restart it without delay
_STABLE_SECONDS: Final = 60.0

#: the lead every process folding the projections (and sealing the audit log) asks for
LEAD: Final = "collab.projections"


def holder(pid: int | None = None) -> str:
    """How the process ``pid`` of this machine (this process by default) is named while
    it holds :data:`LEAD` (``EventStore.leader``; ``application_name`` in
    ``pg_stat_activity``)."""
    return f"collab-projections {socket.gethostname()[:40]}:{pid or os.getpid()}"


@asynccontextmanager
async def projects_share(
    database_url: str, read: ReadSettings, log_level: str, log_format: collab_logging.Format
) -> AsyncIterator[tuple[Store, Projection]]:
    """The store and projection (:data:`projections.registry.SHAREABLE`) of one process
    of a parallel fold (:mod:`projections.sharded`)."""
    collab_logging.configure(log_level, log_format)
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=2)
    try:
        model = registry.read_model(registry.SHAREABLE)
        yield store, model.build(Needs(store, state_every=read.state_every))
    finally:
        await store.close()


@asynccontextmanager
async def leading(
    store: PostgresEventStore,
    read: ReadSettings,
    audit: AuditSettings,
    signer: Signer,
    share_opener: Opener | None = None,
) -> AsyncIterator[None]:
    """While inside: fold (:func:`folding`) whenever this process holds :data:`LEAD`,
    stand by otherwise."""
    task = asyncio.create_task(
        _lead(store, read, audit, signer, share_opener), name="projections-lead"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _lead(
    store: PostgresEventStore,
    read: ReadSettings,
    audit: AuditSettings,
    signer: Signer,
    share_opener: Opener | None,
) -> None:
    claim = store.leadership(LEAD, holder=holder(), check_every=read.leader_retry)
    try:
        while True:
            await _stand_by(claim, store, read.leader_retry)
            log.info(
                "leading: folding the projections and sealing the audit log",
                holder=claim.holder,
                key_id=signer.key_id,
            )
            try:
                async with folding(store, read, audit, signer, share_opener) as runner:
                    await claim.lost()
                    # Another process may lead already: stop at once and leave the
                    # checkpoint rows to it.
                    await runner.stop(mark_stopped=False)
            except Exception:
                # Whatever broke, a process that neither folds nor lets another lead
                # would stall the cluster's read models: give the lead up.
                log.exception("leading failed; giving the lead up")
                await claim.close()
                await asyncio.sleep(read.leader_retry)
                continue
            log.warning("lost the lead (its database connection ended); standing by")
    finally:
        await claim.close()


async def _stand_by(claim: Leadership, store: PostgresEventStore, retry: float) -> None:
    """Ask for the lead every ``retry`` seconds until this process holds it."""
    told = ""
    while True:
        try:
            if await claim.try_acquire():
                return
            leader = await store.leader(LEAD)
            news = f"leader {leader}"
            if news != told:
                log.info("standby: another worker leads", leader=leader)
        except EventStoreError as exc:
            news = "unavailable"
            if news != told:
                log.warning("standby: cannot ask for the lead; will retry", error=str(exc))
        told = news
        await asyncio.sleep(retry)


@asynccontextmanager
async def folding(
    store: PostgresEventStore,
    read: ReadSettings,
    audit: AuditSettings,
    signer: Signer,
    share_opener: Opener | None = None,
) -> AsyncIterator[ProjectionRunner]:
    """Run every projection, and the sealing of a quiet audit log, in this event loop.

    With ``share_opener`` and ``read.projection_jobs`` > 1, the shareable read model
    (``projects``) catches up from far behind by that many processes
    (:mod:`projections.sharded`).
    """
    projections = registry.build(
        Needs(
            store,
            state_every=read.state_every,
            signer=signer,
            checkpoint_every=audit.checkpoint_every,
            checkpoint_seconds=audit.checkpoint_seconds,
        )
    )
    # Sealing a quiet log is the worker's: it runs between batches, not in a fold.
    audit_projection = next(p for p in projections if isinstance(p, AuditLogProjection))
    parallel: dict[str, ParallelFold] = {}
    if share_opener is not None and read.projection_jobs > 1:
        parallel[registry.SHAREABLE] = functools.partial(
            fold_in_parallel,
            store,
            next(p for p in projections if p.name == registry.SHAREABLE),
            share_opener,
            jobs=read.projection_jobs,
            batch_size=read.projection_batch,
            rebuild=False,
        )
    runner = ProjectionRunner(
        store, projections, batch_size=read.projection_batch, parallel=parallel
    )
    runner.start()
    sealing = asyncio.create_task(
        _seal_quiet_log(audit_projection, store, audit.checkpoint_seconds), name="audit-sealing"
    )
    try:
        yield runner
    finally:
        sealing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sealing
        await runner.stop()


async def _seal_quiet_log(
    audit_projection: AuditLogProjection, store: PostgresEventStore, every: float
) -> None:
    """Checkpoint events that arrived after the last batch was sealed, once they are old
    enough (a busy log gets checkpoints from the projection itself)."""
    while True:
        await asyncio.sleep(max(0.05, every / 4))
        try:
            await audit_projection.seal_due(store)
        except EventStoreError as exc:
            log.warning("audit sealing failed; will retry", error=str(exc))


async def run(
    database_url: str,
    *,
    poll_interval: float,
    read: ReadSettings,
    audit: AuditSettings,
    signer: Signer,
    stop: asyncio.Event,
    share_opener: Opener | None = None,
) -> None:
    """The worker's life: migrate (as any process on the database may), fold until
    ``stop`` is set."""
    store = await PostgresEventStore.connect(
        database_url,
        min_size=1,
        max_size=4,
        poll_interval=poll_interval,
        # Every projection reads the same batches: decoded once, for all of them.
        read_cache=2 * read.projection_batch,
    )
    try:
        await store.migrate()
        async with leading(store, read, audit, signer, share_opener):
            log.info(
                "projections worker started", projections=list(registry.NAMES), pid=os.getpid()
            )
            await stop.wait()
    finally:
        await store.close()
    log.info("projections stopped")


def key_line(key: Ed25519PrivateKey) -> bytes:
    """The signing key as the worker reads it from its standard input."""
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex().encode() + b"\n"


def read_key_line(line: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(line.decode().strip()))


def stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` once standard input reaches its end (the supervisor closed it or
    died). Interrupts from a terminal are left to the supervisor, which reaches every
    process of the group first and then closes the pipe."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


class ProjectionWorker:
    """Runs ``collab projections run --supervised`` and restarts it when it exits."""

    def __init__(
        self,
        database_url: str,
        *,
        poll_interval: float,
        read: ReadSettings,
        audit: AuditSettings,
        key: Ed25519PrivateKey,
    ) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "collab.cli",
            "projections",
            "run",
            "--supervised",
            "--nice",
            str(read.projection_nice),
        ]
        self._env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "COLLAB_POLL_INTERVAL": repr(poll_interval),
            "COLLAB_STATE_EVERY": str(read.state_every),
            "COLLAB_PROJECTION_BATCH": str(read.projection_batch),
            "COLLAB_PROJECTION_JOBS": str(read.projection_jobs),
            "COLLAB_LEADER_RETRY": repr(read.leader_retry),
            "COLLAB_CHECKPOINT_EVERY": str(audit.checkpoint_every),
            "COLLAB_CHECKPOINT_SECONDS": repr(audit.checkpoint_seconds),
            **({"COLLAB_AUDIT_ORIGIN": audit.origin} if audit.origin else {}),
        }
        self._key = key_line(key)
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        #: exit status of the last worker that ended, while none runs
        self.exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    async def start(self) -> None:
        """Start the worker; it is restarted (with a growing delay) whenever it exits."""
        first = await self._spawn()
        self._task = asyncio.create_task(self._supervise(first), name="projection-worker")

    async def _spawn(self) -> asyncio.subprocess.Process | None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.PIPE, env=self._env
            )
        except OSError as exc:
            log.exception("cannot start the projection worker", error=str(exc))
            return None
        assert process.stdin is not None  # noqa: S101 - asked for a pipe
        process.stdin.write(self._key)
        self._process, self.exit_code = process, None
        log.info("projection worker started", pid=process.pid)
        return process

    async def _supervise(self, process: asyncio.subprocess.Process | None) -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            if process is not None:
                self.exit_code = await process.wait()
                self._process = None
                if time.monotonic() - started > _STABLE_SECONDS:
                    delay = 0.5
                log.error(
                    "projection worker exited; restarting it",
                    exit_code=self.exit_code,
                    in_seconds=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            process = await self._spawn()

    async def stop(self, grace: float = 15.0) -> None:
        """Close the worker's input (it finishes its batch and exits); kill it if it is
        still there after ``grace`` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None  # noqa: S101 - asked for a pipe
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("projection worker did not stop; killing it", pid=process.pid)
            process.kill()
            await process.wait()
