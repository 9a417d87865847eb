"""A project's document as of a version, rebuilt from a stored state and the log (the
``projects`` fold's own documents and time travel both read it so).
"""

from __future__ import annotations

from collections.abc import Collection

from events.models import DOCUMENT_EVENTS, project_stream
from events.store import EventStore, PayloadRecord
from music import salvage
from music.changes import DocumentTracker


async def replay(
    store: EventStore,
    project_id: str,
    *,
    state: bytes | None,
    after_version: int,
    to_version: int,
    skip: Collection[int] = (),
    batch: int = 5000,
) -> DocumentTracker:
    """A project's document as of ``to_version``: ``state`` plus the document events
    with ``after_version < version <= to_version``, except those at a position in
    ``skip`` (set aside by the fold) and any update that cannot be applied (the fold set
    those aside too)."""
    stream_id = project_stream(project_id)

    async def read(after: int) -> list[PayloadRecord]:
        if after >= to_version:
            return []
        return await store.read_payloads(
            stream_id, DOCUMENT_EVENTS, after_version=after, to_version=to_version, limit=batch
        )

    loaded = await salvage.load(
        read, base=state, version=after_version, batch=batch, keep=lambda r: r.position not in skip
    )
    return DocumentTracker(loaded.state)
