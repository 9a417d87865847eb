"""The HTTP API services use to attach what they know: analysis results of a project
version, and provenance records of things made outside the document (renders,
exports, imports, generated material).

Both append events whose DAID names its parents: the analysed (or rendered) project
version's DAID and the declared inputs, which may be DAIDs minted elsewhere.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.api import ApiError, actor_of, body_of, correlation_of, invalid
from collab.http.params import (
    caught_up,
    field_error,
    int_param,
    known_version,
    parse_project_id,
    project_id_of,
    store_of,
    view_at,
)
from collab.http.responses import JSONResponse
from events import EventMetadata, NewEvent
from events.analysis import check_results
from events.models import (
    AiInvolvement,
    AnalysisRecorded,
    AnalysisTarget,
    DaidStr,
    EntityRef,
    ProvenanceRecorded,
    ToolInfo,
    project_stream,
)
from events.store import ANY

#: the stream of provenance records that belong to no project
GLOBAL_PROVENANCE_STREAM = "provenance"
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)] | None = None
    track_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    clip_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _clip_needs_track(self) -> TargetIn:
        if self.clip_id is not None and self.track_id is None:
            raise ValueError("a clip is named within its track: give track_id too")
        return self


class NewAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Identifier
    target: TargetIn = TargetIn()
    inputs: Annotated[list[DaidStr], Field(max_length=1000)] = []
    results: dict[str, JsonValue]
    tool: ToolInfo


class NewProvenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    version: Annotated[int, Field(ge=1)] | None = None
    entity: EntityRef
    activity: Identifier
    tool: ToolInfo
    ai_involvement: AiInvolvement = "none"
    derived_from: Annotated[list[DaidStr], Field(max_length=1000)] = []
    attributes: dict[str, JsonValue] = {}

    @model_validator(mode="after")
    def _version_needs_project(self) -> NewProvenance:
        if self.version is not None and self.project_id is None:
            raise ValueError("version names a project version: give project_id too")
        return self


def _metadata(request: Request, tool: ToolInfo) -> EventMetadata:
    # The DAID's agent is the service that made the record, as in the ecosystem's DAIDs.
    return EventMetadata(
        actor=actor_of(request), agent_id=tool.agent_id, correlation_id=correlation_of(request)
    )


async def _target_version(request: Request, project_id: str, asked: int | None) -> int:
    current = await known_version(request, project_id)
    if asked is None:
        return current
    if asked > current:
        message = f"project {project_id} has versions 1 to {current}"
        raise ApiError(422, f"invalid target.version: {message}", [field_error("version", message)])
    return asked


async def _check_parts(request: Request, project_id: str, target: TargetIn, version: int) -> None:
    """The named track and clip must exist in the analysed version."""
    if target.track_id is None:
        return
    view = await view_at(request, project_id, version)
    track = (view.get("tracks") or {}).get(target.track_id)
    if not isinstance(track, dict):
        message = f"no track {target.track_id!r} at version {version}"
        raise ApiError(
            422, f"invalid target.track_id: {message}", [field_error("target.track_id", message)]
        )
    if target.clip_id is not None and target.clip_id not in (track.get("clips") or {}):
        message = f"no clip {target.clip_id!r} in track {target.track_id!r} at version {version}"
        raise ApiError(
            422, f"invalid target.clip_id: {message}", [field_error("target.clip_id", message)]
        )


async def create_analysis(request: Request) -> Response:
    project_id = project_id_of(request)
    body = await body_of(request, NewAnalysis)
    try:
        results = check_results(body.type, body.results)
    except ValidationError as exc:
        raise invalid(exc, "results") from None
    store = store_of(request)
    version = await _target_version(request, project_id, body.target.version)
    await _check_parts(request, project_id, body.target, version)
    stream_id = project_stream(project_id)
    target_daid = await store.version_daid(stream_id, version)
    event = AnalysisRecorded(
        analysis_type=body.type,
        target=AnalysisTarget(
            version=version, track_id=body.target.track_id, clip_id=body.target.clip_id
        ),
        inputs=tuple(body.inputs),
        results=results,
        tool=body.tool,
    )
    parents = (*((target_daid,) if target_daid else ()), *body.inputs)
    result = await store.append(
        stream_id, [NewEvent(event, _metadata(request, body.tool), parents=parents)], ANY
    )
    return JSONResponse(
        {
            "daid": result.daids[0],
            "position": result.position,
            "event_version": result.version,
            "project_id": project_id,
            "type": body.type,
            "target": {**event.target.model_dump(), "daid": target_daid},
            "parents": list(dict.fromkeys(parents)),
        },
        status_code=201,
    )


async def list_analyses(request: Request) -> Response:
    project_id = project_id_of(request)
    await caught_up(request)
    await known_version(request, project_id)
    params = request.query_params
    limit = int_param(request, "limit", 50, 1, 500)
    before = int_param(request, "cursor", 2**62, 1, 2**62)
    conditions = ["project_id = $1", "position < $2"]
    args: list[Any] = [project_id, before]
    for name, column in (("type", "analysis_type"), ("track_id", "track_id")):
        if name in params:
            args.append(params[name])
            conditions.append(f"{column} = ${len(args)}")
    if "version" in params:
        args.append(int_param(request, "version", None, 1, 2**62))
        conditions.append(f"target_version = ${len(args)}")
    args.append(limit + 1)
    rows = await store_of(request).queries.fetch(
        "select position, event_version, daid, analysis_type, target_version, target_daid,"
        " track_id, clip_id, inputs, results, tool, actor, recorded_at"
        f" from project_analysis_results where {' and '.join(conditions)}"
        f" order by position desc limit ${len(args)}",
        *args,
    )
    items = [_analysis_json(row) for row in rows[:limit]]
    cursor = rows[limit - 1]["position"] if len(rows) > limit else None
    return JSONResponse({"project_id": project_id, "analyses": items, "next_cursor": cursor})


def _analysis_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "daid": row["daid"],
        "type": row["analysis_type"],
        "position": row["position"],
        "event_version": row["event_version"],
        "target": {
            "version": row["target_version"],
            "daid": row["target_daid"],
            "track_id": row["track_id"],
            "clip_id": row["clip_id"],
        },
        "inputs": json.loads(row["inputs"]),
        "results": json.loads(row["results"]),
        "tool": json.loads(row["tool"]),
        "actor": row["actor"],
        "recorded_at": row["recorded_at"].isoformat(),
    }


async def create_provenance(request: Request) -> Response:
    body = await body_of(request, NewProvenance)
    store = store_of(request)
    parents: tuple[str, ...] = tuple(body.derived_from)
    if body.project_id is not None:
        project_id = parse_project_id(body.project_id)
        version = await _target_version(request, project_id, body.version)
        stream_id = project_stream(project_id)
        version_daid = await store.version_daid(stream_id, version)
        if version_daid is not None:
            parents = (version_daid, *parents)
    else:
        stream_id = GLOBAL_PROVENANCE_STREAM
    event = ProvenanceRecorded(
        entity=body.entity,
        activity=body.activity,
        tool=body.tool,
        ai_involvement=body.ai_involvement,
        derived_from=tuple(body.derived_from),
        attributes=body.attributes,
    )
    result = await store.append(
        stream_id, [NewEvent(event, _metadata(request, body.tool), parents=parents)], ANY
    )
    return JSONResponse(
        {
            "daid": result.daids[0],
            "position": result.position,
            "stream_id": stream_id,
            "parents": list(dict.fromkeys(parents)),
        },
        status_code=201,
    )


routes = [
    Route("/api/projects/{project_id}/analyses", create_analysis, methods=["POST"]),
    Route("/api/projects/{project_id}/analyses", list_analyses, methods=["GET"]),
    Route("/api/provenance", create_provenance, methods=["POST"]),
]
