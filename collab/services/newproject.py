"""How a project begins in the log, for every command that starts one (create, fork,
import of a project file): its ``project.created`` and its first document update,
appended together to a new stream."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import JsonValue

from collab.access.principal import Principal
from events import EventMetadata, NewEvent
from events.models import DocUpdated, ProjectCreated, project_stream
from events.store import NO_STREAM, EventStore


@dataclass(frozen=True, slots=True)
class Created:
    project_id: str
    version: int
    position: int
    daid: str


async def append_project(
    principal: Principal,
    *,
    name: str,
    update: bytes,
    client_id: int,
    store: EventStore,
    metadata: dict[str, JsonValue] | None = None,
    parents: tuple[str, ...] = (),
    correlation_id: str | None = None,
) -> Created:
    """A new project of the principal's: ``update`` is its whole first document;
    ``parents`` are DAIDs its creation derives from (a fork's or an import's source)."""
    project_id = str(uuid.uuid4())
    caused = EventMetadata(
        actor=principal.actor, agent_id=principal.agent, correlation_id=correlation_id
    )
    created = ProjectCreated(name=name, owner=principal.actor, metadata=metadata or {})
    events = [
        NewEvent(created, caused, parents=parents),
        NewEvent(DocUpdated(update=update, client_id=client_id), caused),
    ]
    result = await store.append(project_stream(project_id), events, NO_STREAM)
    return Created(project_id, result.version, result.position, result.daids[0])
