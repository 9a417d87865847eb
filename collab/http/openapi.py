"""The OpenAPI 3.1 document served at ``/api/openapi.json``.

Operations are declared here next to each other, request bodies are the pydantic
models the handlers validate with, and a test checks that every HTTP route of the
app is declared (so the document cannot silently fall behind the code).

Why this module is over 400 lines: it is one document, an operation per route, read
top to bottom like the API it describes; split, a route's description would be harder
to find than the route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from collab.http.responses import JSONResponse
from collab.services import history, interchange, members, projects, provenance
from music import edits, projectfile

_PATH_PARAM = re.compile(r"{(?P<name>[a-z_]+)(?::(?P<kind>[a-z]+))?}")


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    kind: str = "string"
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    responses: tuple[tuple[int, str], ...]
    body: type[BaseModel] | None = None
    query: tuple[Param, ...] = ()


MIN_POSITION = Param(
    "min_position",
    "Wait (bounded; then 503) until the read models have folded this global position.",
    "integer",
)
LIMIT = Param("limit", "Page size.", "integer")
CURSOR = Param("cursor", "Opaque cursor from the previous page's next_cursor.")
NOT_FOUND = (404, "Unknown project (or version, snapshot)")
INVALID = (422, "Invalid input; `fields` names each bad field")
UNAVAILABLE = (503, "Database unavailable, shutting down, or read models behind")
AS_OF = Param("as_of", "Answer with what the log knew at this position or ISO-8601 time.")
#: what the request checks (``collab.http.guards``) answer on any route, and on writes
EVERY_ROUTE = (
    (400, "Host not allowed, or a NUL character in the path or query"),
    (500, "Internal error; the body gives the request id the server log has it under"),
)
WRITES = (
    (400, "Body not JSON (UTF-8), or nested deeper than 64 levels"),
    (403, "Origin header names an origin not allowed to write"),
    (413, "Body over the size limit"),
    (415, "Content-Type is not application/json"),
    (422, "A NUL character, lone surrogate, NaN or infinity in the body; `fields` names it"),
)
WALK_PARAMS = (
    Param("depth", "Most edges from the DAID (default 50, at most 10000).", "integer"),
    Param("max_nodes", "Most nodes returned (default 1000); beyond, truncated.", "integer"),
    AS_OF,
    MIN_POSITION,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/health", "The process is alive", "service", ((200, "Alive"),)),
    Operation(
        "get",
        "/ready",
        "Database reachable, schema current, projection worker running, projections not failing",
        "service",
        (
            (200, "Ready, with each projection's state, position, lag and last error"),
            (503, "Not ready; reason"),
        ),
    ),
    Operation("get", "/metrics", "Prometheus metrics", "service", ((200, "Text exposition"),)),
    Operation(
        "get", "/api/openapi.json", "This document", "service", ((200, "OpenAPI 3.1 document"),)
    ),
    Operation("get", "/", "The web studio's page (docs/studio.md)", "studio", ((200, "HTML"),)),
    Operation(
        "get", "/studio/studio.js", "The web studio's script", "studio", ((200, "JavaScript"),)
    ),
    Operation(
        "get", "/studio/studio.css", "The web studio's stylesheet", "studio", ((200, "CSS"),)
    ),
    Operation(
        "post",
        "/api/projects",
        "Create a project",
        "projects",
        ((201, "Created: id, version, position, daid"), INVALID, UNAVAILABLE),
        body=projects.NewProject,
    ),
    Operation(
        "get",
        "/api/projects",
        "List projects, most recently changed first",
        "projects",
        ((200, "{projects, next_cursor}"), (400, "Bad cursor"), INVALID, UNAVAILABLE),
        query=(
            Param("name", "Name contains (case-insensitive)."),
            Param("member", "Projects this user is a member of."),
            Param("updated_since", "ISO 8601 time with zone."),
            LIMIT,
            CURSOR,
            MIN_POSITION,
        ),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}",
        "The project view: meta, tracks in order, sections, members, snapshots, analyses,"
        " and `you`: the caller's user, role and whether its edits are stored (may_edit)",
        "projects",
        ((200, "Project view"), NOT_FOUND, UNAVAILABLE),
        query=(MIN_POSITION,),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/document",
        "The live document as JSON",
        "live",
        ((200, "{version, position, document}"), NOT_FOUND, UNAVAILABLE),
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/edits",
        "Apply typed edit operations as one transaction",
        "live",
        ((200, "{version, position, daid, changed}"), NOT_FOUND, INVALID, UNAVAILABLE),
        body=edits.EditRequest,
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/history",
        "Versions newest first, with a summary of what changed",
        "history",
        ((200, "{entries, next_cursor}"), (400, "Bad cursor"), NOT_FOUND, INVALID, UNAVAILABLE),
        query=(
            LIMIT,
            CURSOR,
            Param("group", "`actor`: merge consecutive edits of one actor."),
            Param("window", "Largest gap inside a group (e.g. 5s, 500ms); default 5s."),
            MIN_POSITION,
        ),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/versions/{version}",
        "The document as of a version",
        "history",
        ((200, "{version, document}"), NOT_FOUND, UNAVAILABLE),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/diff",
        "Structured diff between two versions",
        "history",
        ((200, "{added, removed, changed}"), NOT_FOUND, INVALID, UNAVAILABLE),
        query=(
            Param("from", "Version to diff from.", "integer", required=True),
            Param("to", "Version to diff to.", "integer", required=True),
        ),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/snapshots",
        "Named snapshots of the project",
        "history",
        ((200, "{snapshots}"), NOT_FOUND, UNAVAILABLE),
        query=(MIN_POSITION,),
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/snapshots",
        "Tag the current version with a unique name",
        "history",
        ((201, "Tagged"), NOT_FOUND, (409, "Name already used"), INVALID, UNAVAILABLE),
        body=history.NewSnapshot,
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/members",
        "The project's members and their roles (owner, editor, viewer), from the log",
        "members",
        ((200, "{project_id, members: [{member, role}]}"), NOT_FOUND, UNAVAILABLE),
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/members",
        "Grant a user or service a role (owners and admins)",
        "members",
        (
            (201, "{member, role, previous_role, position, daid}"),
            NOT_FOUND,
            (409, "Would leave the project without an owner"),
            INVALID,
            UNAVAILABLE,
        ),
        body=members.NewMember,
    ),
    Operation(
        "delete",
        "/api/projects/{project_id}/members/{member}",
        "Revoke a member (owners and admins); their open sockets close with 4403",
        "members",
        (
            (200, "{member, role: null, previous_role, position, daid}"),
            (404, "Unknown project, or not a member"),
            (409, "The last owner"),
            UNAVAILABLE,
        ),
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/rollback",
        "Roll back to a version or snapshot (live: editors receive it at once)",
        "history",
        (
            (200, "{version, position, daid, target_version, changed}"),
            NOT_FOUND,
            INVALID,
            UNAVAILABLE,
        ),
        body=history.RollbackRequest,
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/analyses",
        "Record an analysis of a project version (typed results for audio_analysis,"
        " performance_analysis and transcription; free JSON for other types)",
        "provenance",
        ((201, "{daid, position, target, parents}"), NOT_FOUND, INVALID, UNAVAILABLE),
        body=provenance.NewAnalysis,
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/analyses",
        "Analyses of a project, newest first",
        "provenance",
        ((200, "{analyses, next_cursor}"), NOT_FOUND, INVALID, UNAVAILABLE),
        query=(
            Param("type", "Only this analysis type."),
            Param("track_id", "Only analyses of this track."),
            Param("version", "Only analyses of this project version.", "integer"),
            LIMIT,
            CURSOR,
            MIN_POSITION,
        ),
    ),
    Operation(
        "post",
        "/api/provenance",
        "Record provenance of an entity (render, export, import, generate, ...),"
        " attached to a project version or global",
        "provenance",
        ((201, "{daid, position, stream_id, parents}"), NOT_FOUND, INVALID, UNAVAILABLE),
        body=provenance.NewProvenance,
    ),
    Operation(
        "get",
        "/api/daids/{daid}",
        "One DAID: its node, parents, children and a check of its hashes",
        "lineage",
        ((200, "Node"), (404, "Unknown DAID"), INVALID, UNAVAILABLE),
        query=(AS_OF, MIN_POSITION),
    ),
    Operation(
        "get",
        "/api/daids/{daid}/lineage",
        "Ancestors and/or descendants of a DAID",
        "lineage",
        ((200, "{nodes, edges, truncated}"), (404, "Unknown DAID"), INVALID, UNAVAILABLE),
        query=(
            Param("direction", "ancestors (default), descendants or both."),
            *WALK_PARAMS,
        ),
    ),
    Operation(
        "get",
        "/api/daids/{daid}/prov",
        "W3C PROV-JSON of a DAID and its ancestors",
        "lineage",
        ((200, "PROV-JSON document"), (404, "Unknown DAID"), INVALID, UNAVAILABLE),
        query=WALK_PARAMS,
    ),
    Operation(
        "get",
        "/api/daids/{daid}/contributors",
        "People, services and AI models among a DAID's ancestors",
        "lineage",
        ((200, "{people, services, ai_models}"), (404, "Unknown DAID"), INVALID, UNAVAILABLE),
        query=WALK_PARAMS,
    ),
    Operation(
        "get",
        "/api/audit/checkpoint",
        "The newest signed checkpoint of the Merkle log: a C2SP signed note (text/plain),"
        " or its JSON view with Accept: application/json or ?format=json",
        "audit",
        (
            (
                200,
                "origin, tree size, base64 root, signature line (text); JSON: {tree_size,"
                " root, signed_at, key_id, signature, origin, note, public_key, verifier_key}",
            ),
            (404, "None signed yet (or, as text, none signed as a note yet)"),
        ),
        query=(Param("format", "json for the JSON view."),),
    ),
    Operation(
        "get",
        "/api/audit/receipt",
        "The inclusion receipt (C2SP tlog-proof@v1, text/plain) of the event at a position,"
        " under the newest checkpoint",
        "audit",
        (
            (200, "c2sp.org/tlog-proof@v1, index, base64 proof hashes, the checkpoint note"),
            (404, "No checkpoint covers the position yet"),
            INVALID,
        ),
        query=(Param("position", "The event's global position.", "integer", required=True),),
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/revert",
        "Undo one actor's (or agent's) changes between two versions as one forward update,"
        " live to every editor; others' edits stay",
        "history",
        (
            (200, "version, position, daid, from_version, to_version, changes"),
            NOT_FOUND,
            INVALID,
            UNAVAILABLE,
        ),
        body=history.RevertRequest,
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/fork",
        "A new project of the caller's from a version of this one (its creation derives from"
        " that version's DAID)",
        "projects",
        ((201, "id, version, position, daid, source {project_id, version, daid}"), NOT_FOUND),
        body=projects.ForkRequest,
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/export.mid",
        "A version of the project as a Standard MIDI File (type 1, 480 ticks per beat;"
        " docs/interchange.md)",
        "interchange",
        ((200, "audio/midi"), NOT_FOUND, INVALID),
        query=(
            Param("version", "The version to export (default: the current one).", "integer"),
            Param("silent", "Muted or not soloed tracks: leave (default) or include."),
        ),
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/export.json",
        "A version of the project as a project file (collab-project/1; docs/interchange.md)",
        "interchange",
        ((200, "{format, project, document, snapshots}"), NOT_FOUND, INVALID),
        query=(Param("version", "The version to export (default: the current one).", "integer"),),
    ),
    Operation(
        "post",
        "/api/imports/json",
        "A new project from a project file, derived from the exported version's DAID",
        "interchange",
        ((201, "id, version, position, daid"), INVALID, UNAVAILABLE),
        body=projectfile.ProjectFile,
    ),
    Operation(
        "post",
        "/api/imports/midi",
        "A new project from a Standard MIDI File (types 0 and 1; base64 in `file`)",
        "interchange",
        ((201, "project_id, version, tracks, notes, provenance_daid"), INVALID, UNAVAILABLE),
        body=interchange.MidiImport,
    ),
    Operation(
        "post",
        "/api/projects/{project_id}/imports/midi",
        "A Standard MIDI File's tracks added to the project",
        "interchange",
        ((200, "project_id, version, tracks, notes, provenance_daid"), NOT_FOUND, INVALID),
        body=interchange.MidiImport,
    ),
    Operation(
        "get",
        "/api/projects/{project_id}/audit-bundle",
        "The project's audit bundle (as `collab audit export` writes it), to verify offline",
        "audit",
        (
            (200, "{format, project_id, stream_id, checkpoint, public_key, events}"),
            (403, "Not a reader of the project"),
            (404, "No such project"),
        ),
    ),
    Operation(
        "get",
        "/api/audit/proof/inclusion",
        "RFC 6962 inclusion proof of the event at a position",
        "audit",
        ((200, "{leaf_hash, proof, root}"), (404, "No such event or checkpoint"), INVALID),
        query=(
            Param("position", "The event's global position.", "integer", required=True),
            Param("tree_size", "Tree size (default: the newest checkpoint's).", "integer"),
        ),
    ),
    Operation(
        "get",
        "/api/audit/proof/consistency",
        "RFC 6962 consistency proof between two tree sizes",
        "audit",
        ((200, "{from_root, to_root, proof}"), (404, "No checkpoint"), INVALID),
        query=(
            Param("from", "The older tree size.", "integer", required=True),
            Param("to", "The newer tree size (default: the newest checkpoint's).", "integer"),
        ),
    ),
)


@cache
def build() -> dict[str, Any]:
    models = [op.body for op in OPERATIONS if op.body is not None]
    keyed, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = _PATH_PARAM.sub(lambda m: "{" + m["name"] + "}", op.path)
        parameters = [
            {
                "name": m["name"],
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if m["kind"] == "int" else "string"},
            }
            for m in _PATH_PARAM.finditer(op.path)
        ]
        parameters += [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": {"type": p.kind},
            }
            for p in op.query
        ]
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": op.method + "_" + re.sub(r"[^a-z0-9]+", "_", path).strip("_"),
            "responses": _responses(op),
        }
        if parameters:
            operation["parameters"] = parameters
        if op.path.startswith("/api/") and op.path != "/api/openapi.json":
            operation["security"] = [{"bearer": []}]
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(op.body, "validation")]}},
            }
        paths.setdefault(path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "collab",
            "version": "0.1.0",
            "description": (
                "Event-sourced collaboration server for music projects. Live editing uses "
                "the Yjs sync and awareness protocol over WebSocket at /ws/{project_id} "
                "(not described here; see docs/live.md). Errors are JSON "
                '{"error": status, "message": ..., "fields": [...]}. Callers send a '
                "bearer token (a JWT; see docs/auth.md); a server run with "
                "COLLAB_AUTH=off takes the X-Actor header instead. Request bodies are "
                "application/json; a write carrying an Origin header must come from an "
                "allowed origin."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


#: what every API route answers without a valid token, or without the right
AUTHENTICATED = (
    (401, "No bearer token, or one that does not verify (authentication on)"),
    (403, "The principal may not do this: the message names the role needed"),
)


def _responses(op: Operation) -> dict[str, dict[str, str]]:
    guarded = op.path.startswith("/api/") and op.path != "/api/openapi.json"
    extra = (
        EVERY_ROUTE + (WRITES if op.body is not None else ()) + (AUTHENTICATED if guarded else ())
    )
    texts: dict[int, list[str]] = {}
    for code, text in (*op.responses, *extra):
        texts.setdefault(code, []).append(text)
    return {str(code): {"description": _joined(texts[code])} for code in sorted(texts)}


def _joined(texts: list[str]) -> str:
    first, *more = texts
    return "; ".join([first, *(text[0].lower() + text[1:] for text in more)])


async def document(_request: Request) -> Response:
    return JSONResponse(build())
