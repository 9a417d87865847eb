"""The HTTP API of a project's history: its entries, time travel, diffs, snapshots
and rollback.

Reads come from the projections' tables. Every read takes ``?min_position=N`` and
first waits (at most ``COLLAB_PROJECTION_WAIT`` seconds, then 503) until every
projection has folded position N, so a client that just wrote reads its own write.
Tagging and rollback are commands (``collab.services.history``); a rollback appends
through the live path, so connected editors receive it at once.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import ApiError, body_of, correlation_of, field_error, live_of, principal_of
from collab.http.params import (
    caught_up,
    duration,
    int_param,
    known_version,
    models_of,
    project_id_of,
    readable_project,
    store_of,
    view_at,
)
from collab.http.responses import JSONResponse
from collab.services import history
from music.diff import MISSING, Change, diff, note_of
from projections import project_reads

# -- reads ------------------------------------------------------------------------------


async def get_history(request: Request) -> Response:
    project_id = await readable_project(request)
    await caught_up(request)
    params = request.query_params
    group = params.get("group")
    window = None
    if group is not None:
        if group != "actor":
            message = "only 'actor' is supported"
            raise ApiError(422, f"invalid group: {message}", [field_error("group", message)])
        window = duration(params.get("window", "5s"), "window")
    elif "window" in params:
        message = "window needs group=actor"
        raise ApiError(422, f"invalid window: {message}", [field_error("window", message)])
    await known_version(request, project_id)
    try:
        page = await project_reads.history(
            store_of(request).queries,
            project_id,
            limit=int_param(request, "limit", 50, 1, 500),
            cursor=params.get("cursor"),
            group_window=window,
        )
    except project_reads.BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse(
        {"project_id": project_id, "entries": page.items, "next_cursor": page.next_cursor}
    )


async def get_version(request: Request) -> Response:
    project_id = await readable_project(request)
    version = int(request.path_params["version"])
    current = await known_version(request, project_id)
    if not 1 <= version <= current:
        raise ApiError(404, f"project {project_id} has no version {version} (1 to {current})")
    view = await view_at(request, project_id, version)
    return JSONResponse({"project_id": project_id, "version": version, "document": view})


async def get_diff(request: Request) -> Response:
    project_id = await readable_project(request)
    start = int_param(request, "from", None, 1, 2**62)
    end = int_param(request, "to", None, 1, 2**62)
    current = await known_version(request, project_id)
    for version in (start, end):
        if version > current:
            raise ApiError(404, f"project {project_id} has no version {version} (1 to {current})")
    before = await view_at(request, project_id, start)
    after = await view_at(request, project_id, end)
    changes = diff(before, after)

    def item(change: Change, **fields: Any) -> dict[str, Any]:
        note = note_of(change, before, after)
        return {"path": list(change.path), **fields, **({"note": note} if note else {})}

    return JSONResponse(
        {
            "project_id": project_id,
            "from": start,
            "to": end,
            "added": [item(c, value=c.new) for c in changes if c.op == "added"],
            "removed": [item(c, value=c.old) for c in changes if c.op == "removed"],
            "changed": [
                item(c, old=c.old, new=c.new)
                for c in changes
                if c.op == "changed" and c.old is not MISSING
            ],
        }
    )


# -- snapshots --------------------------------------------------------------------------


async def list_snapshots(request: Request) -> Response:
    project_id = await readable_project(request)
    await caught_up(request)
    await known_version(request, project_id)
    items = await project_reads.snapshots(store_of(request).queries, project_id)
    return JSONResponse({"project_id": project_id, "snapshots": items})


async def create_snapshot(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    body = await body_of(request, history.NewSnapshot)
    tagged = await history.snapshot(
        principal,
        project_id,
        body,
        store=store_of(request),
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "name": body.name,
            "description": body.description,
            "version": tagged.version,
            "event_version": tagged.event_version,
            "position": tagged.position,
            "daid": tagged.daid,
        },
        status_code=201,
    )


# -- rollback ---------------------------------------------------------------------------


async def rollback(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    live = live_of(request)
    body = await body_of(request, history.RollbackRequest)
    done = await history.rollback(
        principal,
        project_id,
        body,
        store=store_of(request),
        rooms=live.rooms,
        models=models_of(request),
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "version": done.version,
            "position": done.position,
            "daid": done.daid,
            "target_version": done.target_version,
            "target_snapshot": body.snapshot,
            "changed": done.changed,
        }
    )


async def revert(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    body = await body_of(request, history.RevertRequest)
    done = await history.revert(
        principal,
        project_id,
        body,
        store=store_of(request),
        rooms=live_of(request).rooms,
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "version": done.version,
            "position": done.position,
            "daid": done.daid,
            "from_version": done.from_version,
            "to_version": done.to_version,
            "changes": done.changes,
        }
    )


routes = [
    Route("/api/projects/{project_id}/history", get_history, methods=["GET"]),
    Route("/api/projects/{project_id}/versions/{version:int}", get_version, methods=["GET"]),
    Route("/api/projects/{project_id}/diff", get_diff, methods=["GET"]),
    Route("/api/projects/{project_id}/snapshots", list_snapshots, methods=["GET"]),
    Route("/api/projects/{project_id}/snapshots", create_snapshot, methods=["POST"]),
    Route("/api/projects/{project_id}/rollback", rollback, methods=["POST"]),
    Route("/api/projects/{project_id}/revert", revert, methods=["POST"]),
]
