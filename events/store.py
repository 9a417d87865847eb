"""The event store port: what every implementation offers, and its value types.

The one implementation that matters is PostgreSQL (``events.postgres``); the
contract suite in ``tests/contract`` runs against it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from events.errors import EventStoreError
from events.records import NewEvent, StoredEvent


class _Special(Enum):
    ANY = "any"
    NO_STREAM = "no stream"


ExpectedVersion = int | _Special
#: append whatever the stream's version
ANY: ExpectedVersion = _Special.ANY
#: the stream must not exist yet (same as exact version 0)
NO_STREAM: ExpectedVersion = _Special.NO_STREAM


def describe(expected: ExpectedVersion) -> str:
    return expected.value if isinstance(expected, _Special) else str(expected)


@dataclass(frozen=True, slots=True)
class AppendRequest:
    stream_id: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_id: str
    #: stream version of each appended event, in order
    versions: tuple[int, ...]
    #: global position of each appended event, in order
    positions: tuple[int, ...]
    #: daid of each appended event, in order
    daids: tuple[str, ...]

    @property
    def version(self) -> int:
        """The stream's version after this append."""
        return self.versions[-1]

    @property
    def position(self) -> int:
        return self.positions[-1]


@dataclass(frozen=True, slots=True)
class PayloadRecord:
    """The binary payload of one event, with its place in the log."""

    version: int
    position: int
    event_type: str
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class CachedState:
    """A derived state of a stream as of ``version`` (rebuildable from the log)."""

    stream_id: str
    version: int
    position: int
    state: bytes


class Leadership(Protocol):
    """A claim to lead the cluster under one name: held by one process at a time, and
    given up when that process or its connection to the store ends."""

    async def try_acquire(self) -> bool:
        """One attempt; False while another process holds it."""
        ...

    async def lost(self) -> None:
        """Return once the claim may no longer be held (it is then given up)."""
        ...

    async def close(self) -> None:
        """Give the claim up."""
        ...


class EventStore(Protocol):
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append atomically; raises WrongExpectedVersion or DuplicateEvent."""
        ...

    async def append_batch(
        self, requests: Sequence[AppendRequest]
    ) -> list[AppendResult | EventStoreError]:
        """Append many streams' events in one transaction.

        Each request succeeds or fails on its own (its error is returned in its slot);
        the successful ones commit together.
        """
        ...

    def append_soon(
        self,
        request: AppendRequest,
        decided: Callable[[AppendResult | EventStoreError], None],
        *,
        alone: bool = False,
    ) -> None:
        """Queue ``request`` for the store's next group commit without awaiting it.

        The batch waits a short window for others to join (the live rooms' updates);
        ``decided`` is called with the request's outcome, in the order requests were
        queued; events that cannot be prepared come back as an ``EventStoreError``.
        Requests of one stream with any expected version may be written as one, unless
        ``alone``: a request that may have been stored already (a resend) must go on
        its own, since a request comes back as stored only if all of its events were.
        Raises ValueError (or DuplicateEvent) at once for a malformed request.
        """
        ...

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]: ...

    async def read_records(
        self, stream_id: str, event_types: Sequence[str], *, after_version: int = 0
    ) -> list[StoredEvent]:
        """The stream's events of ``event_types`` with ``version > after_version``, in
        order: its records besides the document (``doc.updated`` is never among them), a
        read that stays small however long the stream's history."""
        ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]: ...

    async def read_share(
        self, share: int, shares: int, *, after_position: int, to_position: int, limit: int = 1000
    ) -> list[StoredEvent]:
        """The events with ``after_position < position <= to_position``, in order, of the
        streams in share ``share`` (0 to ``shares - 1``): every stream is in exactly one
        share, the same one for every reader of the log."""
        ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """The current version of each of ``stream_ids`` that exists, in one read."""
        ...

    async def head_position(self) -> int: ...

    async def event_by_daid(self, daid: str) -> StoredEvent | None: ...

    async def version_daid(self, stream_id: str, version: int) -> str | None:
        """The DAID of the stream's document as of ``version``: that of its last version
        event (``is_version``) at or before it; None when there is none."""
        ...

    async def read_payloads(
        self,
        stream_id: str,
        event_types: Sequence[str],
        *,
        after_version: int = 0,
        to_version: int | None = None,
        limit: int = 5000,
    ) -> list[PayloadRecord]: ...

    async def load_state(self, stream_id: str) -> CachedState | None: ...

    async def save_state(self, cached: CachedState) -> None: ...

    def subscribe(self, after_position: int = 0) -> AsyncIterator[StoredEvent]:
        """Catch up from ``after_position``, then follow new events forever."""
        ...

    def subscribe_batches(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncGenerator[list[StoredEvent], None]:
        """:meth:`subscribe` in the batches it reads (each non-empty)."""
        ...

    def leadership(self, name: str, *, holder: str, check_every: float) -> Leadership:
        """A claim to lead under ``name``; ``holder`` is how :meth:`leader` names this
        process while it holds it."""
        ...

    async def leader(self, name: str) -> str | None:
        """The holder of the lead ``name`` now; None when nobody holds it."""
        ...
