"""The ``collab`` command: serve, migrate, token create, audit verify|export|public-key,
projections status|run|rebuild.

Every command reads the same settings (flags, then ``COLLAB_*`` / ``DATABASE_URL``
environment variables, then defaults), so ``COLLAB_DATA_DIR=D collab audit verify``
checks the embedded database of data dir D, also while a server runs on it.

Exit codes: 0 success; 1 verification found a broken link; 2 invalid settings or
usage (a data folder this user cannot write, an audit key it cannot read); 3 the
database could not be reached or migrated; 4 a rebuild could not run (another process
is rebuilding the projection) or one of its processes failed.

This module holds the typer apps and which command goes where; the commands are in
``serve``, ``tokens``, ``audit`` and ``projections``, and what each of them does first
(settings, the data-dir and audit-key checks, the database) in ``startup``.
"""

from __future__ import annotations

import typer

from collab.cli.audit import audit_export, audit_public_key, audit_verify
from collab.cli.projections import projections_rebuild, projections_run, projections_status
from collab.cli.serve import migrate, serve
from collab.cli.tokens import token_create

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

app.command()(serve)
app.command()(migrate)
token_app.command("create")(token_create)
audit_app.command("verify")(audit_verify)
audit_app.command("export")(audit_export)
audit_app.command("public-key")(audit_public_key)
projections_app.command("status")(projections_status)
projections_app.command("run")(projections_run)
projections_app.command("rebuild")(projections_rebuild)


def main() -> None:
    app(prog_name="collab")
