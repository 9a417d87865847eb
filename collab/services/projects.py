"""Commands on a project's document: create a project, apply typed edits, fork one.

Edits go through the project's live room, like every editor's update: checked,
appended, then broadcast to everyone connected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pycrdt
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from collab.access.principal import Principal
from collab.live import protocol
from collab.live.rooms import Rooms
from collab.live.writer import WriterError
from collab.services.authorize import authorize
from collab.services.errors import FieldError, Invalid, NotFound, Unavailable
from collab.services.lookup import acquire, known_version
from collab.services.newproject import Created, append_project
from collab.services.ports import Store
from events.models import project_stream
from events.store import EventStore
from music import document, edits
from music.updates import MalformedUpdate, check_update
from projections import project_reads


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    tempo: Annotated[float, Field(gt=0, le=1000)] = 120.0
    time_signature: Annotated[str, Field(pattern=r"^[1-9][0-9]?/(1|2|4|8|16|32)$")] = "4/4"
    sample_rate: Annotated[int, Field(ge=8000, le=384000)] = 48000


@dataclass(frozen=True, slots=True)
class Edited:
    version: int
    position: int
    #: None when the edits changed nothing (nothing was appended)
    daid: str | None

    @property
    def changed(self) -> bool:
        return self.daid is not None


async def create(
    principal: Principal,
    spec: NewProject,
    *,
    store: EventStore,
    correlation_id: str | None = None,
) -> Created:
    """A new project: its creation and its first document, appended together."""
    await authorize(principal, "project.create", log=store)
    initial = first_document(spec)
    return await append_project(
        principal,
        name=spec.name,
        update=initial.get_update(),
        client_id=initial.client_id,
        store=store,
        metadata=spec.metadata,
        correlation_id=correlation_id,
    )


def first_document(spec: NewProject) -> pycrdt.Doc[Any]:
    """A new project's document: its meta as ``spec`` says."""
    initial = document.new_document()
    meta = initial.get(document.META, type=pycrdt.Map)
    with initial.transaction():
        meta["name"] = spec.name
        meta["tempo"] = spec.tempo
        meta["time_signature"] = spec.time_signature
        meta["sample_rate"] = spec.sample_rate
    return initial


async def edit(
    principal: Principal,
    project_id: str,
    operations: Sequence[Any],
    *,
    rooms: Rooms,
    store: EventStore,
    correlation_id: str | None = None,
) -> Edited:
    """Apply typed edits (``music.edits``) to the project's live document, all or none."""
    await authorize(principal, "project.edit", project_id, log=store)
    room = await acquire(rooms, project_id)
    try:
        try:
            update = edits.apply(room.doc, list(operations))
        except edits.EditConflict as exc:
            field = FieldError(f"operations.{exc.index}", str(exc))
            raise Invalid(str(exc), [field]) from None
        try:
            future = room.submit(
                update,
                origin=None,
                actor=principal.actor,
                agent=principal.agent,
                correlation_id=correlation_id,
            )
        except WriterError as exc:
            raise Unavailable(f"edit not accepted: {exc}") from None
        except protocol.MalformedUpdate as exc:
            raise Invalid(f"edit not accepted: {exc}") from None
        if future is None:
            return Edited(room.version, room.position, None)
        done = await future
        return Edited(done.version, done.position, done.daid)
    finally:
        rooms.release(room)


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the source version (default: the current one)
    version: Annotated[int, Field(ge=1)] | None = None
    #: the fork's name (default: the source's name at that version, "(fork)" added)
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


@dataclass(frozen=True, slots=True)
class Forked:
    created: Created
    source_version: int
    source_daid: str | None


async def fork(
    principal: Principal,
    project_id: str,
    spec: ForkRequest,
    *,
    store: Store,
    correlation_id: str | None = None,
) -> Forked:
    """A new project of the principal's holding the source's document as of a version,
    its creation derived (DAID lineage) from that version."""
    await authorize(principal, "project.create", log=store)
    await authorize(principal, "project.read", project_id, log=store)
    stream_id = project_stream(project_id)
    current = await known_version(store, project_id)
    version = spec.version if spec.version is not None else current
    if version > current:
        raise NotFound(f"project {project_id} has no version {version} (1 to {current})")
    source = await project_reads.document_at(store, store.queries, project_id, version)
    source_daid = await store.version_daid(stream_id, version)
    copy = document.copy_of(source.doc)
    meta = copy.get(document.META, type=pycrdt.Map)
    old_name = meta.get("name")
    name = spec.name or f"{old_name if isinstance(old_name, str) else 'Project'} (fork)"[:200]
    with copy.transaction():
        meta["name"] = name
    update = copy.get_update()
    try:
        # an old log may hold what the live path refuses now: not copied into a new one
        check_update(update)
    except MalformedUpdate as exc:
        raise Invalid(f"version {version} cannot be forked: {exc}") from None
    forked_from: dict[str, JsonValue] = {
        "project_id": project_id,
        "version": version,
        "daid": source_daid,
    }
    created = await append_project(
        principal,
        name=name,
        update=update,
        client_id=copy.client_id,
        store=store,
        metadata={"forked_from": forked_from},
        parents=(source_daid,) if source_daid else (),
        correlation_id=correlation_id,
    )
    return Forked(created, version, source_daid)
