"""The HTTP JSON API of the live path: projects, the document, typed edits, metrics.

Errors are JSON ``{"error": status, "message": ..., "fields": [...]}``; request bodies
are validated by pydantic and a bad field is a 422 naming it.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any, TypeVar

import pycrdt
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http import jsonbody
from collab.http.responses import JSONResponse, error_response
from collab.live import protocol
from collab.live.hub import Live
from collab.live.room import Room
from collab.live.rooms import UnknownProject
from collab.live.writer import Committed, WriterError
from events import EventMetadata, NewEvent
from events.errors import EventStoreError, InvalidEvent, StoreUnavailable
from events.models import DocUpdated, ProjectCreated
from events.store import NO_STREAM
from music import document, edits
from projections import quarantine
from projections.progress import ProjectionProgress

M = TypeVar("M", bound=BaseModel)
log = structlog.get_logger("collab.http.api")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    tempo: Annotated[float, Field(gt=0, le=1000)] = 120.0
    time_signature: Annotated[str, Field(pattern=r"^[1-9][0-9]?/(1|2|4|8|16|32)$")] = "4/4"
    sample_rate: Annotated[int, Field(ge=8000, le=384000)] = 48000


def actor_of(request: Request) -> str:
    # No authentication yet: callers name themselves (defaults to "api").
    actor = request.headers.get("x-actor", "api").strip()
    if "\x00" in actor:
        raise ApiError(400, "X-Actor holds a NUL character, which cannot be stored")
    return actor[:200] or "api"


def correlation_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


async def body_of(request: Request, model: type[M]) -> M:
    """The body as ``model``. Its size, media type and origin were checked before it was
    read (``collab.http.guards``); here: JSON only, nothing PostgreSQL cannot store, then the
    model (400 or 422 naming the field)."""
    raw = await request.body()
    try:
        data = jsonbody.loads(raw)
    except jsonbody.BadJson as exc:
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else None
        raise ApiError(exc.status, exc.message, fields) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming every bad field (``prefix`` places a nested model in the body)."""
    head = [prefix] if prefix else []
    fields = [
        {
            "field": ".".join([*head, *(str(part) for part in error["loc"])]) or "body",
            "message": error["msg"],
        }
        for error in exc.errors()
    ]
    first = fields[0]
    return ApiError(422, f"invalid {first['field']}: {first['message']}", fields)


def live_of(request: Request) -> Live:
    live: Live = request.app.state.live
    if live.draining:
        raise ApiError(503, "server is shutting down")
    return live


def _committed(done: Committed) -> dict[str, Any]:
    return {"version": done.version, "position": done.position, "daid": done.daid}


async def create_project(request: Request) -> Response:
    live = live_of(request)
    body = await body_of(request, NewProject)
    project_id = str(uuid.uuid4())
    actor = actor_of(request)
    metadata = EventMetadata(actor=actor, correlation_id=correlation_of(request))
    initial = document.new_document()
    meta = initial.get(document.META, type=pycrdt.Map)
    with initial.transaction():
        meta["name"] = body.name
        meta["tempo"] = body.tempo
        meta["time_signature"] = body.time_signature
        meta["sample_rate"] = body.sample_rate
    created = ProjectCreated(name=body.name, owner=actor, metadata=body.metadata)
    events = [
        NewEvent(created, metadata),
        NewEvent(DocUpdated(update=initial.get_update(), client_id=initial.client_id), metadata),
    ]
    result = await live.store.append(f"project-{project_id}", events, NO_STREAM)
    return JSONResponse(
        {
            "id": project_id,
            "name": body.name,
            "version": result.version,
            "position": result.position,
            "daid": result.daids[0],
        },
        status_code=201,
        headers={"Location": f"/api/projects/{project_id}"},
    )


async def get_document(request: Request) -> Response:
    live = live_of(request)
    room = await acquire(live, request.path_params["project_id"])
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
    live = live_of(request)
    body = await body_of(request, edits.EditRequest)
    room = await acquire(live, request.path_params["project_id"])
    try:
        try:
            update = edits.apply(room.doc, list(body.operations))
        except edits.EditConflict as exc:
            raise ApiError(
                422, str(exc), [{"field": f"operations.{exc.index}", "message": str(exc)}]
            ) from None
        try:
            future = room.submit(
                update, origin=None, actor=actor_of(request), correlation_id=correlation_of(request)
            )
        except WriterError as exc:
            raise ApiError(503, f"edit not accepted: {exc}") from None
        except protocol.MalformedUpdate as exc:
            raise ApiError(422, f"edit not accepted: {exc}") from None
        if future is None:
            return JSONResponse(
                {"version": room.version, "position": room.position, "daid": None, "changed": False}
            )
        done = await future
        return JSONResponse({**_committed(done), "changed": True})
    finally:
        live.rooms.release(room)


async def acquire(live: Live, project_id: str) -> Room:
    try:
        return await live.rooms.acquire(project_id)
    except UnknownProject as exc:
        raise ApiError(404, str(exc)) from None


async def metrics(request: Request) -> Response:
    live: Live = request.app.state.live
    progress: ProjectionProgress = request.app.state.projections
    # The projections may fold in another process: their quarantine is counted from
    # the database. Without it the gauge keeps its last value.
    with contextlib.suppress(EventStoreError):
        counts = await quarantine.counts(request.app.state.store.queries)
        live.metrics.quarantined(progress.names, counts)
    return Response(generate_latest(live.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return error_response(exc.status, exc.message, exc.fields)


async def store_error(request: Request, exc: Exception) -> Response:
    """The store's message stays in the log: it may quote the database (its text, a
    statement), which is no business of the client's."""
    assert isinstance(exc, EventStoreError)  # noqa: S101 - registered for store errors only
    if isinstance(exc, StoreUnavailable):
        log.warning("database unavailable", error=str(exc))
        return error_response(503, "database unavailable; retry later")
    if isinstance(exc, InvalidEvent):
        return error_response(422, str(exc))  # the event model's words, not the database's
    log.error("event store error", error=str(exc), exc_info=exc)
    return internal_error(correlation_of(request))


def internal_error(request_id: str | None) -> Response:
    """A 500 that says only where to look: the request id the log has the traceback under."""
    return JSONResponse(
        {
            "error": 500,
            "message": f"internal error; the server log has it under request id {request_id}",
            "request_id": request_id,
        },
        status_code=500,
    )


routes = [
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects/{project_id}/document", get_document, methods=["GET"]),
    Route("/api/projects/{project_id}/edits", post_edits, methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
]
