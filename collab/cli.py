"""The ``collab`` command: serve, migrate, token create, audit verify|export|public-key,
projections status|run|rebuild.

Every command reads the same settings (flags, then ``COLLAB_*`` / ``DATABASE_URL``
environment variables, then defaults), so ``COLLAB_DATA_DIR=D collab audit verify``
checks the embedded database of data dir D, also while a server runs on it.

Exit codes: 0 success; 1 verification found a broken link; 2 invalid settings or
usage (a data folder this user cannot write, an audit key it cannot read); 3 the
database could not be reached or migrated; 4 a rebuild could not run (another process
is rebuilding the projection) or one of its processes failed.

Why this module is over 400 lines: it is the typer surface of nine commands (options,
settings, exit codes, output). What the audit commands decide is in
``collab.services.audit``; the projection commands drive ``collab.worker``, which sits
above the services, with a progress bar, so they stay here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import structlog
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collab import worker
from collab.access import issuing
from collab.access.principal import Principal
from collab.access.setup import own_secret, secret_file, token_settings
from collab.access.tokens import TokenSettings
from collab.runtime import logging as collab_logging
from collab.runtime.audit_key import KeyFileError, load_or_create
from collab.runtime.config import (
    ConfigError,
    Settings,
    audit_settings,
    database_settings,
    http_settings,
    live_settings,
    load_settings,
    rate_settings,
    read_settings,
)
from collab.runtime.database import Database, resolve
from collab.services import audit
from collab.services.errors import ServiceError
from collab.services.lookup import require_schema
from events import bundle as bundle_module
from events.checkpoints import CheckpointError, Signer, parse_public_key, public_key_text
from events.errors import EventStoreError
from events.models import project_stream
from events.postgres import PostgresEventStore
from projections import quarantine, registry
from projections.progress import ProjectionProgress, ProjectionStatus
from projections.quarantine import Quarantined
from projections.runner import Projection, RebuildRunning, rebuild
from projections.sharded import Opener, RebuildFailed, fold_in_parallel

EXIT_BROKEN = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 4

app = typer.Typer(
    help="Event-sourced collaboration server for music projects.",
    no_args_is_help=True,
    add_completion=False,
)
audit_app = typer.Typer(help="Integrity checks of the event log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
projections_app = typer.Typer(
    help="Read models folded from the log: status, run and rebuild.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")
token_app = typer.Typer(help="Tokens signed with this server's secret.", no_args_is_help=True)
app.add_typer(token_app, name="token")

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


def _writable_data_dir(settings: Settings) -> None:
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
        _usage(
            f"cannot write the data folder {folder} ({exc.strerror or exc}): set"
            f" COLLAB_DATA_DIR or --data-dir to a folder user id {os.geteuid()} may write"
        )


def _serving_writes_data_dir(settings: Settings) -> bool:
    """Whether ``serve`` keeps anything in the data folder: the embedded database, the
    audit key or the token secret, each when no setting puts it elsewhere. A node given
    all three from outside may run with a read-only file system."""
    own_secret_there = settings.auth == "on" and secret_file(settings) == (
        settings.data_dir / "auth-secret"
    )
    return not settings.database_url or settings.audit_key_file is None or own_secret_there


def _audit_key_or_exit(settings: Settings) -> None:
    """Load (or create) the audit key before the server starts: one that cannot be read,
    such as a mounted secret owned by another user, is a one-line error (exit 2), not a
    failed startup with a traceback in the log."""
    key_file = audit_settings(settings).key_file
    if key_file is None:
        return
    try:
        load_or_create(key_file)
    except KeyFileError as exc:
        _usage(str(exc))
    except OSError as exc:
        _usage(
            f"cannot read or create the audit key {key_file} ({exc.strerror or exc}):"
            f" check COLLAB_AUDIT_KEY_FILE and that user id {os.geteuid()} may read it"
        )


def _database(settings: Settings) -> Database:
    if not settings.database_url:
        _writable_data_dir(settings)
    try:
        return resolve(settings.database_url, settings.data_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to start PostgreSQL ends here
        typer.echo(f"collab: cannot start the embedded database: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


T = TypeVar("T")
#: who runs a command here: whoever may run the CLI on the data dir has the database
_OPERATOR = Principal(actor="cli", roles=frozenset({"admin"}))


def _with_store(
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env COLLAB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env COLLAB_PORT]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the server (embedded PostgreSQL unless DATABASE_URL is set)."""
    from collab.app import create_app  # noqa: PLC0415 - only serve needs the app
    from collab.runtime.supervisor import EmbeddedSupervisor  # noqa: PLC0415
    from collab.server import Server, build_config  # noqa: PLC0415

    settings = _settings(host=host, port=port, data_dir=data_dir)
    if _serving_writes_data_dir(settings):
        _writable_data_dir(settings)
    try:
        auth = token_settings(settings)
    except ValueError as exc:  # a secret file or key setting that cannot be used
        typer.echo(f"collab: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except OSError as exc:  # a secret file elsewhere that cannot be read or created
        _usage(f"cannot read or create the token secret: {exc}")
    _audit_key_or_exit(settings)
    database = _database(settings)
    application = create_app(
        database.url,
        pool_size=settings.db_pool_size,
        poll_interval=settings.poll_interval,
        live=live_settings(settings),
        read=read_settings(settings),
        audit=audit_settings(settings),
        http=http_settings(settings),
        database=database_settings(settings),
        supervisor=EmbeddedSupervisor(database.handle) if database.embedded else None,
        auth=auth,
        rates=rate_settings(settings),
    )
    _say_how_to_sign_in(settings, auth)
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


def _say_how_to_sign_in(settings: Settings, auth: TokenSettings | None) -> None:
    """On this machine with the server's own secret: a ready admin token, so that the
    first minute needs no reading (the server binds to loopback by default)."""
    if auth is None or auth.secret is None or settings.jwt_secret is not None:
        return
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("tokens: collab token create --user NAME [--role admin|auditor]", err=True)
        return
    token = issuing.issue(auth.secret, user="admin", roles=["admin"], ttl=ADMIN_TTL)
    typer.echo(
        f"admin token for this machine (valid 24 h):\n  {token}\n"
        f"  curl -H 'Authorization: Bearer {token[:12]}...' http://{settings.host}:"
        f"{settings.port}/api/projects\n"
        "  more tokens: collab token create --user NAME [--role admin|auditor]"
        " [--agent ID] [--ttl 1h]",
        err=True,
    )


#: lifetime of the admin token ``serve`` prints
ADMIN_TTL = 24 * 3600.0
_TTL = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The token's subject: a user name")],
    role: Annotated[
        list[str] | None, typer.Option(help="A global role: admin or auditor (repeatable)")
    ] = None,
    agent: Annotated[
        str | None, typer.Option(help="Make it a service's token, acting as this agent id")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 30m, 1h, 7d; 0 never expires")] = "1h",
    data_dir: DataDir = None,
) -> None:
    """Print an HS256 token signed with the server's secret (COLLAB_JWT_SECRET, or the
    secret file in the data dir, created if missing)."""
    settings = _settings(data_dir=data_dir)
    for name in role or []:
        if name not in ("admin", "auditor"):
            _usage(f"--role must be admin or auditor, not {name!r}")
    match = re.fullmatch(r"(\d+)([smhd]?)", ttl.strip())
    if match is None:
        _usage(f"--ttl must look like 90s, 30m, 1h or 7d, not {ttl!r}")
    seconds = int(match[1]) * _TTL.get(match[2] or "s", 1)
    if settings.auth == "on" and secret_file(settings) == settings.data_dir / "auth-secret":
        _writable_data_dir(settings)
    try:
        secret = own_secret(settings) if settings.auth == "on" else None
        if secret is None:
            _usage(
                "this server has no secret of its own to sign with (COLLAB_AUTH=off, or"
                " its tokens come from an identity provider: ask it for one)"
            )
        token = issuing.issue(
            secret,
            user=user,
            roles=role or [],
            agent_id=agent,
            ttl=seconds or None,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            roles_claim=settings.jwt_roles_claim,
        )
    except ValueError as exc:
        _usage(str(exc))
    except OSError as exc:  # a secret file elsewhere that cannot be read or created
        _usage(f"cannot read or create the token secret: {exc}")
    typer.echo(token)


def _usage(message: str) -> NoReturn:
    typer.echo(f"collab: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)


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
    bundle: Annotated[
        Path | None,
        typer.Option(help="Verify this exported bundle offline (no database is opened)"),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Ed25519 public key (base64) that signed the checkpoints"
            " [default: the one of the server's key file, if present]",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Recompute every hash and link of the log and check the Merkle log against the
    signed checkpoints; exit 1 at the first broken one."""
    settings = _settings(data_dir=data_dir)
    key = _public_key(public_key, settings, required=bundle is not None)
    if bundle is not None:
        _verify_bundle(bundle, key)
        return
    database = _database(settings)
    report = _with_store(
        database,
        lambda store: audit.verify(_OPERATOR, project or None, store=store, key=key),
        "collab: cannot verify",
    )
    scope = f"stream {project_stream(project)}" if project else "log"
    if report.first_break is None:
        chain = report.chain
        typer.echo(
            f"OK: {scope} verified: {chain.events} events in {chain.streams}"
            f" streams, last position {chain.last_position}"
        )
        if not project:
            typer.echo(_checkpoints_line(report))
        return
    typer.echo(f"BROKEN: {report.first_break}")
    typer.echo(f"checked {report.chain.events} events before stopping", err=True)
    raise typer.Exit(EXIT_BROKEN)


def _checkpoints_line(report: audit.Verified) -> str:
    if not report.checkpoints:
        return "no signed checkpoints yet: the Merkle log was not checked"
    newest = report.checkpoints[-1]
    how = "roots and signatures" if report.signatures else "roots only (no public key given)"
    return (
        f"OK: {len(report.checkpoints)} checkpoints verified ({how}); newest covers"
        f" {newest.tree_size} events, signed {newest.signed_at.isoformat()}"
    )


def _public_key(text: str | None, settings: Settings, *, required: bool) -> Ed25519PublicKey | None:
    try:
        if text is not None:
            return parse_public_key(text)
        key_file = audit_settings(settings).key_file
        if key_file is not None and key_file.exists():
            return load_or_create(key_file).public_key()
    except (CheckpointError, KeyFileError) as exc:
        typer.echo(f"collab: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if required:
        typer.echo("collab: give --public-key to verify a bundle", err=True)
        raise typer.Exit(EXIT_CONFIG)
    return None


def _verify_bundle(path: Path, key: Ed25519PublicKey | None) -> None:
    assert key is not None  # noqa: S101 - _public_key required one
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        report = bundle_module.verify(data, key)
    except (OSError, ValueError) as exc:
        typer.echo(f"collab: cannot read bundle {path}: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if not report.ok:
        typer.echo(f"BROKEN: {report.first_break}")
        raise typer.Exit(EXIT_BROKEN)
    typer.echo(
        f"OK: bundle verified: {report.events} events, {report.proven} proven in the log"
        f" signed at tree size {report.tree_size}"
        + (f"; {report.unproven} newer events chain-checked only" if report.unproven else "")
    )


@audit_app.command("export")
def audit_export(
    project: Annotated[str, typer.Argument(help="The project id")],
    data_dir: DataDir = None,
) -> None:
    """Print a project's audit bundle (events, signed checkpoint, inclusion proofs) as JSON."""
    settings = _settings(data_dir=data_dir)
    key = _public_key(None, settings, required=False)
    database = _database(settings)

    data = _with_store(
        database,
        lambda store: audit.export(_OPERATOR, project, store=store, key=key),
        "collab: cannot export",
    )
    if data["checkpoint"] is None:
        typer.echo("collab: warning: no checkpoint signed yet; the bundle proves nothing", err=True)
    typer.echo(json.dumps(data, indent=1, sort_keys=True))


@audit_app.command("public-key")
def audit_public_key(data_dir: DataDir = None) -> None:
    """Print the public key that verifies this server's checkpoints (base64)."""
    settings = _settings(data_dir=data_dir)
    key = _public_key(None, settings, required=False)
    if key is None:
        typer.echo("collab: no audit key yet (the server creates it on first start)", err=True)
        raise typer.Exit(EXIT_CONFIG)
    typer.echo(public_key_text(key))


def _projections(store: PostgresEventStore, settings: Settings) -> list[Projection]:
    # Only the server signs checkpoints; a rebuild here checks the roots it passes.
    return registry.build(registry.Needs(store, state_every=settings.state_every))


@projections_app.command("status")
def projections_status(data_dir: DataDir = None) -> None:
    """Position, lag and state of each projection."""
    settings = _settings(data_dir=data_dir)
    database = _database(settings)

    async def run(store: PostgresEventStore) -> tuple[list[ProjectionStatus], str | None]:
        await require_schema(store)
        statuses = await ProjectionProgress(store, registry.NAMES).status()
        return statuses, await store.leader(worker.LEAD)

    statuses, leader = _with_store(database, run, "collab: cannot read projections")
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


@projections_app.command("run")
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
    settings = _settings(data_dir=data_dir)
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
    database = _database(settings)

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
            signer=Signer(key),
            stop=stop,
            share_opener=_share_opener(settings, database),
        )

    try:
        asyncio.run(run())
    except EventStoreError as exc:
        typer.echo(f"collab: projections stopped: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


@projections_app.command("rebuild")
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
    settings = _settings(data_dir=data_dir)
    database = _database(settings)
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
        _with_store(database, run, "collab: rebuild failed")
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


def main() -> None:
    app(prog_name="collab")


if __name__ == "__main__":  # pragma: no cover
    main()
