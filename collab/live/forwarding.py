"""One node appends each project's updates: the project's home.

Two nodes appending to one project's stream take turns on its row: each append reads
the stream's version tip under the row's lock, since a version's DAID names the version
before it. With each room's editors split over two nodes, that turn-taking made an
append take 10-14 ms instead of 3-7 (44-55 ms in an earlier sitting), and a process
that kept losing the race could starve (docs/benchmarks.md, "Cross-node fan-out"). So a
node does not append the updates of a project whose home (:meth:`FanOut.home`) is
another node: it forwards them there, the home appends them with its own in its group
commit and tells every node hosting the room (its outcome for the forwarding node), and
only then does the room apply and broadcast them. Durable before broadcast still holds:
the outcome says the update was committed.

The log stays the truth and the node that took the update stays answerable for it. A
forwarded update that has no outcome within ``FORWARD_TIMEOUT``, whose home is no longer
heard or declines it (draining, overloaded, its database failing), or that is waiting
when the fan-out is lost or this node drains, is appended by this node itself with the
same event id, and so is every update of its project still waiting after it: a
project's updates take one way at a time, in the order the room admitted them. If the
home did commit it, the store answers with what it stored (an idempotent retry, sent as
a request of its own), so nothing is written twice.

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
#: seconds a home declines what an origin forwards of a stream after declining one of
#: its updates: those were sent before the origin heard, and would overtake it
DECLINE_SECONDS: Final = 2.0


@dataclass(slots=True)
class _Waiting:
    stream_id: str
    event: NewEvent
    home: str
    deadline: float
    on_committed: Callable[[Committed], None]
    on_failed: Callable[[Exception], None]
    future: asyncio.Future[Committed]


@dataclass(slots=True)
class _Route:
    """Where a stream's undecided updates went: all to one home node, or all here."""

    home: str | None
    undecided: int = 0


class Forwarder:
    """The rooms' :class:`~collab.live.room.Durability`: the local writer for the
    projects this node is home of (or when it is alone), the home node for the others.

    A stream's updates take one route at a time: while some are undecided, the next
    ones follow them, so they are stored in the order the room admitted them (an update
    may build on the one before it). When the home changes meanwhile, or a forwarded
    update falls back here, every forwarded update of that stream still waiting comes
    here too, in order.
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
        clustered: bool = True,
    ) -> None:
        #: False for a node without a cluster: no project has another home, and each
        #: update goes straight to the writer, untracked (the live path's hot loop)
        self._clustered = clustered
        self._writer = writer
        self._fanout = fanout
        self._metrics = metrics
        self._on_home_commit = on_home_commit
        self._max_waiting = max_waiting
        self._timeout = timeout
        #: forwarded updates without an outcome, in the order they were sent
        self._waiting: OrderedDict[UUID, _Waiting] = OrderedDict()
        #: streams with undecided updates, and where those went
        self._routes: dict[str, _Route] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None
        #: (origin, stream) whose forwards this home declines until then
        self._declined: dict[tuple[str, str], float] = {}

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
        if not self._clustered:
            return self._writer.submit(stream_id, event, on_committed, on_failed)
        home = None
        if not self._closed and stream_id.startswith(PROJECT_STREAM_PREFIX):
            home = self._fanout.home(stream_id.removeprefix(PROJECT_STREAM_PREFIX))
        route = self._routes.get(stream_id)
        if route is None:
            route = self._routes[stream_id] = _Route(home)
        elif route.home != home:
            # The home changed under undecided updates: they and this one are stored
            # here, in order; the new home takes the stream once they are decided.
            if route.home is not None:
                self._fall_back({stream_id}, "home changed")
            home = None
        if home is not None and len(self._waiting) >= self._max_waiting:
            self._forget_route(stream_id, route)
            raise Overloaded(f"{len(self._waiting)} updates are waiting for their home node")
        committed, failed = self._counted(stream_id, route, on_committed, on_failed)
        try:
            if home is None:
                return self._writer.submit(stream_id, event, committed, failed)
            self._fanout.publish(
                Forward(stream_id.removeprefix(PROJECT_STREAM_PREFIX), home, stream_id, event)
            )
        except BaseException:
            route.undecided -= 1  # refused at once: its callbacks will not run
            self._forget_route(stream_id, route)
            raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Committed] = loop.create_future()
        self._waiting[event.event_id] = _Waiting(
            stream_id,
            event,
            home,
            time.monotonic() + self._timeout,
            committed,
            failed,
            future,
        )
        self._idle.clear()
        self._metrics.forwarded.labels("out").inc()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="forward-sweep")
        return future

    def _counted(
        self,
        stream_id: str,
        route: _Route,
        on_committed: Callable[[Committed], None] | None,
        on_failed: Callable[[Exception], None] | None,
    ) -> tuple[Callable[[Committed], None], Callable[[Exception], None]]:
        """The callbacks, wrapped to count the stream's undecided updates."""
        route.undecided += 1

        def committed(done: Committed) -> None:
            route.undecided -= 1
            self._forget_route(stream_id, route)
            run_callback(on_committed, done)

        def failed(error: Exception) -> None:
            route.undecided -= 1
            self._forget_route(stream_id, route)
            run_callback(on_failed, error)

        return committed, failed

    def _forget_route(self, stream_id: str, route: _Route) -> None:
        if route.undecided <= 0 and self._routes.get(stream_id) is route:
            del self._routes[stream_id]

    def settled(self, outcome: ForwardOutcome | CommittedUpdate) -> bool:
        """The home says what became of a forwarded update: the update committed (as it
        told every node hosting the room) or an outcome; False when no forwarded update
        of this node waits for it."""
        if outcome.event_id is None:
            return False
        waiting = self._waiting.get(outcome.event_id)
        if waiting is None:
            return False  # appended here meanwhile: the store gave that the same answer
        if isinstance(outcome, CommittedUpdate) or outcome.committed:
            del self._waiting[outcome.event_id]
            announced = isinstance(outcome, CommittedUpdate)
            done = Committed(outcome.version, outcome.position, outcome.daid, announced)
            waiting.on_committed(done)
            if not waiting.future.done():
                waiting.future.set_result(done)
            self._check_idle()
        else:
            # it and every other update of its stream still waiting: here, in the order
            # they were forwarded
            self._fall_back({waiting.stream_id}, f"declined: {outcome.detail}")
        return True

    def node_lost(self, node: str) -> None:
        """``node`` is gone: what waits for it is appended here."""
        lost = {waiting.stream_id for waiting in self._waiting.values() if waiting.home == node}
        self._fall_back(lost, "home node lost")

    def fast_path_lost(self) -> None:
        """The fan-out is down: no outcome is sure to come back."""
        self._fall_back(self._waiting_streams(), "fan-out lost")

    async def flush(self) -> None:
        """Wait until everything submitted so far is decided, here or at its home."""
        while not self._idle.is_set():
            await self._idle.wait()
        await self._writer.flush()

    async def close(self) -> None:
        """Forward nothing more and append what waits here (the writer is still open)."""
        self._closed = True
        self._fall_back(self._waiting_streams(), "this node is draining")
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def _waiting_streams(self) -> set[str]:
        return {waiting.stream_id for waiting in self._waiting.values()}

    def _fall_back(self, streams: set[str], reason: str) -> None:
        """Append here every waiting update of ``streams``, in the order they were
        forwarded (so a stream's order holds)."""
        if not streams:
            return
        taken = [
            event_id for event_id, waiting in self._waiting.items() if waiting.stream_id in streams
        ]
        for stream_id in streams:
            if (route := self._routes.get(stream_id)) is not None:
                route.home = None
        self._metrics.forward_fallbacks.inc(len(taken))
        log.info("forwarded updates appended here", updates=len(taken), reason=reason)
        for event_id in taken:
            self._append_here(self._waiting.pop(event_id))
        self._check_idle()

    def _append_here(self, waiting: _Waiting) -> None:
        future = waiting.future
        try:
            here = self._writer.submit(
                waiting.stream_id,
                waiting.event,
                waiting.on_committed,
                waiting.on_failed,
                resend=True,
            )
        except WriterError as exc:
            waiting.on_failed(exc)
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
            late = set()
            for waiting in self._waiting.values():
                if waiting.deadline > now:
                    break  # sent in order, so the rest are younger
                late.add(waiting.stream_id)
            self._fall_back(late, "no outcome in time")

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
            self._declined[origin, forward.stream_id] = time.monotonic() + DECLINE_SECONDS
            if len(self._declined) > 10_000:
                now = time.monotonic()
                self._declined = {k: t for k, t in self._declined.items() if t > now}
            self._fanout.publish(ForwardOutcome(origin, event_id, detail=str(error) or "failed"))

        key = (origin, forward.stream_id)
        until = self._declined.get(key)
        if until is not None:
            if until > time.monotonic():
                # The origin appends this stream's updates itself once told of a decline;
                # what it forwarded before hearing of it must not be stored ahead of that.
                failed(WriterError("an earlier update of this project was declined"))
                return
            del self._declined[key]
        try:
            # The origin may have stored it meanwhile (it gave up waiting): a resend.
            self._writer.submit(forward.stream_id, forward.event, committed, failed, resend=True)
        except WriterError as exc:
            failed(exc)


def _update_of(new: NewEvent) -> bytes | None:
    """The Yjs update a document event carries, for the room's document."""
    event = new.event
    if event.event_type not in DOCUMENT_EVENTS or type(event).payload_field is None:
        return None
    update = getattr(event, type(event).payload_field or "", None)
    return update if isinstance(update, bytes) else None
