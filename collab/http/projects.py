"""The HTTP API of projects: create one, list them, a project's summary, its live
document, typed edits (``music.edits``).

Creation and edits are commands (``collab.services.projects``); edits and the live
document go through the project's room, so they see (and are seen by) every
connected editor at once.
"""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import ApiError, body_of, correlation_of, field_error, live_of, principal_of
from collab.http.params import (
    caught_up,
    int_param,
    known_version,
    project_id_of,
    readable_project,
    store_of,
)
from collab.http.responses import JSONResponse
from collab.services import projects
from collab.services.authorize import standing
from collab.services.lookup import acquire
from music import document, edits
from projections import project_reads


async def create_project(request: Request) -> Response:
    principal = await principal_of(request)
    live = live_of(request)
    body = await body_of(request, projects.NewProject)
    created = await projects.create(
        principal, body, store=live.store, correlation_id=correlation_of(request)
    )
    return JSONResponse(
        {
            "id": created.project_id,
            "name": body.name,
            "version": created.version,
            "position": created.position,
            "daid": created.daid,
        },
        status_code=201,
        headers={"Location": f"/api/projects/{created.project_id}"},
    )


async def list_projects(request: Request) -> Response:
    principal = await principal_of(request)
    await caught_up(request)
    params = request.query_params
    member = params.get("member") or None
    if not (principal.is_admin or principal.is_auditor):
        # Only the projects the caller is a member of (as the read model knows them:
        # a grant shows here once the projections have folded it).
        if member is not None and member != principal.actor:
            return JSONResponse({"projects": [], "next_cursor": None})
        member = principal.actor
    updated_since = None
    if "updated_since" in params:
        try:
            updated_since = datetime.fromisoformat(params["updated_since"])
        except ValueError:
            message = "expected an ISO 8601 time, e.g. 2026-11-21T10:00:00+00:00"
            raise ApiError(
                422, f"invalid updated_since: {message}", [field_error("updated_since", message)]
            ) from None
        if updated_since.tzinfo is None:
            message = "give a time zone (e.g. +00:00 or Z)"
            raise ApiError(
                422, f"invalid updated_since: {message}", [field_error("updated_since", message)]
            )
    try:
        page = await project_reads.list_projects(
            store_of(request).queries,
            name=params.get("name") or None,
            member=member,
            updated_since=updated_since,
            limit=int_param(request, "limit", 50, 1, 200),
            cursor=params.get("cursor"),
        )
    except project_reads.BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse({"projects": page.items, "next_cursor": page.next_cursor})


async def get_project(request: Request) -> Response:
    project_id = project_id_of(request)
    # who asks, and whether their edits would be stored (the studio's controls)
    you = await standing(await principal_of(request), project_id, log=store_of(request))
    await caught_up(request)
    view = await project_reads.get_project(store_of(request).queries, project_id)
    if view is None:
        await known_version(request, project_id)
        raise ApiError(
            503, f"project {project_id} is not in the read model yet; retry with ?min_position"
        )
    return JSONResponse({**view, "you": you})


async def get_document(request: Request) -> Response:
    project_id = await readable_project(request)
    live = live_of(request)
    room = await acquire(live.rooms, project_id)
    try:
        return JSONResponse(
            {
                "project_id": room.project_id,
                "version": room.version,
                "position": room.position,
                "document": document.to_json(room.doc),
            }
        )
    finally:
        live.rooms.release(room)


async def post_edits(request: Request) -> Response:
    principal = await principal_of(request)
    live = live_of(request)
    body = await body_of(request, edits.EditRequest)
    edited = await projects.edit(
        principal,
        request.path_params["project_id"],
        body.operations,
        rooms=live.rooms,
        store=live.store,
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "version": edited.version,
            "position": edited.position,
            "daid": edited.daid,
            "changed": edited.changed,
        }
    )


async def fork_project(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    body = await body_of(request, projects.ForkRequest)
    forked = await projects.fork(
        principal, project_id, body, store=store_of(request), correlation_id=correlation_of(request)
    )
    created = forked.created
    return JSONResponse(
        {
            "id": created.project_id,
            "version": created.version,
            "position": created.position,
            "daid": created.daid,
            "source": {
                "project_id": project_id,
                "version": forked.source_version,
                "daid": forked.source_daid,
            },
        },
        status_code=201,
    )


routes = [
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects/{project_id}", get_project, methods=["GET"]),
    Route("/api/projects/{project_id}/document", get_document, methods=["GET"]),
    Route("/api/projects/{project_id}/edits", post_edits, methods=["POST"]),
    Route("/api/projects/{project_id}/fork", fork_project, methods=["POST"]),
]
