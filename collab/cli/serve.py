"""``collab serve`` and ``collab migrate``: the server on its database, the admin token
it prints for this machine, and the schema it needs."""

from __future__ import annotations

from typing import Annotated

import structlog
import typer

from collab.access import issuing
from collab.access.setup import secret_file, token_settings
from collab.access.tokens import TokenSettings
from collab.cli.startup import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    DataDir,
    audit_key_or_exit,
    database_or_exit,
    settings_or_exit,
    usage,
    with_store,
    writable_data_dir,
)
from collab.runtime.config import (
    Settings,
    audit_settings,
    database_settings,
    http_settings,
    live_settings,
    rate_settings,
    read_settings,
)
from events.postgres import PostgresEventStore

log = structlog.get_logger("collab.cli")

#: lifetime of the admin token ``serve`` prints
ADMIN_TTL = 24 * 3600.0


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env COLLAB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env COLLAB_PORT]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the server (embedded PostgreSQL unless DATABASE_URL is set)."""
    from collab.app import create_app  # noqa: PLC0415 - only serve needs the app
    from collab.runtime.supervisor import EmbeddedSupervisor  # noqa: PLC0415
    from collab.server import Server, build_config  # noqa: PLC0415

    settings = settings_or_exit(host=host, port=port, data_dir=data_dir)
    if _serving_writes_data_dir(settings):
        writable_data_dir(settings)
    try:
        auth = token_settings(settings)
    except ValueError as exc:  # a secret file or key setting that cannot be used
        typer.echo(f"collab: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except OSError as exc:  # a secret file elsewhere that cannot be read or created
        usage(f"cannot read or create the token secret: {exc}")
    audit_key_or_exit(settings)
    database = database_or_exit(settings)
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
        compression=settings.ws_compression,
    )
    server = Server(config)
    log.info("serving", host=settings.host, port=settings.port, embedded=database.embedded)
    server.run()
    if not server.started:
        # Startup failed (database unreachable, migration error): the log says why.
        raise typer.Exit(EXIT_UNAVAILABLE)


def _serving_writes_data_dir(settings: Settings) -> bool:
    """Whether ``serve`` keeps anything in the data folder: the embedded database, the
    audit key or the token secret, each when no setting puts it elsewhere. A node given
    all three from outside may run with a read-only file system."""
    own_secret_there = settings.auth == "on" and secret_file(settings) == (
        settings.data_dir / "auth-secret"
    )
    return not settings.database_url or settings.audit_key_file is None or own_secret_there


def _say_how_to_sign_in(settings: Settings, auth: TokenSettings | None) -> None:
    """On this machine with the server's own secret: a ready admin token, so that the
    first minute needs no reading (the server binds to loopback by default)."""
    if auth is None or auth.secret is None or settings.jwt_secret is not None:
        return
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("tokens: collab token create --user NAME [--role admin|auditor]", err=True)
        return
    token = issuing.issue(auth.secret, user="admin", roles=["admin"], ttl=ADMIN_TTL)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = f"http://{host}:{settings.port}"
    typer.echo(
        f"admin token for this machine (valid 24 h):\n  {token}\n"
        f"  studio: {base}/#token={token}\n"
        f"  curl -H 'Authorization: Bearer {token[:12]}...' {base}/api/projects\n"
        "  more tokens: collab token create --user NAME [--role admin|auditor]"
        " [--agent ID] [--ttl 1h]",
        err=True,
    )


def migrate(data_dir: DataDir = None) -> None:
    """Apply pending migrations and exit."""
    settings = settings_or_exit(data_dir=data_dir)
    database = database_or_exit(settings)

    async def run(store: PostgresEventStore) -> list[int]:
        return await store.migrate()

    applied = with_store(database, run, "collab")
    typer.echo(f"migrations applied: {applied}" if applied else "schema is up to date")
