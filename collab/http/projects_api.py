"""The HTTP API of the read side: project list and view, history, time travel,
snapshots and rollback.

Reads come from the projections' tables. Every read takes ``?min_position=N`` and
first waits (at most ``COLLAB_PROJECTION_WAIT`` seconds, then 503) until every
projection has folded position N, so a client that just wrote reads its own write.
Rollback appends through the live path, so connected editors receive it at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.api import ApiError, acquire, actor_of, body_of, correlation_of, live_of
from collab.http.params import (
    caught_up,
    duration,
    field_error,
    int_param,
    known_version,
    progress_of,
    project_id_of,
    settings_of,
    store_of,
    view_at,
)
from collab.http.responses import JSONResponse
from collab.live.writer import WriterError
from events import EventMetadata, NewEvent, WrongExpectedVersion
from events.models import ProjectRolledBack, SnapshotTagged, project_stream
from music.diff import MISSING, diff
from music.rollback import restoring_update
from music.updates import EMPTY_UPDATE
from projections import project_reads

#: attempts at tagging a snapshot while other writers keep appending to the project
SNAPSHOT_ATTEMPTS = 50


class NewSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)] | None = None
    snapshot: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RollbackRequest:
        if (self.version is None) == (self.snapshot is None):
            raise ValueError("give exactly one of version or snapshot")
        return self


# -- reads ------------------------------------------------------------------------------


async def list_projects(request: Request) -> Response:
    await caught_up(request)
    params = request.query_params
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
            member=params.get("member") or None,
            updated_since=updated_since,
            limit=int_param(request, "limit", 50, 1, 200),
            cursor=params.get("cursor"),
        )
    except project_reads.BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse({"projects": page.items, "next_cursor": page.next_cursor})


async def get_project(request: Request) -> Response:
    project_id = project_id_of(request)
    await caught_up(request)
    view = await project_reads.get_project(store_of(request).queries, project_id)
    if view is None:
        await known_version(request, project_id)
        raise ApiError(
            503, f"project {project_id} is not in the read model yet; retry with ?min_position"
        )
    return JSONResponse(view)


async def get_history(request: Request) -> Response:
    project_id = project_id_of(request)
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
    project_id = project_id_of(request)
    version = int(request.path_params["version"])
    current = await known_version(request, project_id)
    if not 1 <= version <= current:
        raise ApiError(404, f"project {project_id} has no version {version} (1 to {current})")
    view = await view_at(request, project_id, version)
    return JSONResponse({"project_id": project_id, "version": version, "document": view})


async def get_diff(request: Request) -> Response:
    project_id = project_id_of(request)
    start = int_param(request, "from", None, 1, 2**62)
    end = int_param(request, "to", None, 1, 2**62)
    current = await known_version(request, project_id)
    for version in (start, end):
        if version > current:
            raise ApiError(404, f"project {project_id} has no version {version} (1 to {current})")
    before = await view_at(request, project_id, start)
    after = await view_at(request, project_id, end)
    changes = diff(before, after)
    return JSONResponse(
        {
            "project_id": project_id,
            "from": start,
            "to": end,
            "added": [{"path": list(c.path), "value": c.new} for c in changes if c.op == "added"],
            "removed": [
                {"path": list(c.path), "value": c.old} for c in changes if c.op == "removed"
            ],
            "changed": [
                {"path": list(c.path), "old": c.old, "new": c.new}
                for c in changes
                if c.op == "changed" and c.old is not MISSING
            ],
        }
    )


# -- snapshots --------------------------------------------------------------------------


async def list_snapshots(request: Request) -> Response:
    project_id = project_id_of(request)
    await caught_up(request)
    await known_version(request, project_id)
    items = await project_reads.snapshots(store_of(request).queries, project_id)
    return JSONResponse({"project_id": project_id, "snapshots": items})


async def create_snapshot(request: Request) -> Response:
    """Tag the current version. Names are unique per project: the read model knows the
    tags up to the version it has folded, the log the ones after it, and the append
    expects exactly the version that was checked, so two racing tags cannot both win."""
    project_id = project_id_of(request)
    body = await body_of(request, NewSnapshot)
    store = store_of(request)
    await known_version(request, project_id)
    stream_id = project_stream(project_id)
    # The version first: whatever the read model folds after this read is still in the
    # log after that version, which is read below (the other order can miss a tag).
    checked = await project_reads.project_version(store.queries, project_id) or 0
    names = {s["name"] for s in await project_reads.snapshots(store.queries, project_id)}
    metadata = EventMetadata(actor=actor_of(request), correlation_id=correlation_of(request))
    for _attempt in range(SNAPSHOT_ATTEMPTS):
        while True:
            newer = await store.read_stream(stream_id, from_version=checked + 1, limit=1000)
            for event in newer:
                if event.event_type == SnapshotTagged.event_type:
                    names.add(str(event.data["name"]))
                checked = event.stream_version
            if len(newer) < 1000:
                break
        if body.name in names:
            raise ApiError(409, f"project {project_id} already has a snapshot named {body.name!r}")
        tag = SnapshotTagged(name=body.name, description=body.description, version=checked)
        tagged = await store.version_daid(stream_id, checked)
        parents = (tagged,) if tagged is not None else ()
        try:
            result = await store.append(
                stream_id, [NewEvent(tag, metadata, parents=parents)], checked
            )
        except WrongExpectedVersion:
            continue  # someone appended meanwhile: look at what, then try again
        return JSONResponse(
            {
                "name": body.name,
                "description": body.description,
                "version": checked,
                "event_version": result.version,
                "position": result.position,
                "daid": result.daids[0],
            },
            status_code=201,
        )
    raise ApiError(503, "the project kept changing while tagging; retry")


# -- rollback ---------------------------------------------------------------------------


async def rollback(request: Request) -> Response:
    """Append ``project.rolled_back`` with the update that restores the target version,
    through the live path: every connected editor receives it as an ordinary update."""
    project_id = project_id_of(request)
    live = live_of(request)
    body = await body_of(request, RollbackRequest)
    store = store_of(request)
    room = await acquire(live, project_id)
    try:
        if body.snapshot is not None:
            # A tag made just before must be visible: read the model at the log's head.
            head = await store.head_position()
            if not await progress_of(request).wait(head, settings_of(request).projection_wait):
                raise ApiError(503, "read models are behind the log; retry later")
            tagged = await project_reads.snapshot(store.queries, project_id, body.snapshot)
            if tagged is None:
                raise ApiError(404, f"project {project_id} has no snapshot named {body.snapshot!r}")
            target_version = int(tagged["version"])
        else:
            assert body.version is not None  # noqa: S101 - the model requires one of both
            target_version = body.version
            current = await store.stream_version(room.stream_id)
            if target_version > current:
                raise ApiError(
                    404, f"project {project_id} has no version {target_version} (1 to {current})"
                )
        target = await project_reads.document_at(store, store.queries, project_id, target_version)
        target_daid = await store.version_daid(room.stream_id, target_version)
        update = restoring_update(room.doc, target.doc)
        event = ProjectRolledBack(
            target_version=target_version, target_snapshot=body.snapshot, update=update
        )
        try:
            future = room.submit(
                update,
                origin=None,
                actor=actor_of(request),
                correlation_id=correlation_of(request),
                event=event,
                parents=(target_daid,) if target_daid is not None else (),
            )
        except WriterError as exc:
            raise ApiError(503, f"rollback not accepted: {exc}") from None
        assert future is not None  # noqa: S101 - an explicit event is always appended
        done = await future
    finally:
        live.rooms.release(room)
    return JSONResponse(
        {
            "version": done.version,
            "position": done.position,
            "daid": done.daid,
            "target_version": target_version,
            "target_snapshot": body.snapshot,
            "changed": update != EMPTY_UPDATE,
        }
    )


routes = [
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects/{project_id}", get_project, methods=["GET"]),
    Route("/api/projects/{project_id}/history", get_history, methods=["GET"]),
    Route("/api/projects/{project_id}/versions/{version:int}", get_version, methods=["GET"]),
    Route("/api/projects/{project_id}/diff", get_diff, methods=["GET"]),
    Route("/api/projects/{project_id}/snapshots", list_snapshots, methods=["GET"]),
    Route("/api/projects/{project_id}/snapshots", create_snapshot, methods=["POST"]),
    Route("/api/projects/{project_id}/rollback", rollback, methods=["POST"]),
]
