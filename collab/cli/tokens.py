"""``collab token create``: a token signed with this server's own secret."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from collab.access import issuing
from collab.access.setup import own_secret, secret_file
from collab.cli.startup import DataDir, settings_or_exit, usage, writable_data_dir

_TTL = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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
    settings = settings_or_exit(data_dir=data_dir)
    for name in role or []:
        if name not in ("admin", "auditor"):
            usage(f"--role must be admin or auditor, not {name!r}")
    match = re.fullmatch(r"(\d+)([smhd]?)", ttl.strip())
    if match is None:
        usage(f"--ttl must look like 90s, 30m, 1h or 7d, not {ttl!r}")
    seconds = int(match[1]) * _TTL.get(match[2] or "s", 1)
    if settings.auth == "on" and secret_file(settings) == settings.data_dir / "auth-secret":
        writable_data_dir(settings)
    try:
        secret = own_secret(settings) if settings.auth == "on" else None
        if secret is None:
            usage(
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
        usage(str(exc))
    except OSError as exc:  # a secret file elsewhere that cannot be read or created
        usage(f"cannot read or create the token secret: {exc}")
    typer.echo(token)
