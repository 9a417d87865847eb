"""The HTTP API services use to attach what they know: analysis results of a project
version, and provenance records of things made outside the document (renders,
exports, imports, generated material).

Recording either is a command (``collab.services.provenance``); analyses are read
back from their read model.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import body_of, correlation_of, principal_of
from collab.http.params import (
    caught_up,
    int_param,
    known_version,
    models_of,
    project_id_of,
    readable_project,
    store_of,
)
from collab.http.responses import JSONResponse
from collab.services import provenance


async def create_analysis(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    body = await body_of(request, provenance.NewAnalysis)
    done = await provenance.record_analysis(
        principal,
        project_id,
        body,
        store=store_of(request),
        models=models_of(request),
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "daid": done.record.daid,
            "position": done.record.position,
            "event_version": done.record.event_version,
            "project_id": project_id,
            "type": body.type,
            "target": {**done.target.model_dump(), "daid": done.target_daid},
            "parents": list(done.record.parents),
        },
        status_code=201,
    )


async def list_analyses(request: Request) -> Response:
    project_id = await readable_project(request)
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
    principal = await principal_of(request)
    body = await body_of(request, provenance.NewProvenance)
    recorded = await provenance.record_provenance(
        principal, body, store=store_of(request), correlation_id=correlation_of(request)
    )
    return JSONResponse(
        {
            "daid": recorded.daid,
            "position": recorded.position,
            "stream_id": recorded.stream_id,
            "parents": list(recorded.parents),
        },
        status_code=201,
    )


routes = [
    Route("/api/projects/{project_id}/analyses", create_analysis, methods=["POST"]),
    Route("/api/projects/{project_id}/analyses", list_analyses, methods=["GET"]),
    Route("/api/provenance", create_provenance, methods=["POST"]),
]
