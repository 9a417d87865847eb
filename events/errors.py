"""Errors raised by the event store and its helpers.

Everything the store raises derives from :class:`EventStoreError`; driver
exceptions (asyncpg) are translated in ``events/postgres/`` and never escape it.

::

    EventStoreError
    ├── WrongExpectedVersion      the stream moved on; carries the current version
    ├── DuplicateEvent            an event id exists with different content
    ├── InvalidEvent              data that fails its event model (names the field)
    ├── UnknownEventType          no model is registered under a type name
    ├── StoreUnavailable          the database cannot be reached right now
    │   └── StoreTimeout          it did not answer within the store's timeouts
    ├── CorruptLog                the log contradicts an invariant (e.g. a hole in positions)
    ├── QueryFailed               a read-model query was refused (bad SQL, a constraint)
    └── MigrationError            the schema cannot be brought up to date

    DaidError (ValueError)        a malformed DAID; ``part`` names the bad component
"""

from __future__ import annotations

from uuid import UUID


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class WrongExpectedVersion(EventStoreError):
    def __init__(self, stream_id: str, expected: str, current: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, current version is {current}"
        )


class DuplicateEvent(EventStoreError):
    def __init__(self, event_id: UUID, stream_id: str, reason: str) -> None:
        self.event_id = event_id
        self.stream_id = stream_id
        super().__init__(f"event {event_id} in stream {stream_id!r}: {reason}")


class InvalidEvent(EventStoreError):
    """Data that does not satisfy its event model. ``fields`` names each bad field."""

    def __init__(self, event_type: str, problems: list[tuple[str, str]]) -> None:
        self.event_type = event_type
        self.fields = [field for field, _ in problems]
        detail = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"invalid {event_type} event: {detail}")


class UnknownEventType(EventStoreError):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}")


class StoreUnavailable(EventStoreError):
    """The database could not be reached or dropped the connection."""


class StoreTimeout(StoreUnavailable):
    """The database did not answer in time (a statement, or waiting for a connection).

    A subclass of :class:`StoreUnavailable`: callers that retry later on one do the same
    on the other (a frozen or overloaded database is as unusable as a stopped one).
    """


class CorruptLog(EventStoreError):
    """The stored log breaks an invariant that appends guarantee."""


class QueryFailed(EventStoreError):
    """The database refused a read-model statement; ``sqlstate`` says why."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class MigrationError(EventStoreError):
    pass


class DaidError(ValueError):
    """A DAID that cannot be parsed or generated. ``part`` names the faulty component."""

    def __init__(self, part: str, message: str) -> None:
        self.part = part
        super().__init__(f"malformed DAID {part}: {message}")
