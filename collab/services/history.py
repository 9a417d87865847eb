"""Commands on a project's history: tag a snapshot, roll back to a version or snapshot.

A rollback appends through the project's live room, so connected editors receive it
at once, as an ordinary update.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collab.access.principal import Principal
from collab.live.rooms import Rooms
from collab.live.writer import WriterError
from collab.services.authorize import authorize
from collab.services.errors import Conflict, Invalid, NotFound, Unavailable
from collab.services.lookup import acquire, known_version
from collab.services.ports import ReadModels, Store
from events import EventMetadata, NewEvent, WrongExpectedVersion
from events.models import (
    DOCUMENT_EVENTS,
    ProjectReverted,
    ProjectRolledBack,
    SnapshotTagged,
    project_stream,
)
from events.records import StoredEvent
from music.revert import reverting_update
from music.rollback import restoring_update
from music.updates import EMPTY_UPDATE, MalformedUpdate
from projections import project_reads, projects, quarantine

#: attempts at tagging a snapshot while other writers keep appending to the project
SNAPSHOT_ATTEMPTS = 50
_READ_BATCH = 1000


class NewSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)] | None = None
    snapshot: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RollbackRequest:
        if (self.version is None) == (self.snapshot is None):
            raise ValueError("give exactly one of version or snapshot")
        return self


@dataclass(frozen=True, slots=True)
class Tagged:
    #: the tagged version
    version: int
    #: the stream version of the ``project.snapshot_tagged`` event itself
    event_version: int
    position: int
    daid: str


@dataclass(frozen=True, slots=True)
class RolledBack:
    version: int
    position: int
    daid: str
    target_version: int
    #: whether the document differed from the target (else the update is empty)
    changed: bool


async def snapshot(
    principal: Principal,
    project_id: str,
    spec: NewSnapshot,
    *,
    store: Store,
    correlation_id: str | None = None,
) -> Tagged:
    """Tag the current version. Names are unique per project: the read model knows the
    tags up to the version it has folded, the log the ones after it, and the append
    expects exactly the version that was checked, so two racing tags cannot both win."""
    await authorize(principal, "snapshot.create", project_id, log=store)
    await known_version(store, project_id)
    stream_id = project_stream(project_id)
    # The version first: whatever the read model folds after this read is still in the
    # log after that version, which is read below (the other order can miss a tag).
    checked = await project_reads.project_version(store.queries, project_id) or 0
    names = {s["name"] for s in await project_reads.snapshots(store.queries, project_id)}
    metadata = EventMetadata(
        actor=principal.actor, agent_id=principal.agent, correlation_id=correlation_id
    )
    for _attempt in range(SNAPSHOT_ATTEMPTS):
        while True:
            newer = await store.read_stream(stream_id, from_version=checked + 1, limit=_READ_BATCH)
            for event in newer:
                if event.event_type == SnapshotTagged.event_type:
                    names.add(str(event.data["name"]))
                checked = event.stream_version
            if len(newer) < _READ_BATCH:
                break
        if spec.name in names:
            raise Conflict(f"project {project_id} already has a snapshot named {spec.name!r}")
        tag = SnapshotTagged(name=spec.name, description=spec.description, version=checked)
        tagged = await store.version_daid(stream_id, checked)
        parents = (tagged,) if tagged is not None else ()
        try:
            result = await store.append(
                stream_id, [NewEvent(tag, metadata, parents=parents)], checked
            )
        except WrongExpectedVersion:
            continue  # someone appended meanwhile: look at what, then try again
        return Tagged(checked, result.version, result.position, result.daids[0])
    raise Unavailable("the project kept changing while tagging; retry")


async def rollback(
    principal: Principal,
    project_id: str,
    target: RollbackRequest,
    *,
    store: Store,
    rooms: Rooms,
    models: ReadModels,
    correlation_id: str | None = None,
) -> RolledBack:
    """Append ``project.rolled_back`` with the update that restores the target version,
    through the live path: every connected editor receives it as an ordinary update."""
    await authorize(principal, "project.rollback", project_id, log=store)
    room = await acquire(rooms, project_id)
    try:
        if target.snapshot is not None:
            # A tag made just before must be visible: read the model at the log's head.
            head = await store.head_position()
            if not await models.progress.wait(head, models.wait):
                raise Unavailable("read models are behind the log; retry later")
            tagged = await project_reads.snapshot(store.queries, project_id, target.snapshot)
            if tagged is None:
                raise NotFound(f"project {project_id} has no snapshot named {target.snapshot!r}")
            target_version = int(tagged["version"])
        else:
            assert target.version is not None  # noqa: S101 - the model requires one of both
            target_version = target.version
            current = await store.stream_version(room.stream_id)
            if target_version > current:
                raise NotFound(
                    f"project {project_id} has no version {target_version} (1 to {current})"
                )
        restored = await project_reads.document_at(store, store.queries, project_id, target_version)
        target_daid = await store.version_daid(room.stream_id, target_version)
        update = restoring_update(room.doc, restored.doc)
        event = ProjectRolledBack(
            target_version=target_version, target_snapshot=target.snapshot, update=update
        )
        try:
            future = room.submit(
                update,
                origin=None,
                actor=principal.actor,
                agent=principal.agent,
                correlation_id=correlation_id,
                event=event,
                parents=(target_daid,) if target_daid is not None else (),
            )
        except WriterError as exc:
            raise Unavailable(f"rollback not accepted: {exc}") from None
        assert future is not None  # noqa: S101 - an explicit event is always appended
        done = await future
    finally:
        rooms.release(room)
    return RolledBack(
        done.version, done.position, done.daid, target_version, update != EMPTY_UPDATE
    )


#: the most versions one revert replays (from its first version to the current one)
MAX_REVERT_VERSIONS = 50_000
#: the most update bytes one revert replays
MAX_REVERT_BYTES = 64 * 1024 * 1024
#: the most reverted events a revert names (its parents and its ``undone`` list); the
#: count of all of them is in the event
MAX_REVERT_PARENTS = 1000


class RevertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: whose changes: an actor (``metadata.actor``: a person, or a service's agent id)...
    actor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    #: ...or an agent (``metadata.agent_id``: every change made through that agent)
    agent: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    from_version: Annotated[int, Field(ge=1)] = 1
    #: default: the current version
    to_version: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one_author(self) -> RevertRequest:
        if (self.actor is None) == (self.agent is None):
            raise ValueError("give exactly one of actor or agent")
        if self.to_version is not None and self.to_version < self.from_version:
            raise ValueError("to_version comes before from_version")
        return self


@dataclass(frozen=True, slots=True)
class Reverted:
    version: int
    position: int
    daid: str
    from_version: int
    to_version: int
    #: the actor's document events in the range that were undone
    changes: int


async def revert(
    principal: Principal,
    project_id: str,
    spec: RevertRequest,
    *,
    store: Store,
    rooms: Rooms,
    correlation_id: str | None = None,
) -> Reverted:
    """Undo one actor's (or agent's) document changes between two versions as one
    forward update through the live path (``music.revert``): every connected editor
    receives it, and the history says what was reverted.

    The replay runs on to the current version, the later updates marked as others':
    a value someone changed after the actor keeps that later change."""
    await authorize(principal, "project.rollback", project_id, log=store)
    stream_id = project_stream(project_id)
    current = await known_version(store, project_id)
    end = spec.to_version if spec.to_version is not None else current
    if end > current:
        raise NotFound(f"project {project_id} has no version {end} (1 to {current})")
    if current - spec.from_version >= MAX_REVERT_VERSIONS:
        raise Invalid.naming(
            "from_version",
            f"a revert replays at most {MAX_REVERT_VERSIONS} versions (to the current one)",
        )
    base: bytes | None = None
    if spec.from_version > 1:
        before = await project_reads.document_at(
            store, store.queries, project_id, spec.from_version - 1
        )
        base = before.doc.get_update()
    skip = await quarantine.positions(store.queries, projects.NAME, stream_id)
    events = await store.read_stream(stream_id, from_version=spec.from_version, to_version=current)
    documents = [
        e
        for e in events
        if e.event_type in DOCUMENT_EVENTS and e.payload and e.position not in skip
    ]
    if sum(len(e.payload or b"") for e in documents) > MAX_REVERT_BYTES:
        raise Invalid.naming(
            "from_version", f"the range holds over {MAX_REVERT_BYTES} bytes of updates"
        )

    def theirs(event: StoredEvent) -> bool:
        if event.stream_version > end:
            return False
        metadata = event.metadata if isinstance(event.metadata, dict) else {}
        if spec.actor is not None:
            return metadata.get("actor") == spec.actor
        return metadata.get("agent_id") == spec.agent

    reverted = [e for e in documents if theirs(e)]
    who = spec.actor if spec.actor is not None else f"agent {spec.agent}"
    if not reverted:
        raise Invalid.naming(
            "actor" if spec.actor is not None else "agent",
            f"no document changes by {who} between versions {spec.from_version} and {end}",
        )
    marked = [(e.payload or b"", theirs(e)) for e in documents]
    undo = await asyncio.to_thread(reverting_update, base, marked)
    named = tuple(e.daid for e in reverted[:MAX_REVERT_PARENTS])
    event = ProjectReverted(
        actor=spec.actor,
        agent=spec.agent,
        from_version=spec.from_version,
        to_version=end,
        changes=undo.undone,
        undone=named,
        update=undo.update,
    )
    room = await acquire(rooms, project_id)
    try:
        try:
            future = room.submit(
                undo.update,
                origin=None,
                actor=principal.actor,
                agent=principal.agent,
                correlation_id=correlation_id,
                event=event,
                parents=named,
            )
        except WriterError as exc:
            raise Unavailable(f"revert not accepted: {exc}") from None
        except MalformedUpdate as exc:
            raise Invalid(f"revert not accepted: {exc}") from None
        assert future is not None  # noqa: S101 - an explicit event is always appended
        done = await future
    finally:
        rooms.release(room)
    return Reverted(done.version, done.position, done.daid, spec.from_version, end, undo.undone)
