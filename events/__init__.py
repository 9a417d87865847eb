"""The event store: append-only events in PostgreSQL, their models, DAIDs and integrity.

Knows nothing about WebSockets or Yjs rooms. Import the PostgreSQL adapter from
``events.postgres``; everything else is I/O-free.
"""

from events.errors import (
    CorruptLog,
    DaidError,
    DuplicateEvent,
    EventStoreError,
    InvalidEvent,
    MigrationError,
    StoreTimeout,
    StoreUnavailable,
    UnknownEventType,
    WrongExpectedVersion,
)
from events.models import DomainEvent, EventMetadata, registry
from events.records import NewEvent, StoredEvent
from events.store import ANY, NO_STREAM, AppendRequest, AppendResult, EventStore, ExpectedVersion

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendRequest",
    "AppendResult",
    "CorruptLog",
    "DaidError",
    "DomainEvent",
    "DuplicateEvent",
    "EventMetadata",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidEvent",
    "MigrationError",
    "NewEvent",
    "StoreTimeout",
    "StoreUnavailable",
    "StoredEvent",
    "UnknownEventType",
    "WrongExpectedVersion",
    "registry",
]
