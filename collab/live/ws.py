"""The WebSocket endpoint ``/ws/{project_id}``: moves bytes between a client and its room.

Each connection has a bounded send queue drained by its own task, so a client that
stops reading never slows its room: when the queue overflows while the client is not
reading (see ``Connection._behind``), or one frame has waited SEND_TIMEOUT, the room
forgets the connection and it is closed with 4508 (the close frame waits CLOSE_TIMEOUT
behind the frames already sent, for a client that reads again). Decisions about frames
are made by ``collab.live.protocol`` (decoding) and ``collab.live.room`` (what to answer and
broadcast).

Why this module is a little over 400 lines: one connection's life (admission, the read
loop with its pauses under overload, the send queue and its watchdog, the close) shares
the connection's state; the decisions are elsewhere, what stays is the plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import deque
from typing import Literal

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from collab.access import decide, rules
from collab.access.errors import Forbidden, ProjectNotFound, Unauthenticated
from collab.access.limits import budget_key
from collab.access.members import ProjectRole
from collab.access.principal import Principal, bearer_token, unverified
from collab.live import protocol
from collab.live.closecodes import CloseCode, close_reason
from collab.live.hub import Live
from collab.live.intake import Reads
from collab.live.room import Room
from collab.live.rooms import UnknownProject
from collab.live.writer import WriterError
from events.errors import EventStoreError

log = structlog.get_logger("collab.live.ws")

#: while the writer is congested, a writing socket is read once per this many seconds
#: (under the ping timeout and the held updates' wait, docs/live.md)
PAUSE_SLICE = 2.0

_ids = itertools.count(1)
#: the actor of a connection on a server without authentication
ANONYMOUS = "anonymous"
#: how long a close frame may wait behind a client that does not read
CLOSE_TIMEOUT = 10.0
#: a single frame blocked this long means the client stopped reading
SEND_TIMEOUT = 30.0
#: a full send queue drops a client whose current frame has waited this long
STALL_GRACE = 1.0


class Connection:
    """One client; implements the room's ``Peer``."""

    def __init__(
        self,
        websocket: WebSocket,
        live: Live,
        principal: Principal,
        project_id: str,
        *,
        can_write: bool = True,
    ) -> None:
        self.id = next(_ids)
        #: the project asked for, in the normal form rooms and member changes use
        self.project_id = project_id
        self._ws = websocket
        self._live = live
        self.principal = principal
        #: False for a viewer (and an auditor): the room refuses its updates
        self.can_write = can_write
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self.closing: tuple[CloseCode, str] | None = None
        self.room: Room | None = None
        #: when the frame being sent started waiting (None when not sending)
        self.sending_since: float | None = None
        #: the watchdog gave up on the frame being sent (the close frame may still go)
        self._abandoned = False
        #: how much it sent lately (the busiest pause first under overload)
        self.reads = Reads()

    @property
    def actor(self) -> str:
        return self.principal.actor

    @property
    def agent(self) -> str:
        return self.principal.agent

    def access_changed(self, project_id: str, member: str, role: ProjectRole | None) -> None:
        # Compared with the project asked for, not the room's: the room may still be
        # loading, and a change made meanwhile must hold once it is attached.
        if self.project_id != project_id or member != self.actor:
            return
        if self.principal.is_admin or self.principal.is_auditor:
            return  # a global role reaches every project whatever the member list says
        if role is None:
            reason = f"{member}'s access to project {project_id} was revoked"
            self.close(CloseCode.FORBIDDEN, reason)
            return
        self.can_write = rules.allowed(self.principal, "project.edit", role, in_project=True)
        if not self.can_write and self.room is not None:
            self.room.read_only(self)

    def send(self, frame: bytes) -> None:
        if self.closing is not None:
            return
        if self.fell_behind():
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wakeup.set()

    def fell_behind(self) -> bool:
        """Drop the client (4508) if its queue is full and it is not reading.

        Checked on every frame queued and, by the watchdog, every second: a queue
        that filled while the client still read is judged again once no frame comes.
        """
        limit = self._live.settings.send_queue_bytes
        if self.closing is not None or self._queued_bytes < limit or not self._behind():
            return False
        self._live.metrics.refused.labels("slow_consumer").inc()
        self._queue.clear()
        self._queued_bytes = 0
        self.close(
            CloseCode.TOO_SLOW_RECONNECT, f"client fell behind (send queue over {limit} bytes)"
        )
        return True

    def close(self, code: CloseCode, reason: str) -> None:
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if self.room is not None:
            # Stop receiving broadcasts now: the room must not wait for this client.
            self.room.detach(self)
        self._wakeup.set()

    def _behind(self) -> bool:
        """Whether a full queue means this client is not keeping up.

        One group commit can hand a room several updates at once, each up to
        max_message_bytes, before any pump runs: a client that reads is behind only
        when its current frame has waited STALL_GRACE, or its queue holds four times
        the larger of the queue limit and the message limit (the memory bound).
        """
        settings = self._live.settings
        if self._queued_bytes >= 4 * max(settings.send_queue_bytes, settings.max_message_bytes):
            return True
        since = self.sending_since
        return since is not None and asyncio.get_running_loop().time() - since > STALL_GRACE

    def abandon(self, pump: asyncio.Task[None], code: CloseCode, reason: str) -> None:
        """Give up on the frame the client is not reading and close with ``code``."""
        self.close(code, reason)
        self._abandoned = True
        pump.cancel()

    async def pump(self) -> None:
        """Send queued frames; close once asked to (after the queue drains)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                frame = self._queue.popleft()
                self._queued_bytes -= len(frame)
                self.sending_since = loop.time()
                try:
                    await self._ws.send_bytes(frame)
                except asyncio.CancelledError:
                    if not self._abandoned:
                        raise
                    # Only this frame was given up (see abandon): the close frame is
                    # still offered, so a client that reads again learns the code.
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    self._queue.clear()
                    break
                except Exception:  # noqa: BLE001 - the client went away
                    return
                finally:
                    self.sending_since = None
            if self.closing is not None:
                code, reason = self.closing
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._ws.close(int(code), close_reason(reason)), CLOSE_TIMEOUT
                    )
                return


async def endpoint(websocket: WebSocket) -> None:
    live: Live = websocket.app.state.live
    project_id = websocket.path_params["project_id"]
    await websocket.accept()
    # Refusals are close codes, which every client sees (a refused upgrade is not):
    # authenticated before anything else, so nothing about the project leaks.
    changes = live.access_changes
    principal, refusal = await _admit(websocket, live, project_id)
    if refusal is None or refusal == "read_only":
        refusal = await _limited(websocket, live, principal) or refusal
    connection = Connection(
        websocket,
        live,
        principal or unverified(ANONYMOUS),
        _normal(project_id),
        can_write=refusal is None,
    )
    live.metrics.connections.inc()
    loop = asyncio.get_running_loop()
    pump = loop.create_task(connection.pump())
    live.connections[connection] = pump
    if live.access_changes != changes and not isinstance(refusal, tuple):
        # A grant or revocation came while the member list was read: read it again,
        # now that later ones reach this connection.
        _, refusal = await _admit(websocket, live, project_id)
        connection.can_write = refusal is None
    room: Room | None = None
    receiver: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None
    try:
        if isinstance(refusal, tuple):
            connection.close(*refusal)
        elif (busy := _busy(live)) is not None:
            connection.close(*busy)
        else:
            expiry = _close_on_expiry(connection)
            room = await _room(live, connection, project_id)
        if room is not None and connection.closing is None:
            connection.room = room
            room.attach(connection)
            receiver = loop.create_task(_receive(websocket, connection, room, live))
            # However the receiver ends (client gone, bad frame), the pump ends too.
            receiver.add_done_callback(
                lambda _: connection.close(CloseCode.SERVICE_RESTART, "closing")
            )
        # The pump ends after the close frame, or when the watchdog cancels it.
        await asyncio.wait({pump})
    finally:
        if expiry is not None:
            expiry.cancel()
        del live.connections[connection]
        if receiver is not None:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if not pump.done():
            pump.cancel()
        if room is not None:
            room.detach(connection)
            connection.room = None
            live.rooms.release(room)
        live.metrics.connections.dec()


def _pauses(connection: Connection, live: Live, now: float) -> bool:
    """Under congestion the busiest sockets pause; once saturated, every writing one.

    The mean is taken over every open connection, viewers included: when viewers are
    many, more editors count as busy, which errs towards relieving the database."""
    return live.writer.saturated or live.intake.busiest(
        connection.reads, now, len(live.connections)
    )


def _busy(live: Live) -> tuple[CloseCode, str] | None:
    """Why no new connection is taken now, if so: a restart, or an overload."""
    if live.draining:
        return CloseCode.SERVICE_RESTART, "server is restarting"
    if live.writer.congested:
        live.metrics.refused.labels("overloaded_connect").inc()
        return (
            CloseCode.TRY_AGAIN_LATER,
            "overloaded: updates wait for the database; reconnect later",
        )
    return None


async def _room(live: Live, connection: Connection, project_id: str) -> Room | None:
    """The project's room; None, with the connection closed saying why, when it fails."""
    try:
        return await live.rooms.acquire(project_id)
    except UnknownProject as exc:
        connection.close(CloseCode.UNKNOWN_PROJECT, str(exc))
    except EventStoreError as exc:
        log.warning("room not loaded", project=project_id, error=str(exc))
        connection.close(CloseCode.TRY_AGAIN_LATER, "database unavailable; reconnect later")
    return None


Refusal = tuple[CloseCode, str] | Literal["read_only"] | None


def _sender(websocket: WebSocket, principal: Principal | None) -> str:
    return budget_key(principal, websocket.client.host if websocket.client is not None else None)


def _normal(project_id: str) -> str:
    """A project id as rooms and member changes name it; as given when it is no UUID."""
    try:
        return str(uuid.UUID(project_id))
    except ValueError:
        return project_id


async def _limited(
    websocket: WebSocket, live: Live, principal: Principal | None
) -> tuple[CloseCode, str] | None:
    """A transient refusal when the principal (the address, without authentication)
    opened too many sockets."""
    if live.limits is None:
        return None
    exceeded = await live.limits.hit("connections", _sender(websocket, principal))
    if exceeded is None:
        return None
    live.metrics.refused.labels("rate_limited").inc()
    return CloseCode.RATE_LIMITED, f"{exceeded.message}; reconnect later"


async def _admit(
    websocket: WebSocket, live: Live, project_id: str
) -> tuple[Principal | None, Refusal]:
    """Who connects, and whether they may: (principal, None) to edit, (principal,
    "read_only") to watch, (principal or None, (code, reason)) to be refused."""
    if live.tokens is None:
        return unverified(ANONYMOUS), None
    try:
        token = websocket.query_params.get("token") or bearer_token(
            websocket.headers.get("authorization")
        )
        if token is None:
            return None, (CloseCode.UNAUTHENTICATED, "this server needs a token (?token=...)")
        principal = await live.tokens.verify(token)
    except Unauthenticated as exc:
        return None, (CloseCode.UNAUTHENTICATED, exc.message)
    try:
        # a path that is no UUID names no stream: no roster, an unknown project
        role = await decide.role_in(principal, "project.read", _normal(project_id), log=live.store)
    except ProjectNotFound:
        return principal, (CloseCode.UNKNOWN_PROJECT, f"no project {project_id!r}")
    except Forbidden as exc:
        return principal, (CloseCode.FORBIDDEN, exc.message)
    except EventStoreError as exc:
        log.warning("members not read", project=project_id, error=str(exc))
        return principal, (CloseCode.TRY_AGAIN_LATER, "database unavailable; reconnect later")
    writes = rules.allowed(principal, "project.edit", role, in_project=True)
    return principal, None if writes else "read_only"


def _close_on_expiry(connection: Connection) -> asyncio.TimerHandle | None:
    """Close the connection with 4401 when its token expires."""
    expires_at = connection.principal.expires_at
    if expires_at is None:
        return None
    loop = asyncio.get_running_loop()
    delay = max(0.0, expires_at - time.time())
    reason = "token expired; reconnect with a new one"
    return loop.call_later(delay, connection.close, CloseCode.UNAUTHENTICATED, reason)


async def watchdog(live: Live) -> None:
    """Drop connections whose frame has not left for SEND_TIMEOUT (they stopped reading)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        now = loop.time()
        for connection, pump in list(live.connections.items()):
            if connection.fell_behind():
                continue
            since = connection.sending_since
            if since is not None and now - since > SEND_TIMEOUT:
                live.metrics.refused.labels("slow_consumer").inc()
                connection.abandon(pump, CloseCode.TOO_SLOW_RECONNECT, "client stopped reading")


async def _receive(websocket: WebSocket, connection: Connection, room: Room, live: Live) -> None:
    limit = live.settings.max_message_bytes
    limits = live.limits
    # a principal's frames are counted together, whichever socket they come by
    sender = _sender(websocket, connection.principal)
    writer = live.writer
    loop = asyncio.get_running_loop()
    while connection.closing is None:
        if writer.congested and connection.can_write and _pauses(connection, live, loop.time()):
            # Backpressure: the client's frames wait (in it and in TCP) until the
            # database has caught up, rather than being refused with its connection.
            # One frame is still read every PAUSE_SLICE seconds: uvicorn reads pongs,
            # close frames and the step 2 a held update waits for only when the app
            # takes a frame, and a long pause would otherwise time them all out.
            live.metrics.paused_sockets.inc()
            try:
                await asyncio.wait_for(writer.room_for_more(), PAUSE_SLICE)
                continue
            except TimeoutError:
                pass
            finally:
                live.metrics.paused_sockets.dec()
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        live.intake.read(connection.reads, loop.time())
        if message["type"] == "websocket.disconnect":
            return
        frame = message.get("bytes")
        if frame is None:
            live.metrics.refused.labels("text_frame").inc()
            connection.close(CloseCode.BAD_MESSAGE, "text frames are not part of the protocol")
            return
        if len(frame) > limit:
            live.metrics.refused.labels("too_large").inc()
            connection.close(
                CloseCode.TOO_LARGE, f"message of {len(frame)} bytes exceeds the {limit}-byte limit"
            )
            return
        if limits is not None:
            exceeded = await limits.hit("updates", sender) or await limits.hit(
                "update_bytes", sender, cost=len(frame)
            )
            if exceeded is not None:
                # Dropping a frame would leave the client's document ahead of the
                # room's; closed with a code it reconnects after, it syncs again.
                live.metrics.refused.labels("rate_limited").inc()
                connection.close(CloseCode.RATE_LIMITED, f"{exceeded.message}; reconnect later")
                return
        try:
            room.receive(connection, protocol.decode(frame))
        except protocol.REFUSED as exc:
            live.metrics.refused.labels(type(exc).__name__).inc()
            log.info("frame refused", project=room.project_id, error=str(exc))
            connection.close(CloseCode.BAD_MESSAGE, str(exc))
            return
        except WriterError:
            return  # the room has closed this connection with the reason
