"""One node appends each project's updates: the project's home.

Two nodes appending to one project's stream take turns on its row: each append reads
the stream's version tip under the row's lock, since a version's DAID names the version
before it. With each room's editors split over two nodes, that turn-taking made a
commit take 44-55 ms instead of 10 and the cross-node latency +166 ms at p50
(docs/benchmarks.md, "Cross-node fan-out"). So a node does not append the updates of a
project whose home (:meth:`FanOut.home`) is another node: it forwards them there, the
home appends them with its own in its group commit and sends back the outcome, and only
then does the room apply and broadcast them. Durable before broadcast still holds: the
outcome says the update was committed.

The log stays the truth and the node that took the update stays answerable for it. A
forwarded update that has no outcome within ``FORWARD_TIMEOUT``, whose home is no longer
heard or declines it (draining, overloaded, its database failing), or that is waiting
when the fan-out is lost or this node drains, is appended by this node itself with the
same event id: if the home did commit it, the store answers with what it stored
(an idempotent retry), so nothing is written twice.

The home trusts what the other nodes forward (they checked it as they check their own
clients' updates); Redis is inside the cluster's trust boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import structlog

from collab.live.fanout import CommittedUpdate, FanOut, Forward, ForwardOutcome
from collab.live.writer import (
    Committed,
    GroupCommitWriter,
    Overloaded,
    WriterError,
    run_callback,
)
from collab.runtime.metrics import Metrics
from events.models import DOCUMENT_EVENTS, PROJECT_STREAM_PREFIX
from events.records import NewEvent

log = structlog.get_logger("collab.live.forwarding")

#: seconds a forwarded update waits for its outcome before this node appends it itself
FORWARD_TIMEOUT: Final = 5.0
#: seconds between two looks for forwarded updates that waited too long
_SWEEP_SECONDS: Final = 0.25


@dataclass(slots=True)
class _Waiting:
    stream_id: str
    event: NewEvent
    home: str
    deadline: float
    on_committed: Callable[[Committed], None] | None
    on_failed: Callable[[Exception], None] | None
    future: asyncio.Future[Committed]


class Forwarder:
    """The rooms' :class:`~collab.live.room.Durability`: the local writer for the
    projects this node is home of (or when it is alone), the home node for the others.
    """

    def __init__(
        self,
        writer: GroupCommitWriter,
        fanout: FanOut,
        metrics: Metrics,
        *,
        on_home_commit: Callable[[CommittedUpdate], None],
        max_waiting: int = 20_000,
        timeout: float = FORWARD_TIMEOUT,
    ) -> None:
        self._writer = writer
        self._fanout = fanout
        self._metrics = metrics
        self._on_home_commit = on_home_commit
        self._max_waiting = max_waiting
        self._timeout = timeout
        #: forwarded updates without an outcome, in the order they were sent
        self._waiting: OrderedDict[UUID, _Waiting] = OrderedDict()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Forwarded updates still waiting for their outcome."""
        return len(self._waiting)

    # -- the rooms' side ------------------------------------------------------------------

    def submit(
        self,
        stream_id: str,
        event: NewEvent,
        on_committed: Callable[[Committed], None] | None = None,
        on_failed: Callable[[Exception], None] | None = None,
    ) -> asyncio.Future[Committed]:
        """As :meth:`GroupCommitWriter.submit`; forwarded when the project's home is
        another node."""
        home = None
        if not self._closed and stream_id.startswith(PROJECT_STREAM_PREFIX):
            home = self._fanout.home(stream_id.removeprefix(PROJECT_STREAM_PREFIX))
        if home is None:
            return self._writer.submit(stream_id, event, on_committed, on_failed)
        if len(self._waiting) >= self._max_waiting:
            raise Overloaded(f"{len(self._waiting)} updates are waiting for their home node")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Committed] = loop.create_future()
        self._waiting[event.event_id] = _Waiting(
            stream_id,
            event,
            home,
            time.monotonic() + self._timeout,
            on_committed,
            on_failed,
            future,
        )
        self._idle.clear()
        self._fanout.publish(
            Forward(stream_id.removeprefix(PROJECT_STREAM_PREFIX), home, stream_id, event)
        )
        self._metrics.forwarded.labels("out").inc()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="forward-sweep")
        return future

    def settled(self, outcome: ForwardOutcome | CommittedUpdate) -> bool:
        """The home says what became of a forwarded update: the update committed (as it
        told every node hosting the room) or an outcome; False when no forwarded update
        of this node waits for it."""
        if outcome.event_id is None:
            return False
        waiting = self._waiting.pop(outcome.event_id, None)
        if waiting is None:
            return False  # appended here meanwhile: the store gave that the same answer
        if isinstance(outcome, CommittedUpdate) or outcome.committed:
            done = Committed(outcome.version, outcome.position, outcome.daid, announced=True)
            run_callback(waiting.on_committed, done)
            if not waiting.future.done():
                waiting.future.set_result(done)
        else:
            self._append_here(waiting, f"declined: {outcome.detail}")
        self._check_idle()
        return True

    def node_lost(self, node: str) -> None:
        """``node`` is gone: what waits for it is appended here."""
        self._fall_back(lambda waiting: waiting.home == node, "home node lost")

    def fast_path_lost(self) -> None:
        """The fan-out is down: no outcome is sure to come back."""
        self._fall_back(lambda _waiting: True, "fan-out lost")

    async def flush(self) -> None:
        """Wait until everything submitted so far is decided, here or at its home."""
        while not self._idle.is_set():
            await self._idle.wait()
        await self._writer.flush()

    async def close(self) -> None:
        """Forward nothing more and append what waits here (the writer is still open)."""
        self._closed = True
        self._fall_back(lambda _waiting: True, "this node is draining")
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def _fall_back(self, which: Callable[[_Waiting], bool], reason: str) -> None:
        taken = [event_id for event_id, waiting in self._waiting.items() if which(waiting)]
        for event_id in taken:
            self._append_here(self._waiting.pop(event_id), reason)
        self._check_idle()

    def _append_here(self, waiting: _Waiting, reason: str) -> None:
        self._metrics.forward_fallbacks.inc()
        log.info(
            "forwarded update appended here",
            stream=waiting.stream_id,
            home=waiting.home,
            reason=reason,
        )
        future = waiting.future
        try:
            here = self._writer.submit(
                waiting.stream_id, waiting.event, waiting.on_committed, waiting.on_failed
            )
        except WriterError as exc:
            run_callback(waiting.on_failed, exc)
            if not future.done():
                future.set_exception(exc)
                future.exception()
            return

        def copy(done: asyncio.Future[Committed]) -> None:
            if future.done():
                return
            if (error := done.exception()) is not None:
                future.set_exception(error)
                future.exception()
            else:
                future.set_result(done.result())

        here.add_done_callback(copy)

    def _check_idle(self) -> None:
        if not self._waiting:
            self._idle.set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = time.monotonic()
            late = []
            for event_id, waiting in self._waiting.items():
                if waiting.deadline > now:
                    break  # sent in order, so the rest are younger
                late.append(event_id)
            for event_id in late:
                self._append_here(self._waiting.pop(event_id), "no outcome in time")
            if late:
                self._check_idle()

    # -- the home's side ------------------------------------------------------------------

    def serve(self, origin: str, forward: Forward) -> None:
        """Append an update another node forwarded; tell it the outcome."""
        self._metrics.forwarded.labels("in").inc()
        event_id = forward.event.event_id
        update = _update_of(forward.event)

        def committed(done: Committed) -> None:
            if update is None:
                self._fanout.publish(
                    ForwardOutcome(origin, event_id, done.version, done.position, done.daid)
                )
                return
            # One message tells the origin (its outcome) and every other node hosting
            # the room; this node's clients see it at once.
            message = CommittedUpdate(
                forward.project_id, done.version, done.position, update, event_id, done.daid
            )
            self._fanout.publish(message)
            self._on_home_commit(message)

        def failed(error: Exception) -> None:
            self._fanout.publish(ForwardOutcome(origin, event_id, detail=str(error) or "failed"))

        try:
            self._writer.submit(forward.stream_id, forward.event, committed, failed)
        except WriterError as exc:
            failed(exc)


def _update_of(new: NewEvent) -> bytes | None:
    """The Yjs update a document event carries, for the room's document."""
    event = new.event
    if event.event_type not in DOCUMENT_EVENTS or type(event).payload_field is None:
        return None
    update = getattr(event, type(event).payload_field or "", None)
    return update if isinstance(update, bytes) else None
