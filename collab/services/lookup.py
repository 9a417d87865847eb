"""What commands (and the reads beside them) look up before they act, each refusal a
service error: a project id's normal form, its current version, its document at a
version, its live room, the schema.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from collab.live.room import Room
from collab.live.rooms import Rooms, UnknownProject
from collab.services.errors import Invalid, NotFound, Unavailable
from collab.services.ports import ReadModels, Store
from events.models import project_stream
from events.store import EventStore
from projections import project_reads


def parse_project_id(raw: str) -> str:
    """A project id in its normal form; NotFound when it cannot name a project."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"no project {raw!r} (project ids are UUIDs)") from None


async def known_version(store: EventStore, project_id: str) -> int:
    """The project's current stream version (from the log); NotFound for unknown ones."""
    version = await store.stream_version(project_stream(project_id))
    if version == 0:
        raise NotFound(f"no project {project_id}")
    return version


async def target_version(store: EventStore, project_id: str, asked: int | None) -> int:
    """The version a record is about: ``asked``, which must exist, or the current one."""
    current = await known_version(store, project_id)
    if asked is None:
        return current
    if asked > current:
        message = f"project {project_id} has versions 1 to {current}"
        raise Invalid.naming("version", message, "target.version")
    return asked


async def view_at(
    store: Store, models: ReadModels, project_id: str, version: int
) -> dict[str, Any]:
    """The document as JSON at ``version``, from the read model (waiting, bounded, for
    it to fold that version if it has not yet)."""
    folded = await project_reads.project_version(store.queries, project_id)
    if folded is None or folded < version:
        head = await store.head_position()
        if not await models.progress.wait(head, models.wait):
            raise Unavailable(f"read models have not folded version {version} yet; retry")
    return await project_reads.view_at(store.queries, project_id, version)


async def acquire(rooms: Rooms, project_id: str) -> Room:
    """The project's live room (release it when done); NotFound for unknown projects."""
    try:
        return await rooms.acquire(project_id)
    except UnknownProject as exc:
        raise NotFound(str(exc)) from None


class SchemaStatus(Protocol):
    @property
    def current(self) -> bool: ...

    @property
    def pending(self) -> tuple[int, ...]: ...


class Migrated(Protocol):
    async def migration_status(self) -> SchemaStatus: ...


async def require_schema(store: Migrated) -> None:
    """Unavailable until the database's schema is migrated."""
    status = await store.migration_status()
    if not status.current:
        raise Unavailable(f"schema not migrated (pending {list(status.pending)})")
