"""The HTTP API of the global Merkle log: the newest signed checkpoint, and RFC 6962
inclusion and consistency proofs against any tree size the log has sealed.

Proof hashes are hex; leaf ``position - 1`` is the event at ``position``, and its leaf
hash is SHA-256(0x00 ‖ the event's chain hash).
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
from events import merkle
from events.checkpoints import Signer, public_key_text
from projections import audit_log


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


async def get_checkpoint(request: Request) -> Response:
    await allowed(request, "audit.read")
    newest = await audit_log.latest_checkpoint(store_of(request).queries)
    signer = _signer(request)
    if newest is None:
        raise ApiError(404, "no checkpoint has been signed yet")
    return JSONResponse(
        {
            **newest.to_json(),
            "public_key": public_key_text(signer.public_key),
            "signed_by_current_key": newest.key_id == signer.key_id,
            "log": "collab-audit-v1",
        }
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
    Route("/api/audit/proof/inclusion", get_inclusion, methods=["GET"]),
    Route("/api/audit/proof/consistency", get_consistency, methods=["GET"]),
    Route("/api/projects/{project_id}/audit-bundle", get_bundle, methods=["GET"]),
]
