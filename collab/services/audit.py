"""Audit commands: verify the log (every hash and link, and the Merkle log against its
signed checkpoints), export a project's audit bundle.

Both read only; they take a principal like every command, since who may audit is an
authorization rule like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collab.access.principal import Principal
from collab.services.authorize import authorize
from collab.services.errors import NotFound
from collab.services.lookup import Migrated, require_schema
from collab.services.ports import Store
from events import bundle, merkle
from events.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointVerifier,
    public_key_text,
    verify_all,
)
from events.integrity import Break
from events.models import project_stream
from events.records import StoredEvent
from projections import audit_log


class ChainReport(Protocol):
    """What a pass over the raw rows found (``events.postgres.VerifyReport``)."""

    @property
    def events(self) -> int: ...

    @property
    def streams(self) -> int: ...

    @property
    def last_position(self) -> int: ...

    @property
    def first_break(self) -> Break | None: ...

    @property
    def ok(self) -> bool: ...


class AuditedStore(Store, Migrated, Protocol):
    async def verify(
        self,
        stream_id: str | None = None,
        *,
        observe: Callable[[StoredEvent], None] | None = None,
    ) -> ChainReport:
        """Recompute every hash and link of the log (or one stream) from its rows;
        ``observe`` sees each event, in position order."""
        ...


@dataclass(frozen=True, slots=True)
class Verified:
    chain: ChainReport
    #: the first signed checkpoint whose root or signature does not hold
    merkle_break: Break | None
    #: the signed checkpoints checked, oldest first (none when one stream was verified)
    checkpoints: tuple[Checkpoint, ...]
    #: whether their signatures were checked too (a public key was given)
    signatures: bool

    @property
    def first_break(self) -> Break | None:
        return self.chain.first_break or self.merkle_break


async def verify(
    principal: Principal,
    project_id: str | None = None,
    *,
    store: AuditedStore,
    key: Ed25519PublicKey | None = None,
) -> Verified:
    """Verify the whole log and its checkpoints (roots; signatures too with ``key``),
    or only the stream of ``project_id``."""
    await authorize(principal, "audit.verify", project_id, log=store)
    await require_schema(store)
    if project_id is not None:
        stream_id = project_stream(project_id)
        if await store.stream_version(stream_id) == 0:
            raise NotFound(f"no events for project {project_id!r} ({stream_id})")
        return Verified(await store.verify(stream_id), None, (), signatures=False)
    signed = tuple(await audit_log.checkpoints(store.queries))
    merkle_check = CheckpointVerifier(list(signed))
    chain = await store.verify(observe=lambda event: merkle_check.feed(event.position, event.hash))
    if not chain.ok:
        return Verified(chain, None, signed, signatures=key is not None)
    broken = merkle_check.finish()
    if broken is None and key is not None:
        try:
            verify_all(signed, key)
        except CheckpointError as exc:
            size = signed[0].tree_size if signed else 0
            broken = Break("(checkpoint)", size, "signature", "valid", str(exc))
    return Verified(chain, broken, signed, signatures=key is not None)


async def export(
    principal: Principal,
    project_id: str,
    *,
    store: AuditedStore,
    key: Ed25519PublicKey | None = None,
) -> dict[str, Any]:
    """A project's audit bundle (``events.bundle``): its events, the newest signed
    checkpoint and each covered event's inclusion proof, to verify offline."""
    await authorize(principal, "audit.export", project_id, log=store)
    await require_schema(store)
    stream_id = project_stream(project_id)
    events = await store.read_stream(stream_id)
    if not events:
        raise NotFound(f"no events for project {project_id!r} ({stream_id})")
    newest = await audit_log.latest_checkpoint(store.queries)
    proofs: dict[int, list[bytes]] = {}
    if newest is not None:
        size = newest.tree_size
        covered = [e.position - 1 for e in events if e.position <= size]
        nodes = await audit_log.nodes_for(
            store.queries,
            lambda n: [merkle.inclusion_proof(i, size, n) for i in covered],
        )
        proofs = {i + 1: merkle.inclusion_proof(i, size, nodes) for i in covered}
    note = newest.note_if_any(key) if newest is not None and key is not None else None
    return bundle.build(
        project_id=project_id,
        stream_id=stream_id,
        events=events,
        checkpoint=newest,
        proofs=proofs,
        public_key=public_key_text(key) if key is not None else "",
        note=note,
    )
