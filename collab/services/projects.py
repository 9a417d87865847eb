"""Commands on a project's document: create a project, apply typed edits.

Edits go through the project's live room, like every editor's update: checked,
appended, then broadcast to everyone connected.
"""

from __future__ import annotations

import uuid
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
from collab.services.errors import FieldError, Invalid, Unavailable
from collab.services.lookup import acquire
from events import EventMetadata, NewEvent
from events.models import DocUpdated, ProjectCreated, project_stream
from events.store import NO_STREAM, EventStore
from music import document, edits


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    tempo: Annotated[float, Field(gt=0, le=1000)] = 120.0
    time_signature: Annotated[str, Field(pattern=r"^[1-9][0-9]?/(1|2|4|8|16|32)$")] = "4/4"
    sample_rate: Annotated[int, Field(ge=8000, le=384000)] = 48000


@dataclass(frozen=True, slots=True)
class Created:
    project_id: str
    version: int
    position: int
    daid: str


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
    project_id = str(uuid.uuid4())
    metadata = EventMetadata(
        actor=principal.actor, agent_id=principal.agent, correlation_id=correlation_id
    )
    initial = document.new_document()
    meta = initial.get(document.META, type=pycrdt.Map)
    with initial.transaction():
        meta["name"] = spec.name
        meta["tempo"] = spec.tempo
        meta["time_signature"] = spec.time_signature
        meta["sample_rate"] = spec.sample_rate
    created = ProjectCreated(name=spec.name, owner=principal.actor, metadata=spec.metadata)
    events = [
        NewEvent(created, metadata),
        NewEvent(DocUpdated(update=initial.get_update(), client_id=initial.client_id), metadata),
    ]
    result = await store.append(project_stream(project_id), events, NO_STREAM)
    return Created(project_id, result.version, result.position, result.daids[0])


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
