"""The live path of one server: store, writer, rooms, metrics, and the
fan-out that ties it to the other nodes of a cluster.

Created with the app, started by its lifespan, and drained on shutdown: stop taking
updates, write what is queued, then let the connections close (with 1012).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from collab.access.limits import RateLimits
from collab.access.members import ProjectRole
from collab.access.principal import TokenCheck
from collab.live import protocol
from collab.live.closecodes import CloseCode
from collab.live.fanout import (
    AccessChange,
    Alone,
    Awareness,
    AwarenessQuery,
    BadMessage,
    CommittedUpdate,
    Envelope,
    FanOut,
    Forward,
    ForwardOutcome,
)
from collab.live.forwarding import Forwarder
from collab.live.intake import Intake
from collab.live.rooms import Rooms
from collab.live.writer import GroupCommitWriter
from collab.runtime.config import LiveSettings
from collab.runtime.metrics import Metrics
from events.errors import EventStoreError
from events.store import EventStore

log = structlog.get_logger("collab.live.hub")


class Connection(Protocol):
    """An open client connection, as the watchdog sees it (``ws.Connection``)."""

    @property
    def sending_since(self) -> float | None:
        """When the frame being sent started, or None while nothing is being sent."""

    def fell_behind(self) -> bool:
        """Close the client if its queue is full and it is not reading; whether it did."""

    def abandon(self, pump: asyncio.Task[None], code: CloseCode, reason: str) -> None:
        """Give up on the frame the client is not reading and close with ``code``."""

    def access_changed(self, project_id: str, member: str, role: ProjectRole | None) -> None:
        """``member``'s role in ``project_id`` is now ``role`` (None: revoked): a
        connection of that member to that project follows it at once."""


class Live:
    def __init__(
        self,
        store: EventStore,
        settings: LiveSettings,
        metrics: Metrics,
        tokens: TokenCheck | None = None,
        limits: RateLimits | None = None,
        *,
        fanout: FanOut | None = None,
    ) -> None:
        self.settings = settings
        #: the other nodes of the cluster (``Alone`` without ``REDIS_URL``)
        self.fanout: FanOut = fanout or Alone()
        #: verifies the tokens connections present; None: authentication is off
        self.tokens = tokens
        #: connections and frames per address and principal; None: no limits
        self.limits = limits
        #: grants and revocations applied so far (a socket being admitted compares it)
        self.access_changes = 0
        #: the sockets' recent reads: which pause first under overload
        self.intake = Intake()
        self.metrics = metrics
        self.store = store
        self.writer = GroupCommitWriter(
            store,
            metrics,
            max_pending=settings.max_pending_updates,
        )
        #: what the rooms submit to: the writer, or the project's home node
        self.forwarder = Forwarder(
            self.writer,
            self.fanout,
            metrics,
            on_home_commit=self._committed_here,
            max_waiting=settings.max_pending_updates,
            clustered=fanout is not None,
        )
        self.rooms = Rooms(
            store,
            self.forwarder,
            metrics,
            grace=settings.room_grace,
            cache_every=settings.cache_every,
            fanout=self.fanout,
            follow_seconds=settings.follow_seconds,
        )
        self.draining = False
        #: open connections and the task sending to each
        self.connections: dict[Connection, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._catching_up: set[asyncio.Task[None]] = set()

    def access_changed(self, project_id: str, member: str, role: ProjectRole | None) -> None:
        """Apply a grant or revocation to the open connections of every node."""
        self._apply_access(project_id, member, role)
        self.fanout.publish(AccessChange(project_id, member, role))

    def _apply_access(self, project_id: str, member: str, role: ProjectRole | None) -> None:
        self.access_changes += 1
        for connection in list(self.connections):
            connection.access_changed(project_id, member, role)

    # -- what the other nodes say (fanout.Receiver) --------------------------------------

    def _committed_here(self, update: CommittedUpdate) -> None:
        self.rooms.committed_elsewhere(update)

    def received(self, envelope: Envelope) -> None:
        match envelope.message:
            case CommittedUpdate() as update:
                if not self.forwarder.settled(update):
                    self.rooms.committed_elsewhere(update)
            case Forward() as forward:
                self.forwarder.serve(envelope.node, forward)
            case ForwardOutcome() as outcome:
                self.forwarder.settled(outcome)
            case Awareness(project_id, frame):
                room = self.rooms.loaded(project_id)
                if room is None:
                    return
                try:
                    message = protocol.decode(frame)
                except protocol.ProtocolError as exc:
                    raise BadMessage(f"awareness frame: {exc}") from None
                if isinstance(message, protocol.AwarenessUpdate):
                    room.presence.changed_elsewhere(envelope.node, message.entries)
            case AwarenessQuery(project_id):
                room = self.rooms.loaded(project_id)
                ours = None if room is None else room.presence.ours()
                if ours is not None:
                    self.fanout.publish(Awareness(project_id, ours))
            case AccessChange(project_id, member, role):
                self._apply_access(project_id, member, role)
            case _:
                pass  # heartbeats and farewells are the fan-out's own business

    def node_lost(self, node: str) -> None:
        self.forwarder.node_lost(node)
        for room in self.rooms.all():
            room.presence.node_lost(node)

    def node_joined(self, node: str) -> None:
        # A node heard anew (started, or back after an outage) may have missed this
        # node's question of ``fast_path_resumed``: ask again, now that it listens.
        self._ask_presence()

    def fast_path_resumed(self) -> None:
        # The other nodes' clients' presence was dropped while they could not be heard:
        # ask for it again rather than wait for their next renewal (up to 15 s).
        self._ask_presence()
        # What was published while the fan-out was down is in the log.
        task = asyncio.get_running_loop().create_task(self._follow_now())
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    def fast_path_lost(self) -> None:
        self.forwarder.fast_path_lost()

    def _ask_presence(self) -> None:
        for room in self.rooms.all():
            self.fanout.publish(AwarenessQuery(room.project_id))

    async def _follow_now(self) -> None:
        try:
            await self.rooms.follow()
        except EventStoreError as exc:
            log.warning("rooms not followed after the fan-out returned", error=str(exc))

    def start(self, *background: Callable[[Live], Coroutine[Any, Any, None]]) -> None:
        self.rooms.start()
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(work(self)) for work in background]
        self._background.append(loop.create_task(self.fanout.start(self), name="fanout"))

    async def drain(self) -> None:
        """Refuse new connections and updates; make every queued update durable."""
        if self.draining:
            return
        self.draining = True
        await self.forwarder.close()
        pending = self.writer.pending
        await self.writer.close()
        log.info("writer flushed", updates=pending)

    async def close(self) -> None:
        await self.drain()
        await self.fanout.close()
        for task in (*self._background, *self._catching_up):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.rooms.close()
        if self.limits is not None:
            await self.limits.close()  # its Redis connections, when the counters live there
