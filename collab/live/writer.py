"""The rooms' side of the store's group commit: updates released only once durable.

Rooms submit events with two callbacks. The writer hands each to the store's group
commit (``EventStore.append_soon``, ``events/group_commit.py``), which batches what
every room submits within the commit window into one transaction; once that has
committed, the writer calls each event's ``on_committed``, in submission order: that is
where rooms apply and broadcast updates, so nothing becomes visible before it is
durable.

If the store cannot be reached (after its own retries) every event of the batch fails
with that error; the updates waiting are bounded (``max_pending``) so that an outage
refuses new updates instead of buffering them without limit.

Overload costs latency before it costs connections: once half of ``max_pending``
events wait, the writer says it is :attr:`~GroupCommitWriter.congested` until the
wait is back under a quarter. The busiest sockets stop being read meanwhile
(``collab.live.intake``; their updates wait in the clients and in TCP), every writing
socket once five eighths wait (:attr:`~GroupCommitWriter.saturated`), and new
connections are refused with 1013, so the limit, which closes the sender with 1013, is
the last resort for what was already read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from collab.runtime.metrics import Metrics
from events.errors import EventStoreError
from events.records import NewEvent
from events.store import ANY, AppendRequest, AppendResult, EventStore

log = structlog.get_logger("collab.live.writer")
T = TypeVar("T")


class WriterError(Exception):
    """Base of the writer's refusals."""


class Overloaded(WriterError):
    """The queue of events waiting for the database is full."""


class WriterClosed(WriterError):
    """The writer is shutting down and takes no new events."""


@dataclass(frozen=True, slots=True)
class Committed:
    version: int
    position: int
    daid: str
    #: the other nodes were told already (the project's home published it)
    announced: bool = False


class GroupCommitWriter:
    def __init__(
        self,
        store: EventStore,
        metrics: Metrics,
        *,
        max_pending: int = 20_000,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._max_pending = max_pending
        #: congestion starts at the high mark and ends at the low one; past the
        #: saturation mark every writing socket pauses, not just the busiest
        self._high = max(1, max_pending // 2)
        self._low = max_pending // 4
        self._saturation = max(self._high, (5 * max_pending) // 8)
        #: set while the writer takes more: readers wait on it while it is not
        self._room_for_more = asyncio.Event()
        self._room_for_more.set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Events submitted and not yet decided."""
        return self._pending

    def submit(
        self,
        stream_id: str,
        event: NewEvent,
        on_committed: Callable[[Committed], None] | None = None,
        on_failed: Callable[[Exception], None] | None = None,
        *,
        resend: bool = False,
    ) -> asyncio.Future[Committed]:
        """Queue ``event``; callbacks run in submission order once its batch is decided.

        The returned future resolves at the same moment (after ``on_committed``).
        ``resend``: the event may be stored already (it was forwarded to another node);
        it goes as a request of its own, so that it comes back as stored without failing
        the events beside it. Raises :class:`Overloaded` or :class:`WriterClosed` at once
        instead of queueing.
        """
        if self._closed:
            raise WriterClosed("the server is shutting down")
        if self._pending >= self._max_pending:
            raise Overloaded(f"{self._pending} updates are waiting for the database")
        if self._loop is None:
            # Asked once: get_running_loop makes a system call (getpid) every time.
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Committed] = self._loop.create_future()

        def decided(outcome: AppendResult | EventStoreError) -> None:
            self._decided(outcome, on_committed, on_failed, future)

        self._store.append_soon(AppendRequest(stream_id, (event,), ANY), decided, alone=resend)
        self._pending += 1
        self._idle.clear()
        if self._pending >= self._high and self._room_for_more.is_set():
            self._room_for_more.clear()
            self._metrics.intake_paused.set(1)
            log.warning(
                "updates wait for the database: editors' sockets are not read for now",
                waiting=self._pending,
            )
        return future

    def _decided(
        self,
        outcome: AppendResult | EventStoreError,
        on_committed: Callable[[Committed], None] | None,
        on_failed: Callable[[Exception], None] | None,
        future: asyncio.Future[Committed],
    ) -> None:
        self._pending -= 1  # the store tells each event once (GroupCommit's ``told``)
        if isinstance(outcome, AppendResult):
            committed = Committed(outcome.versions[0], outcome.positions[0], outcome.daids[0])
            self._metrics.updates_committed.inc()
            run_callback(on_committed, committed)
            if not future.done():
                future.set_result(committed)
        else:
            run_callback(on_failed, outcome)
            if not future.done():
                future.set_exception(outcome)
                # Nobody may be awaiting it; mark the exception retrieved.
                future.exception()
        self._relieve()
        if not self._pending:
            self._idle.set()

    def _relieve(self) -> None:
        if not self._room_for_more.is_set() and (self._pending <= self._low or self._closed):
            self._room_for_more.set()
            self._metrics.intake_paused.set(0)
            log.info("updates caught up: sockets are read again", waiting=self._pending)

    @property
    def congested(self) -> bool:
        """Whether so many updates wait that the busiest readers should stop taking more."""
        return not self._room_for_more.is_set()

    @property
    def saturated(self) -> bool:
        """Whether so many updates wait that every reader should stop taking more."""
        return self._pending >= self._saturation

    async def room_for_more(self) -> None:
        """Return once the writer is not congested (at once when it is not)."""
        await self._room_for_more.wait()

    async def flush(self) -> None:
        """Wait until every event submitted so far has been decided."""
        await self._idle.wait()

    async def close(self) -> None:
        """Refuse new events, wait for the submitted ones to be decided."""
        self._closed = True
        self._relieve()  # waiting readers go on, and are refused
        await self.flush()


def run_callback(callback: Callable[[T], None] | None, value: T) -> None:
    """Call ``callback`` (if any); a callback's defect is logged, never raised to the
    writer that decides the other events."""
    if callback is None:
        return
    try:
        callback(value)
    except Exception:
        log.exception("commit callback failed")
