"""``collab audit verify | export | public-key``: the typer surface of the integrity
checks (options, keys, output, exit codes); what they decide is in
``collab.services.audit``, and a bundle is verified offline by ``events.bundle``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collab.cli.startup import (
    EXIT_BROKEN,
    EXIT_CONFIG,
    OPERATOR,
    DataDir,
    database_or_exit,
    settings_or_exit,
    with_store,
)
from collab.runtime.audit_key import KeyFileError, load_or_create
from collab.runtime.config import Settings, audit_settings
from collab.services import audit
from events import bundle as bundle_module
from events.checkpoints import (
    CheckpointError,
    default_origin,
    parse_public_key,
    public_key_text,
    verifier_key,
    verifier_name,
)
from events.models import project_stream


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
    settings = settings_or_exit(data_dir=data_dir)
    key = _public_key(public_key, settings, required=bundle is not None)
    if bundle is not None:
        _verify_bundle(bundle, key, verifier_name(public_key) if public_key else None)
        return
    database = database_or_exit(settings)
    report = with_store(
        database,
        lambda store: audit.verify(OPERATOR, project or None, store=store, key=key),
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


def _verify_bundle(path: Path, key: Ed25519PublicKey | None, origin: str | None) -> None:
    assert key is not None  # noqa: S101 - _public_key required one
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        report = bundle_module.verify(data, key, origin)
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


def audit_export(
    project: Annotated[str, typer.Argument(help="The project id")],
    data_dir: DataDir = None,
) -> None:
    """Print a project's audit bundle (events, signed checkpoint, inclusion proofs) as JSON."""
    settings = settings_or_exit(data_dir=data_dir)
    key = _public_key(None, settings, required=False)
    database = database_or_exit(settings)

    data = with_store(
        database,
        lambda store: audit.export(OPERATOR, project, store=store, key=key),
        "collab: cannot export",
    )
    if data["checkpoint"] is None:
        typer.echo("collab: warning: no checkpoint signed yet; the bundle proves nothing", err=True)
    typer.echo(json.dumps(data, indent=1, sort_keys=True))


def audit_public_key(
    data_dir: DataDir = None,
    raw: Annotated[  # noqa: FBT002 - typer reads options from the signature
        bool, typer.Option("--base64", help="Print base64 of the 32 raw bytes instead")
    ] = False,
) -> None:
    """Print the key that verifies this server's checkpoints, as a signed-note verifier
    key (name+keyid+base64, what Go's sumdb/note and other C2SP verifiers take)."""
    settings = settings_or_exit(data_dir=data_dir)
    key = _public_key(None, settings, required=False)
    if key is None:
        typer.echo("collab: no audit key yet (the server creates it on first start)", err=True)
        raise typer.Exit(EXIT_CONFIG)
    origin = audit_settings(settings).origin or default_origin(key)
    typer.echo(public_key_text(key) if raw else verifier_key(origin, key))
