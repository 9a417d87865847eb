"""The HTTP API of the global Merkle log: the newest signed checkpoint (a C2SP signed
note, or its JSON view), an event's inclusion receipt (C2SP tlog-proof@v1), and RFC
6962 inclusion and consistency proofs against any tree size the log has sealed.

Proof hashes are hex in the JSON views and base64 in the C2SP texts; leaf
``position - 1`` is the event at ``position``, and its leaf hash is SHA-256(0x00 ‖ the
event's chain hash).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import ApiError, allowed, field_error, principal_of, within_limits
from collab.http.params import int_param, project_id_of, store_of
from collab.http.responses import JSONResponse
from collab.services import audit
from events import merkle, receipts
from events.checkpoints import Checkpoint, Signer, public_key_text
from projections import audit_log

#: the media type of checkpoints and receipts (C2SP texts, as tlog-tiles serves them)
TEXT = receipts.MEDIA_TYPE


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _audited(request: Request) -> audit.AuditedStore:
    store: audit.AuditedStore = request.app.state.store
    return store


async def _sealed_size(request: Request) -> int:
    """How many events the Merkle log has folded (its subtrees are stored)."""
    value = await store_of(request).queries.fetchval(
        "select position from projection_checkpoints where name = $1", audit_log.NAME
    )
    return int(value or 0)


async def _default_size(request: Request) -> int:
    newest = await audit_log.latest_checkpoint(store_of(request).queries)
    if newest is None:
        raise ApiError(404, "no checkpoint has been signed yet; give tree_size")
    return newest.tree_size


def _check_size(name: str, size: int, sealed: int) -> None:
    if size > sealed:
        message = f"the Merkle log holds {sealed} events so far"
        raise ApiError(422, f"invalid {name}: {message}", [field_error(name, message)])


def _wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json" or "application/json" in (
        request.headers.get("accept", "")
    )


def _note(checkpoint: Checkpoint, signer: Signer) -> str:
    if checkpoint.key_id != signer.key_id:
        # the note's signature line names the signing key by an id of that key, which
        # this node does not have
        raise ApiError(
            409,
            f"the newest checkpoint was signed with key {checkpoint.key_id}, not this node's"
            f" {signer.key_id} (COLLAB_AUDIT_KEY_FILE): its note cannot be written here",
        )
    if checkpoint.origin is None:
        raise ApiError(
            404,
            f"the newest checkpoint (of {checkpoint.tree_size} events) was signed before"
            " checkpoints were signed notes; the next one will be one (after the next"
            " event, within COLLAB_CHECKPOINT_SECONDS); its JSON view is at ?format=json",
        )
    return checkpoint.note(signer.public_key)


async def get_checkpoint(request: Request) -> Response:
    """The newest checkpoint as a C2SP signed note (text), or as JSON when asked
    (``Accept: application/json`` or ``?format=json``)."""
    await allowed(request, "audit.read")
    newest = await audit_log.latest_checkpoint(store_of(request).queries)
    signer = _signer(request)
    if newest is None:
        raise ApiError(404, "no checkpoint has been signed yet")
    if not _wants_json(request):
        return Response(_note(newest, signer), media_type=TEXT)
    return JSONResponse(
        {
            **newest.to_json(),
            "note": newest.note_if_any(signer.public_key),
            "public_key": public_key_text(signer.public_key),
            "verifier_key": signer.verifier_key,
            "signed_by_current_key": newest.key_id == signer.key_id,
            "log": "collab-audit-v1",
        }
    )


async def get_receipt(request: Request) -> Response:
    """The event at ``position``'s inclusion receipt (C2SP tlog-proof@v1) under the
    newest checkpoint."""
    await allowed(request, "audit.read")
    sql = store_of(request).queries
    newest = await audit_log.latest_checkpoint(sql)
    if newest is None:
        raise ApiError(404, "no checkpoint has been signed yet")
    position = int_param(request, "position", None, 1, 2**62)
    if position > newest.tree_size:
        raise ApiError(
            404,
            f"the event at position {position} is not in a signed checkpoint yet (the newest"
            f" covers {newest.tree_size} events; one follows within"
            " COLLAB_CHECKPOINT_SECONDS)",
        )
    note = _note(newest, _signer(request))
    size, index = newest.tree_size, position - 1
    nodes = await audit_log.nodes_for(sql, lambda n: merkle.inclusion_proof(index, size, n))
    proof = merkle.inclusion_proof(index, size, nodes)
    return Response(
        receipts.receipt(index, proof, note),
        media_type=TEXT,
        headers={"Content-Disposition": f'inline; filename="event-{position}.tlog-proof"'},
    )


async def _tree_size(request: Request, name: str) -> int:
    """The tree size a proof is asked against: given (and sealed), or the newest
    checkpoint's."""
    if name not in request.query_params:
        return await _default_size(request)
    size = int_param(request, name, None, 1, 2**62)
    _check_size(name, size, await _sealed_size(request))
    return size


async def get_inclusion(request: Request) -> Response:
    await allowed(request, "audit.read")
    size = await _tree_size(request, "tree_size")
    position = int_param(request, "position", None, 1, size)
    sql = store_of(request).queries
    events = await store_of(request).read_all(position - 1, 1)
    if not events or events[0].position != position:
        raise ApiError(404, f"no event at position {position}")
    index = position - 1
    nodes = await audit_log.nodes_for(
        sql, lambda n: (merkle.inclusion_proof(index, size, n), merkle.root(size, n))
    )
    body: dict[str, Any] = {
        "position": position,
        "leaf_index": index,
        "tree_size": size,
        "event_hash": events[0].hash.hex(),
        "leaf_hash": merkle.leaf_hash(events[0].hash).hex(),
        "proof": [h.hex() for h in merkle.inclusion_proof(index, size, nodes)],
        "root": merkle.root(size, nodes).hex(),
    }
    signed = await audit_log.checkpoint_at_least(sql, size)
    if signed is not None and signed.tree_size == size:
        body["checkpoint"] = signed.to_json()
    return JSONResponse(body)


async def get_consistency(request: Request) -> Response:
    await allowed(request, "audit.read")
    new = await _tree_size(request, "to")
    old = int_param(request, "from", None, 1, new)
    nodes = await audit_log.nodes_for(
        store_of(request).queries,
        lambda n: (
            merkle.consistency_proof(old, new, n),
            merkle.root(old, n),
            merkle.root(new, n),
        ),
    )
    return JSONResponse(
        {
            "from": old,
            "to": new,
            "from_root": merkle.root(old, nodes).hex(),
            "to_root": merkle.root(new, nodes).hex(),
            "proof": [h.hex() for h in merkle.consistency_proof(old, new, nodes)],
        }
    )


async def get_bundle(request: Request) -> Response:
    """The project's audit bundle, as ``collab audit export`` writes it: the web studio
    verifies it in the browser against the checkpoint's key."""
    principal = await principal_of(request)
    # it reads the whole stream and a proof per event: counted like a write
    await within_limits(request, principal)
    bundle = await audit.export(
        principal,
        project_id_of(request),
        store=_audited(request),
        key=_signer(request).public_key,
    )
    return JSONResponse(bundle)


routes = [
    Route("/api/audit/checkpoint", get_checkpoint, methods=["GET"]),
    Route("/api/audit/receipt", get_receipt, methods=["GET"]),
    Route("/api/audit/proof/inclusion", get_inclusion, methods=["GET"]),
    Route("/api/audit/proof/consistency", get_consistency, methods=["GET"]),
    Route("/api/projects/{project_id}/audit-bundle", get_bundle, methods=["GET"]),
]
