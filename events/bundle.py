"""Audit bundles: one project's events with the proofs that they are in the signed
log, checkable offline with nothing but the bundle and the server's public key.

A bundle holds every raw event of the project's stream, the newest signed checkpoint,
and for each event the checkpoint covers an RFC 6962 inclusion proof. Verifying it:

1. the checkpoint's signature, with the given public key;
2. the stream's chain: every content hash, DAID hash and link recomputed, versions
   contiguous from 1 (``events.integrity``);
3. each covered event's leaf, through its inclusion proof, to the signed root; and
   its receipt (C2SP tlog-proof@v1, ``events.receipts``) when the bundle has one.

Events after the checkpoint are chain-checked but not yet provable; they are counted.
What a bundle cannot show alone is that nothing was appended to the stream after its
last event; the live log's ``collab audit verify`` covers that.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events import merkle, receipts
from events.checkpoints import Checkpoint, CheckpointError, verify_signature
from events.integrity import Break, ChainVerifier
from events.records import StoredEvent

FORMAT: Final = "collab-audit-bundle/1"


class BundleError(ValueError):
    """A bundle that is not one (wrong format, missing fields)."""


def event_json(
    event: StoredEvent, proof: Sequence[bytes] | None, note: str | None = None
) -> dict[str, Any]:
    receipt = (
        receipts.receipt(event.position - 1, list(proof), note)
        if proof is not None and note is not None
        else None
    )
    return {
        "position": event.position,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "data": event.data,
        "payload": base64.b64encode(event.payload).decode() if event.payload is not None else None,
        "metadata": event.metadata,
        "daid": event.daid,
        "parents": list(event.parents),
        "recorded_at": event.recorded_at.isoformat(timespec="microseconds"),
        "content_hash": event.content_hash.hex(),
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
        "inclusion_proof": [h.hex() for h in proof] if proof is not None else None,
        "receipt": receipt,
    }


def _receipts(bundle: Mapping[str, Any]) -> dict[int, str]:
    return {
        int(item["position"]): str(item["receipt"])
        for item in bundle["events"]
        if item.get("receipt") is not None
    }


def _event(data: Mapping[str, Any]) -> tuple[StoredEvent, list[bytes] | None]:
    payload = data["payload"]
    proof = data.get("inclusion_proof")
    event = StoredEvent(
        position=int(data["position"]),
        stream_id=str(data["stream_id"]),
        stream_version=int(data["stream_version"]),
        event_id=UUID(str(data["event_id"])),
        event_type=str(data["event_type"]),
        schema_version=int(data["schema_version"]),
        data=dict(data["data"]),
        payload=base64.b64decode(payload) if payload is not None else None,
        metadata=dict(data["metadata"]),
        daid=str(data["daid"]),
        parents=tuple(str(p) for p in data["parents"]),
        recorded_at=datetime.fromisoformat(str(data["recorded_at"])),
        content_hash=bytes.fromhex(str(data["content_hash"])),
        prev_hash=bytes.fromhex(str(data["prev_hash"])),
        hash=bytes.fromhex(str(data["hash"])),
    )
    return event, [bytes.fromhex(h) for h in proof] if proof is not None else None


def build(
    *,
    project_id: str,
    stream_id: str,
    events: Sequence[StoredEvent],
    checkpoint: Checkpoint | None,
    proofs: Mapping[int, Sequence[bytes]],
    public_key: str,
    note: str | None = None,
) -> dict[str, Any]:
    """``note`` is the checkpoint as a signed note, when it is one: each covered event
    then carries its receipt."""
    return {
        "format": FORMAT,
        "project_id": project_id,
        "stream_id": stream_id,
        "public_key": public_key,
        "checkpoint": checkpoint.to_json() if checkpoint is not None else None,
        "checkpoint_note": note,
        "events": [event_json(e, proofs.get(e.position), note) for e in events],
    }


@dataclass(frozen=True, slots=True)
class BundleReport:
    events: int
    proven: int
    unproven: int
    tree_size: int
    first_break: Break | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(
    bundle: Mapping[str, Any], public_key: Ed25519PublicKey, origin: str | None = None
) -> BundleReport:
    """Check a bundle (of the log ``origin``, when given: a verifier key names it); the
    report's ``first_break`` says what failed first."""
    if bundle.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle (format is {bundle.get('format')!r})")
    stream_id = str(bundle.get("stream_id"))
    raw_checkpoint = bundle.get("checkpoint")
    if not isinstance(raw_checkpoint, dict):
        raise BundleError("the bundle has no signed checkpoint: nothing to prove against")
    try:
        checkpoint = Checkpoint.from_json(raw_checkpoint)
        parsed = [_event(item) for item in bundle["events"]]
        texts = _receipts(bundle)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"malformed bundle: {exc!r}") from None

    def report(proven: int, first_break: Break | None) -> BundleReport:
        covered = sum(1 for event, _ in parsed if event.position <= checkpoint.tree_size)
        return BundleReport(
            len(parsed), proven, len(parsed) - covered, checkpoint.tree_size, first_break
        )

    try:
        verify_signature(checkpoint, public_key)
    except CheckpointError as exc:
        return report(
            0, Break("(checkpoint)", checkpoint.tree_size, "signature", "valid", str(exc))
        )
    if origin is not None and checkpoint.origin is not None and checkpoint.origin != origin:
        found = Break("(checkpoint)", checkpoint.tree_size, "origin", origin, checkpoint.origin)
        return report(0, found)
    chain = ChainVerifier(check_positions=False)
    proven = 0
    for event, proof in parsed:
        if event.stream_id != stream_id:
            found = Break(event.stream_id, event.position, "stream", stream_id, event.stream_id)
            return report(proven, found)
        broken = chain.feed(event)
        if broken is not None:
            return report(proven, broken)
        if event.position > checkpoint.tree_size:
            continue
        if proof is None:
            missing = Break(stream_id, event.position, "inclusion proof", "a proof", "none")
            return report(proven, missing)
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(event.hash),
                event.position - 1,
                checkpoint.tree_size,
                proof,
                checkpoint.root,
            )
        except merkle.ProofError as exc:
            found = Break(
                stream_id, event.position, "inclusion in the signed log", "valid", str(exc)
            )
            return report(proven, found)
        if event.position in texts:
            try:
                receipts.verify(texts[event.position], event.hash, public_key, origin)
            except receipts.ReceiptError as exc:
                found = Break(stream_id, event.position, "receipt", "valid", str(exc))
                return report(proven, found)
        proven += 1
    return report(proven, None)
