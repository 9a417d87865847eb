"""What every command does before its own work, and how it ends when it cannot: the
exit codes, settings loading, the data-dir and audit-key checks, the database and a
small store to run on it, the ``--data-dir`` option they share."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from collab.access.principal import Principal
from collab.runtime import logging as collab_logging
from collab.runtime.audit_key import KeyFileError, load_or_create
from collab.runtime.config import ConfigError, Settings, audit_settings, load_settings
from collab.runtime.database import Database, resolve
from collab.services.errors import ServiceError
from events.errors import EventStoreError
from events.postgres import PostgresEventStore

EXIT_BROKEN = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 4

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder of the embedded database [env COLLAB_DATA_DIR]"),
]

T = TypeVar("T")
#: who runs a command here: whoever may run the CLI on the data dir has the database
OPERATOR = Principal(actor="cli", roles=frozenset({"admin"}))


def usage(message: str) -> NoReturn:
    typer.echo(f"collab: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"collab: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    collab_logging.configure(settings.log_level, settings.log_format)
    return settings


def writable_data_dir(settings: Settings) -> None:
    """Create the data folder if missing and make sure this user may write in it, or
    exit 2 with one line naming the folder and its setting.

    Checked before anything starts, because a folder that cannot be written (a
    container's non-root user in a root-owned working directory, a volume mounted with
    another owner) would otherwise end in a traceback from whichever of the embedded
    database, the token secret or the audit key reached it first."""
    folder = settings.data_dir.expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        usage(
            f"cannot write the data folder {folder} ({exc.strerror or exc}): set"
            f" COLLAB_DATA_DIR or --data-dir to a folder user id {os.geteuid()} may write"
        )


def audit_key_or_exit(settings: Settings) -> None:
    """Load (or create) the audit key before the server starts: one that cannot be read,
    such as a mounted secret owned by another user, is a one-line error (exit 2), not a
    failed startup with a traceback in the log."""
    key_file = audit_settings(settings).key_file
    if key_file is None:
        return
    try:
        load_or_create(key_file)
    except KeyFileError as exc:
        usage(str(exc))
    except OSError as exc:
        usage(
            f"cannot read or create the audit key {key_file} ({exc.strerror or exc}):"
            f" check COLLAB_AUDIT_KEY_FILE and that user id {os.geteuid()} may read it"
        )


def database_or_exit(settings: Settings) -> Database:
    if not settings.database_url:
        writable_data_dir(settings)
    try:
        return resolve(settings.database_url, settings.data_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to start PostgreSQL ends here
        typer.echo(f"collab: cannot start the embedded database: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def with_store(
    database: Database, work: Callable[[PostgresEventStore], Awaitable[T]], prefix: str
) -> T:
    """Run ``work`` with a small store; a store error, or a command's refusal, ends the
    command with exit code 3."""

    async def run() -> T:
        store = await PostgresEventStore.connect(database.url, min_size=1, max_size=2)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (EventStoreError, ServiceError) as exc:
        typer.echo(f"{prefix}: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
