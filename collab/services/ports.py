"""What the commands act on, as ports: the log with its read models, and how long a
command waits for the read models to fold what it needs.

``events.postgres.PostgresEventStore`` is the one :class:`Store` the server runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from events.sql import SqlDatabase
from events.store import EventStore
from projections.progress import ProjectionProgress


class Store(EventStore, SqlDatabase, Protocol):
    """The event log, and the database its read models live in."""


@dataclass(frozen=True, slots=True)
class ReadModels:
    #: how far each projection has folded the log
    progress: ProjectionProgress
    #: seconds a command waits for them before it answers "retry" (COLLAB_PROJECTION_WAIT)
    wait: float
