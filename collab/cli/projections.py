"""``collab projections status | run | rebuild``: the read models as an operator sees
them. These commands drive ``collab.worker``, which sits above the services, and show
a rebuild's progress bar, so they live with the CLI rather than in a service."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

import typer

from collab import worker
from collab.cli.startup import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    DataDir,
    database_or_exit,
    settings_or_exit,
    with_store,
)
from collab.runtime.audit_key import KeyFileError, load_or_create
from collab.runtime.config import Settings, audit_settings, read_settings
from collab.runtime.database import Database
from collab.services.lookup import require_schema
from events.checkpoints import Signer
from events.errors import EventStoreError
from events.postgres import PostgresEventStore
from projections import quarantine, registry
from projections.progress import ProjectionProgress, ProjectionStatus
from projections.quarantine import Quarantined
from projections.runner import Projection, RebuildRunning, rebuild
from projections.sharded import Opener, RebuildFailed, fold_in_parallel


def _projections(store: PostgresEventStore, settings: Settings) -> list[Projection]:
    # Only the server signs checkpoints; a rebuild here checks the roots it passes.
    return registry.build(registry.Needs(store, state_every=settings.state_every))


def projections_status(data_dir: DataDir = None) -> None:
    """Position, lag and state of each projection."""
    settings = settings_or_exit(data_dir=data_dir)
    database = database_or_exit(settings)

    async def run(store: PostgresEventStore) -> tuple[list[ProjectionStatus], str | None]:
        await require_schema(store)
        statuses = await ProjectionProgress(store, registry.NAMES).status()
        return statuses, await store.leader(worker.LEAD)

    statuses, leader = with_store(database, run, "collab: cannot read projections")
    for status in statuses:
        line = f"{status.name}: position {status.position} of {status.head}, lag {status.lag}"
        line += f", {status.state}"
        if status.shares:
            line += f", {len(status.shares)} shares at {', '.join(map(str, status.shares))}"
        if status.error:
            line += f" ({status.failures} failures in a row, last: {status.error})"
        if status.quarantined:
            line += f", {status.quarantined} events quarantined"
        typer.echo(line)
        _echo_quarantined(status.quarantined, status.quarantined_events)
    typer.echo(_lead_line(leader))


def _lead_line(leader: str | None) -> str:
    """Which process folds the projections and seals the audit log (the others stand by)."""
    if leader is None:
        return "lead: nobody (no process folds the projections now)"
    here = f" {socket.gethostname()[:40]}:"
    return f"lead: {leader}" + (" (this machine)" if here in leader else "")


def _echo_quarantined(count: int, events: Sequence[Quarantined]) -> None:
    """The events a projection set aside, one line each (the newest few)."""
    if count > len(events):
        typer.echo(f"  (the newest {len(events)} of {count} quarantined events)")
    for event in events:
        typer.echo(
            f"  quarantined: position {event.position}, {event.event_type} in"
            f" {event.stream_id}: {event.reason}"
        )


def projections_run(
    nice: Annotated[
        int, typer.Option(min=0, max=19, help="Lower this process's CPU priority by this much")
    ] = 0,
    supervised: Annotated[  # noqa: FBT002 - typer reads options from the signature
        bool,
        typer.Option(
            hidden=True,
            help="Started by a server: the signing key comes on stdin, which closing stops us",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Fold the log into the read models until stopped (SIGTERM or Ctrl-C).

    For servers started with COLLAB_PROJECTIONS=none; several may run at once: one
    leads (folds and signs), the others stand by and take over when it dies. Signs
    audit checkpoints with COLLAB_AUDIT_KEY_FILE (default: the key file of the data
    dir), which must be the key of every node.
    """
    settings = settings_or_exit(data_dir=data_dir)
    os.nice(nice)
    if supervised:
        key = worker.read_key_line(sys.stdin.buffer.readline())
    else:
        key_file = audit_settings(settings).key_file
        assert key_file is not None  # noqa: S101 - the CLI always names one
        try:
            key = load_or_create(key_file)
        except KeyFileError as exc:
            typer.echo(f"collab: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIG) from None
    database = database_or_exit(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if supervised:
            worker.stop_when_stdin_closes(loop, stop)
        else:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await worker.run(
            database.url,
            poll_interval=settings.poll_interval,
            read=read_settings(settings),
            audit=audit_settings(settings),
            signer=Signer(key, audit_settings(settings).origin),
            stop=stop,
            share_opener=_share_opener(settings, database),
        )

    try:
        asyncio.run(run())
    except EventStoreError as exc:
        typer.echo(f"collab: projections stopped: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="Only this projection")] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes that fold the projects read model together, each a share of"
            " the projects (the other read models are folded by one)",
        ),
    ] = 1,
    data_dir: DataDir = None,
) -> None:
    """Empty the read models and fold the whole log again (from position 0)."""
    settings = settings_or_exit(data_dir=data_dir)
    database = database_or_exit(settings)
    opener = _share_opener(settings, database)

    async def run(store: PostgresEventStore) -> None:
        await require_schema(store)
        chosen = [p for p in _projections(store, settings) if name in (None, p.name)]
        if not chosen:
            raise typer.BadParameter(f"no projection named {name!r}", param_hint="NAME")
        if jobs > 1 and name not in (None, registry.SHAREABLE):
            # lineage links events across streams, audit_log chains the whole log
            raise typer.BadParameter(
                f"only {registry.SHAREABLE} can be folded by several processes",
                param_hint="--jobs",
            )
        for projection in chosen:
            if jobs > 1 and projection.name == registry.SHAREABLE:
                await _rebuild(
                    store,
                    projection,
                    functools.partial(
                        fold_in_parallel,
                        store,
                        projection,
                        opener,
                        jobs=jobs,
                        batch_size=settings.projection_batch,
                        rebuild=True,
                    ),
                    f" by {jobs} processes",
                )
            else:
                await _rebuild(
                    store,
                    projection,
                    functools.partial(rebuild, store, projection, settings.projection_batch),
                )

    try:
        with_store(database, run, "collab: rebuild failed")
    except (RebuildRunning, RebuildFailed) as exc:
        typer.echo(f"collab: rebuild failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _share_opener(settings: Settings, database: Database) -> Opener:
    """How a process of a parallel fold of ``projects`` opens its store and projection."""
    return functools.partial(
        worker.projects_share,
        database.url,
        read_settings(settings),
        settings.log_level,
        settings.log_format,
    )


async def _rebuild(
    store: PostgresEventStore,
    projection: Projection,
    fold: Callable[..., Awaitable[int]],
    how: str = "",
) -> None:
    started = time.perf_counter()
    head = await store.head_position()
    with typer.progressbar(length=head, label=f"rebuilding {projection.name}", file=None) as bar:
        shown = 0

        def advance(position: int) -> None:
            nonlocal shown
            bar.update(max(0, position - shown))
            shown = max(shown, position)

        folded = await fold(progress=advance)
    seconds = time.perf_counter() - started
    rate = folded / seconds if seconds > 0 else 0.0
    typer.echo(
        f"rebuilt {projection.name}: {folded} events folded up to position {shown}"
        f" in {seconds:.1f} s ({rate:,.0f} events/s){how}"
    )
    count, events = (await quarantine.listed(store.queries, [projection.name])).get(
        projection.name, (0, ())
    )
    if count:
        typer.echo(f"{projection.name}: {count} events quarantined (they cannot be folded)")
        _echo_quarantined(count, events)
