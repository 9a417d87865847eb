"""Projects in from files: a Standard MIDI File into a new project or as new tracks of
an existing one (``music.midi``), and a project file (``music.projectfile``) into a new
project (docs/interchange.md). Exports are reads: ``collab.http.interchange``.

The file is read and turned into typed edits before anything is stored, so a file
that is not MIDI, is truncated or is too large changes nothing. The tracks then arrive
like any typed edit (through the project's room, live to every editor), and a
provenance record names the file by its content hash and the importing tool.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from collab.access.principal import Principal
from collab.live.rooms import Rooms
from collab.services import projects
from collab.services.authorize import authorize, authorize_parents
from collab.services.errors import FieldError, Invalid
from collab.services.newproject import Created, append_project
from collab.services.provenance import NewProvenance, record_provenance
from events import daid
from events.errors import DaidError
from events.models import EntityRef, ToolInfo
from events.store import EventStore
from music import document, edits, midi_import, projectfile
from music.updates import MalformedUpdate, check_update

T = TypeVar("T")

#: base64 of the largest file music.midi reads, with room for padding
_MAX_BASE64 = (midi_import.MAX_FILE_BYTES + 2) // 3 * 4
_SIGNATURE = re.compile(r"^[1-9][0-9]?/(1|2|4|8|16|32)$")


class MidiImport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the file, base64 (standard alphabet)
    file: Annotated[str, Field(min_length=1, max_length=_MAX_BASE64)]
    filename: Annotated[str, Field(min_length=1, max_length=200)] = "import.mid"
    #: the new project's name (default: the file's name without .mid); ignored when the
    #: tracks go into an existing project
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


@dataclass(frozen=True, slots=True)
class Imported:
    project_id: str
    created: bool
    version: int
    position: int
    tracks: int
    notes: int
    #: the provenance record naming the file
    provenance_daid: str
    content_hash: str


async def import_midi(
    principal: Principal,
    spec: MidiImport,
    project_id: str | None,
    *,
    rooms: Rooms,
    store: EventStore,
    correlation_id: str | None = None,
) -> Imported:
    """Read ``spec.file``; add its tracks to ``project_id``, or to a new project of the
    principal's when None."""
    if project_id is None:
        await authorize(principal, "project.create", log=store)
    else:
        await authorize(principal, "project.edit", project_id, log=store)
    data = _decoded(spec.file)
    try:
        # parsing a file of up to a MiB takes a while: off the event loop
        read = await asyncio.to_thread(midi_import.read, data)
    except midi_import.MidiError as exc:
        raise Invalid.naming("file", str(exc)) from None
    if not read.tracks:
        raise Invalid.naming("file", "the file holds no notes")
    operations = midi_import.operations(read, lambda prefix: f"{prefix}{uuid.uuid4().hex[:10]}")
    try:
        checked = edits.EditRequest.model_validate({"operations": operations})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid.naming("file", f"{where}: {first['msg']}", "the file's content") from None
    created = project_id is None
    if project_id is None:
        # the project and its tracks in one append: a failure leaves no empty project
        stem = re.sub(r"\.midi?$", "", spec.filename, flags=re.IGNORECASE) or "Imported"
        meta = projects.NewProject(
            name=(spec.name or stem)[:200],
            tempo=read.tempo if 0 < read.tempo <= 1000 else 120.0,
            time_signature=read.time_signature if _SIGNATURE.match(read.time_signature) else "4/4",
        )
        whole, client_id = await _checked(_first_document, meta, list(checked.operations))
        new = await append_project(
            principal,
            name=meta.name,
            update=whole,
            client_id=client_id,
            store=store,
            metadata=meta.metadata,
            correlation_id=correlation_id,
        )
        project_id = new.project_id
        edited: projects.Edited | Created = new
    else:
        await _checked(_check_on_scratch, list(checked.operations))
        edited = await projects.edit(
            principal,
            project_id,
            checked.operations,
            rooms=rooms,
            store=store,
            correlation_id=correlation_id,
        )
    content_hash = hashlib.sha256(data).hexdigest()
    record = await record_provenance(
        principal,
        NewProvenance(
            project_id=project_id,
            version=edited.version,
            entity=EntityRef(type="midi_file", id=spec.filename, content_hash=content_hash),
            activity="import",
            tool=ToolInfo(
                agent_id=principal.agent,
                version=f"collab {package_version('collab-music')}, mido {_mido_version()}",
            ),
            attributes={"midi_type": read.type, "tracks": len(read.tracks), "notes": read.notes},
        ),
        store=store,
        correlation_id=correlation_id,
    )
    return Imported(
        project_id,
        created,
        edited.version,
        edited.position,
        len(read.tracks),
        read.notes,
        record.daid,
        content_hash,
    )


async def _checked(build: Callable[..., T], *args: Any) -> T:
    """``build(*args)``, which checks the file's edits as the live path would, run off
    the event loop (a large file makes a large update): what it refuses is refused
    before anything is stored."""
    try:
        return await asyncio.to_thread(build, *args)
    except (edits.EditConflict, MalformedUpdate) as exc:
        raise Invalid.naming("file", str(exc), "the file's content") from None


def _check_on_scratch(operations: list[edits.Operation]) -> None:
    check_update(edits.apply(document.new_document(), operations))


def _first_document(
    meta: projects.NewProject, operations: list[edits.Operation]
) -> tuple[bytes, int]:
    """A new project's whole first document: its meta and the file's tracks."""
    initial = projects.first_document(meta)
    initial.apply_update(edits.apply(initial, operations))
    update = initial.get_update()
    check_update(update)
    return update, initial.client_id


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            "invalid file: not base64", [FieldError("file", "not base64 (standard alphabet)")]
        ) from None


def _mido_version() -> str:
    try:
        return package_version("mido")
    except PackageNotFoundError:  # a name for the record, never a reason to fail
        return "unknown"


async def import_file(
    principal: Principal,
    file: projectfile.ProjectFile,
    *,
    store: EventStore,
    correlation_id: str | None = None,
) -> Created:
    """A new project of the principal's holding the file's document, its creation
    derived from the exported version's DAID (which may be another server's)."""
    await authorize(principal, "project.create", log=store)
    if file.project.daid is not None:
        try:
            daid.parse(file.project.daid)
        except DaidError as exc:
            raise Invalid.naming("project.daid", f"not a DAID: {exc}") from None
        # the import's lineage will lead there: only to what the caller may read
        await authorize_parents(principal, [file.project.daid], store)
    try:
        doc = projectfile.to_document(file.document)
    except OverflowError:
        raise Invalid.naming("document", "a number beyond the float range") from None
    update = doc.get_update()
    try:
        check_update(update)
    except MalformedUpdate as exc:
        raise Invalid.naming("document", str(exc)) from None
    name = file.document.meta.get("name")
    source: dict[str, JsonValue] = {
        "format": file.format,
        "project_id": file.project.id,
        "version": file.project.version,
        "daid": file.project.daid,
        "snapshots": [s.model_dump() for s in file.snapshots],
    }
    return await append_project(
        principal,
        name=(name if isinstance(name, str) and name else file.project.name)[:200],
        update=update,
        client_id=doc.client_id,
        store=store,
        metadata={"imported_from": source},
        parents=(file.project.daid,) if file.project.daid else (),
        correlation_id=correlation_id,
    )
