"""Projects in and out of the server in other tools' formats: a Standard MIDI File of
any version, and one read into a new project or an existing one (``music.midi``,
``collab.services.interchange``; docs/interchange.md)."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import (
    ApiError,
    body_of,
    correlation_of,
    field_error,
    live_of,
    principal_of,
)
from collab.http.params import (
    int_param,
    known_version,
    project_id_of,
    readable_project,
    store_of,
    view_at,
)
from collab.http.responses import JSONResponse
from collab.services import interchange
from events.models import project_stream
from music import midi, projectfile
from projections import project_reads

#: the choices of ``?silent=``: what happens to muted (or not soloed) tracks
SILENT = ("leave", "include")


async def export_midi(request: Request) -> Response:
    project_id = await readable_project(request)
    current = await known_version(request, project_id)
    version = int_param(request, "version", current, 1, current)
    silent = request.query_params.get("silent", "leave")
    if silent not in SILENT:
        message = f"one of {', '.join(SILENT)}"
        raise ApiError(422, f"invalid silent: {message}", [field_error("silent", message)])
    document = await view_at(request, project_id, version)
    exported = midi.export(document, include_silent=silent == "include")
    name = document.get("meta", {}).get("name")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name if isinstance(name, str) else "")[:60]
    return Response(
        exported.data,
        media_type="audio/midi",
        headers={
            "Content-Disposition": f'attachment; filename="{stem or "project"}-v{version}.mid"',
            "X-Collab-Version": str(version),
            # ids may hold any character: percent-encoded, as a header must be ASCII
            "X-Collab-Left-Out": ",".join(quote(i, safe="") for i in exported.left_out),
        },
    )


async def _import(request: Request, project_id: str | None) -> Response:
    principal = await principal_of(request)
    body = await body_of(request, interchange.MidiImport)
    done = await interchange.import_midi(
        principal,
        body,
        project_id,
        rooms=live_of(request).rooms,
        store=store_of(request),
        correlation_id=correlation_of(request),
    )
    return JSONResponse(
        {
            "project_id": done.project_id,
            "created": done.created,
            "version": done.version,
            "position": done.position,
            "tracks": done.tracks,
            "notes": done.notes,
            "provenance_daid": done.provenance_daid,
            "content_hash": done.content_hash,
        },
        status_code=201 if done.created else 200,
    )


async def import_new(request: Request) -> Response:
    return await _import(request, None)


async def import_into(request: Request) -> Response:
    return await _import(request, project_id_of(request))


async def export_json(request: Request) -> Response:
    project_id = await readable_project(request)
    current = await known_version(request, project_id)
    version = int_param(request, "version", current, 1, current)
    view = await view_at(request, project_id, version)
    store = store_of(request)
    file = projectfile.export(
        view,
        project_id=project_id,
        version=version,
        daid=await store.version_daid(project_stream(project_id), version),
        snapshots=await project_reads.snapshots(store.queries, project_id),
    )
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", file["project"]["name"])[:60] or "project"
    return JSONResponse(
        file,
        headers={"Content-Disposition": f'attachment; filename="{stem}-v{version}.collab.json"'},
    )


async def import_json(request: Request) -> Response:
    principal = await principal_of(request)
    file = await body_of(request, projectfile.ProjectFile)
    created = await interchange.import_file(
        principal, file, store=store_of(request), correlation_id=correlation_of(request)
    )
    return JSONResponse(
        {
            "id": created.project_id,
            "version": created.version,
            "position": created.position,
            "daid": created.daid,
        },
        status_code=201,
    )


routes = [
    Route("/api/projects/{project_id}/export.mid", export_midi, methods=["GET"]),
    Route("/api/projects/{project_id}/export.json", export_json, methods=["GET"]),
    Route("/api/imports/midi", import_new, methods=["POST"]),
    Route("/api/imports/json", import_json, methods=["POST"]),
    Route("/api/projects/{project_id}/imports/midi", import_into, methods=["POST"]),
]
