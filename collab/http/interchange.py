"""Projects out of the server in other tools' formats: a Standard MIDI File of any
version (``music.midi``; docs/interchange.md)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import ApiError, field_error
from collab.http.params import int_param, known_version, readable_project, view_at
from music import midi

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
            "X-Collab-Left-Out": ",".join(exported.left_out),
        },
    )


routes = [
    Route("/api/projects/{project_id}/export.mid", export_midi, methods=["GET"]),
]
