"""The project file: a project's document as one versioned JSON file, to move it
between servers or keep it outside one (docs/interchange.md); no I/O.

``{"format": "collab-project/1", "project": {"id", "name", "version", "daid"},
"document": <the JSON view of music.document>, "snapshots": [{"name", "description",
"version"}]}``. An import makes a new project whose creation derives from
``project.daid``; numbers are written as floats, as every editor's are, so the export
of an import holds the same document.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import pycrdt
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from music import document, schema

FORMAT: Final = "collab-project/1"


class FileProject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: Annotated[int, Field(ge=1)]
    daid: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class FileDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meta: dict[str, JsonValue] = {}
    tracks: dict[str, dict[str, JsonValue]] = {}
    track_order: list[str] = []
    sections: list[dict[str, JsonValue]] = []

    @model_validator(mode="after")
    def _inside_the_schema(self) -> FileDocument:
        """A file holds a valid document (docs/document.md): nothing to correct later."""
        found = [
            (path, problem)
            for root, spec in schema.DOCUMENT.items()
            for path, problem in schema.problems(spec, getattr(self, root), (root,))
        ]
        if found:
            named = "; ".join(
                f"{'.'.join(str(step) for step in path)}: {problem}" for path, problem in found[:10]
            )
            more = f" (and {len(found) - 10} more)" if len(found) > 10 else ""
            raise ValueError(f"values outside the document schema: {named}{more}")
        return self


class FileSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    version: Annotated[int, Field(ge=1)]


class ProjectFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["collab-project/1"]
    project: FileProject
    document: FileDocument
    snapshots: Annotated[list[FileSnapshot], Field(max_length=10_000)] = []


def export(
    view: dict[str, Any],
    *,
    project_id: str,
    version: int,
    daid: str | None,
    snapshots: list[dict[str, Any]],
) -> dict[str, Any]:
    """The file of ``view`` (the JSON view at ``version``) and the snapshot tags made
    at or before that version."""
    name = view.get("meta", {}).get("name")
    return {
        "format": FORMAT,
        "project": {
            "id": project_id,
            "name": name if isinstance(name, str) and name else project_id,
            "version": version,
            "daid": daid,
        },
        "document": {
            "meta": view.get("meta", {}),
            "tracks": view.get("tracks", {}),
            "track_order": view.get("track_order", []),
            "sections": view.get("sections", []),
        },
        "snapshots": [
            {
                "name": s["name"],
                "description": s.get("description") or "",
                "version": s["version"],
            }
            for s in snapshots
            if s["version"] <= version
        ],
    }


def to_document(file_document: FileDocument) -> pycrdt.Doc[Any]:
    """A new Yjs document holding the file's document."""
    doc = document.new_document()
    meta = doc.get(document.META, type=pycrdt.Map)
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    order = doc.get(document.TRACK_ORDER, type=pycrdt.Array)
    sections = doc.get(document.SECTIONS, type=pycrdt.Array)
    with doc.transaction():
        for key, value in file_document.meta.items():
            meta[key] = _shared(value)
        for key, track in file_document.tracks.items():
            tracks[key] = _shared(track)
        order.extend(list(file_document.track_order))
        sections.extend([_shared(s) for s in file_document.sections])
    return doc


def _shared(value: Any) -> Any:
    """JSON as Yjs: objects as maps, arrays as arrays, numbers as floats (as editors
    write them)."""
    if isinstance(value, dict):
        return pycrdt.Map({k: _shared(v) for k, v in value.items()})
    if isinstance(value, list):
        return pycrdt.Array([_shared(v) for v in value])
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
