"""The HTTP API of DAID lineage: one DAID (with a check of its hashes), its ancestors
or descendants, its W3C PROV-JSON export and its contributors.

Every read takes ``as_of`` (a log position, or an ISO-8601 time) to answer with what
the log knew then, and ``min_position`` like every other read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.access import rules
from collab.access.errors import Forbidden
from collab.http.kit import ApiError, allowed, field_error, principal_of
from collab.http.params import caught_up, int_param, store_of
from collab.http.responses import JSONResponse
from events import daid as daid_module
from events.errors import DaidError
from events.integrity import stored_daid_hash16
from events.models import project_of
from events.records import StoredEvent, stored_content_hash
from projections import lineage_reads
from projections.lineage_reads import Direction
from projections.prov import contributors, prov_document

EVERYTHING: Final = 2**62
DEFAULT_DEPTH: Final = 50
DEFAULT_MAX_NODES: Final = 1000
_DIRECTIONS: Final[dict[str, Direction]] = {
    "ancestors": "ancestors",
    "descendants": "descendants",
    "both": "both",
}


def _daid(request: Request) -> str:
    text = str(request.path_params["daid"])
    try:
        daid_module.parse(text)
    except DaidError as exc:
        raise ApiError(422, str(exc), [field_error("daid", str(exc))]) from None
    return text


async def _as_of(request: Request) -> int:
    raw = request.query_params.get("as_of")
    if raw is None:
        return EVERYTHING
    if raw.strip().isdigit():
        return int_param(request, "as_of", None, 0, EVERYTHING)
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        message = "a log position or an ISO-8601 time with a timezone"
        raise ApiError(422, f"invalid as_of: expected {message}", [field_error("as_of", message)])
    return await lineage_reads.position_at(store_of(request).queries, moment)


@dataclass(frozen=True, slots=True)
class _Asked:
    daid: str
    #: whether the event was read to decide (a global role decides without it)
    read: bool = False
    #: the event read (None: no event has this DAID)
    event: StoredEvent | None = None


async def _readable_daid(request: Request) -> _Asked:
    """The path's DAID, once the principal may read it: auditors and admins every DAID,
    others the DAIDs of projects they may read and the records they made themselves.
    The event read to decide is handed on, so that it is read once per request.

    Only the asked DAID is checked: a walk from it may name ancestors in projects the
    caller cannot read (their DAIDs and kinds, not their content).
    """
    daid = _daid(request)
    principal = await principal_of(request)
    if rules.allowed(principal, "project.read", None, in_project=True):
        return _Asked(daid)
    event = await store_of(request).event_by_daid(daid)
    project_id = project_of(event.stream_id) if event is not None else None
    if project_id is not None:
        await allowed(request, "project.read", project_id)
    elif event is None or event.metadata.get("actor") != principal.actor:
        raise Forbidden(
            f"{principal.actor} may not read DAID {daid}: it is in no project of theirs"
            " (auditors read every DAID)"
        )
    return _Asked(daid, read=True, event=event)


async def _known(request: Request, daid: str, as_of: int) -> dict[str, Any]:
    node = await lineage_reads.node(store_of(request).queries, daid, as_of=as_of)
    if node is None:
        when = "" if as_of == EVERYTHING else f" as of position {as_of}"
        raise ApiError(404, f"DAID {daid} is not known{when}")
    return node


async def _walk(request: Request, direction: Direction) -> tuple[str, lineage_reads.Walk]:
    daid = (await _readable_daid(request)).daid
    await caught_up(request)
    as_of = await _as_of(request)
    await _known(request, daid, as_of)
    walk = await lineage_reads.walk(
        store_of(request).queries,
        daid,
        direction=direction,
        depth=int_param(request, "depth", DEFAULT_DEPTH, 0, lineage_reads.MAX_DEPTH),
        max_nodes=int_param(request, "max_nodes", DEFAULT_MAX_NODES, 1, lineage_reads.MAX_NODES),
        as_of=as_of,
    )
    return daid, walk


async def get_daid(request: Request) -> Response:
    asked = await _readable_daid(request)
    daid = asked.daid
    await caught_up(request)
    as_of = await _as_of(request)
    node = await _known(request, daid, as_of)
    store = store_of(request)
    near = await lineage_reads.neighbours(store.queries, daid, as_of=as_of)
    body: dict[str, Any] = {**node, **near}
    event = None
    if node["known"]:
        event = asked.event if asked.read else await store.event_by_daid(daid)
    if event is not None:
        # What an auditor checks first: the DAID's hash and the row's hash still hold.
        body["integrity"] = {
            **_hashes_hold(event, daid),
            "event_hash": event.hash.hex(),
            "inclusion_proof": f"/api/audit/proof/inclusion?position={event.position}",
            "receipt": f"/api/audit/receipt?position={event.position}",
        }
    return JSONResponse(body)


def _hashes_hold(event: StoredEvent, daid: str) -> dict[str, bool]:
    """Whether the row's DAID hash and content hash still hold; both false for a row
    that names a hashing scheme this server does not know (or cannot be written in
    its own: a changed row)."""
    try:
        return {
            "daid_hash_ok": stored_daid_hash16(event) == daid_module.parse(daid).hash16,
            "content_hash_ok": stored_content_hash(event) == event.content_hash,
        }
    except ValueError:
        return {"daid_hash_ok": False, "content_hash_ok": False}


async def get_lineage(request: Request) -> Response:
    asked = request.query_params.get("direction", "ancestors")
    direction = _DIRECTIONS.get(asked)
    if direction is None:
        message = f"one of {', '.join(_DIRECTIONS)}"
        raise ApiError(
            422, f"invalid direction: expected {message}", [field_error("direction", message)]
        )
    daid, walk = await _walk(request, direction)
    return Response(walk.json(daid=daid, direction=direction), media_type="application/json")


async def get_prov(request: Request) -> Response:
    _daid_text, walk = await _walk(request, "ancestors")
    return JSONResponse(prov_document(walk.nodes, walk.edges))


async def get_contributors(request: Request) -> Response:
    daid, walk = await _walk(request, "ancestors")
    return JSONResponse(
        {
            "daid": daid,
            "nodes_considered": len(walk.nodes),
            "truncated": walk.truncated,
            **contributors(walk.nodes),
        }
    )


routes = [
    Route("/api/daids/{daid}", get_daid, methods=["GET"]),
    Route("/api/daids/{daid}/lineage", get_lineage, methods=["GET"]),
    Route("/api/daids/{daid}/prov", get_prov, methods=["GET"]),
    Route("/api/daids/{daid}/contributors", get_contributors, methods=["GET"]),
]
