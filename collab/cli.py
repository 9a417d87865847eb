"""The ``collab`` command: serve, migrate, audit verify, projections status|rebuild.

Every command reads the same settings (flags, then ``COLLAB_*`` / ``DATABASE_URL``
environment variables, then defaults), so ``COLLAB_DATA_DIR=D collab audit verify``
checks the embedded database of data dir D, also while a server runs on it.

Exit codes: 0 success; 1 verification found a broken link; 2 invalid settings or
usage; 3 the database could not be reached or migrated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
import typer

from collab import logging as collab_logging
from collab.config import ConfigError, Settings, live_settings, load_settings, read_settings
from collab.database import Database, resolve
from events.errors import EventStoreError
from events.postgres import PostgresEventStore, VerifyReport
from projections.projects import ProjectsProjection
from projections.runner import CheckpointMoved, Projection, apply_batch, load_checkpoint, reset

EXIT_BROKEN = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3

app = typer.Typer(
    help="Event-sourced collaboration server for music projects.",
    no_args_is_help=True,
    add_completion=False,
)
audit_app = typer.Typer(help="Integrity checks of the event log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
projections_app = typer.Typer(
    help="Read models folded from the log: status and rebuild.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")

log = structlog.get_logger("collab.cli")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder of the embedded database [env COLLAB_DATA_DIR]"),
]


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"collab: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    collab_logging.configure(settings.log_level, settings.log_format)
    return settings


def _database(settings: Settings) -> Database:
    try:
        return resolve(settings.database_url, settings.data_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to start PostgreSQL ends here
        typer.echo(f"collab: cannot start the embedded database: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


T = TypeVar("T")


def _with_store(
    database: Database, work: Callable[[PostgresEventStore], Awaitable[T]], prefix: str
) -> T:
    """Run ``work`` with a small store; store errors end the command with exit code 3."""

    async def run() -> T:
        store = await PostgresEventStore.connect(database.url, min_size=1, max_size=2)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except EventStoreError as exc:
        typer.echo(f"{prefix}: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


async def _require_schema(store: PostgresEventStore) -> None:
    status = await store.migration_status()
    if not status.current:
        raise EventStoreError(f"schema not migrated (pending {list(status.pending)})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env COLLAB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env COLLAB_PORT]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the server (embedded PostgreSQL unless DATABASE_URL is set)."""
    from collab.app import create_app  # noqa: PLC0415 - only serve needs the app
    from collab.server import Server, build_config  # noqa: PLC0415

    settings = _settings(host=host, port=port, data_dir=data_dir)
    database = _database(settings)
    application = create_app(
        database.url,
        pool_size=settings.db_pool_size,
        poll_interval=settings.poll_interval,
        live=live_settings(settings),
        read=read_settings(settings),
    )
    config = build_config(
        application,
        host=settings.host,
        port=settings.port,
        max_message_bytes=settings.max_message_bytes,
        ping_interval=settings.ws_ping_interval,
    )
    server = Server(config)
    log.info("serving", host=settings.host, port=settings.port, embedded=database.embedded)
    server.run()
    if not server.started:
        # Startup failed (database unreachable, migration error): the log says why.
        raise typer.Exit(EXIT_UNAVAILABLE)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply pending migrations and exit."""
    settings = _settings(data_dir=data_dir)
    database = _database(settings)

    async def run(store: PostgresEventStore) -> list[int]:
        return await store.migrate()

    applied = _with_store(database, run, "collab")
    typer.echo(f"migrations applied: {applied}" if applied else "schema is up to date")


@audit_app.command("verify")
def audit_verify(
    project: Annotated[str | None, typer.Option(help="Verify only this project's stream")] = None,
    data_dir: DataDir = None,
) -> None:
    """Recompute every hash and link of the log; exit 1 at the first broken one."""
    settings = _settings(data_dir=data_dir)
    database = _database(settings)
    stream_id = f"project-{project}" if project else None

    async def run(store: PostgresEventStore) -> VerifyReport:
        await _require_schema(store)
        if stream_id is not None and await store.stream_version(stream_id) == 0:
            raise EventStoreError(f"no events for project {project!r} ({stream_id})")
        return await store.verify(stream_id)

    report = _with_store(database, run, "collab: cannot verify")
    scope = f"stream {stream_id}" if stream_id else "log"
    if report.ok:
        typer.echo(
            f"OK: {scope} verified: {report.events} events in {report.streams} streams,"
            f" last position {report.last_position}"
        )
        return
    typer.echo(f"BROKEN: {report.first_break}")
    typer.echo(f"checked {report.events} events before stopping", err=True)
    raise typer.Exit(EXIT_BROKEN)


def _projections(store: PostgresEventStore, settings: Settings) -> list[Projection]:
    return [ProjectsProjection(store, state_every=settings.state_every)]


@projections_app.command("status")
def projections_status(data_dir: DataDir = None) -> None:
    """Position and lag of each projection."""
    settings = _settings(data_dir=data_dir)
    database = _database(settings)

    async def run(store: PostgresEventStore) -> list[tuple[str, int, int]]:
        await _require_schema(store)
        head = await store.head_position()
        rows = []
        for projection in _projections(store, settings):
            async with store.transaction() as tx:
                rows.append((projection.name, await load_checkpoint(tx, projection.name), head))
        return rows

    for name, position, head in _with_store(database, run, "collab: cannot read projections"):
        typer.echo(f"{name}: position {position} of {head}, lag {head - position}")


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="Only this projection")] = None,
    data_dir: DataDir = None,
) -> None:
    """Empty the read models and fold the whole log again (from position 0)."""
    settings = _settings(data_dir=data_dir)
    database = _database(settings)

    async def run(store: PostgresEventStore) -> None:
        await _require_schema(store)
        chosen = [p for p in _projections(store, settings) if name in (None, p.name)]
        if not chosen:
            raise typer.BadParameter(f"no projection named {name!r}", param_hint="NAME")
        for projection in chosen:
            await _rebuild(store, projection, settings.projection_batch)

    _with_store(database, run, "collab: rebuild failed")


async def _rebuild(store: PostgresEventStore, projection: Projection, batch_size: int) -> None:
    started = time.perf_counter()
    await reset(store, projection)
    head = await store.head_position()
    position = folded = 0
    with typer.progressbar(length=head, label=f"rebuilding {projection.name}", file=None) as bar:
        while position < head:
            events = await store.read_all(position, min(batch_size, head - position))
            if not events:
                break
            try:
                await apply_batch(store, projection, events, position)
            except CheckpointMoved as exc:
                # A running server folded these meanwhile: carry on from where it got.
                bar.update(max(0, exc.stored - position))
                position = exc.stored
                continue
            folded += len(events)
            bar.update(events[-1].position - position)
            position = events[-1].position
    seconds = time.perf_counter() - started
    rate = folded / seconds if seconds > 0 else 0.0
    typer.echo(
        f"rebuilt {projection.name}: {folded} events folded up to position {position}"
        f" in {seconds:.1f} s ({rate:,.0f} events/s)"
    )


def main() -> None:
    app(prog_name="collab")


if __name__ == "__main__":  # pragma: no cover
    main()
