"""One live project in memory: its document, its peers, their presence.

The room's document holds exactly what the log holds: an update from a client is
checked, handed to the writer (the rooms' side of the store's group commit), and applied
and broadcast only in the writer's ``on_committed`` callback. "Checked" means more than
"decodes": an update that writes a value the log cannot hold (a NUL, a NaN;
``protocol.check_update``) is refused, and so is one that does not apply to the document
(a decodable update can still name a parent that is not a shared type), and one that
refers to ids nobody sent is held until they arrive: :mod:`collab.live.admission` keeps
the trial document this is decided on, so nothing the room could not apply is ever
stored (one stored poison update stopped every reader of the log). An update that writes
values outside the document schema is stored (its sender keeps it anyway) and followed
at once by the server's ``doc.corrected`` update that puts them back or removes them.

The room hands updates to a :class:`Durability` port (the writer in the server, a
hand-driven log in ``tests/test_room_log.py``).

Because updates are applied only once durable, a client joining in between never sees
one that is not, and the room never has to be repaired after a failed append (the
sender is closed with 1013 and resends on reconnect, because Yjs clients keep their
edits).

Each stream version is applied once, whichever way it comes (own commits, other nodes,
the log: :mod:`collab.live.versions`); versions skipped over are read from the log
through ``on_gap``. In a cluster the room publishes its own commits and its clients'
presence (:mod:`collab.live.fanout`, :mod:`collab.live.presence`).

Nothing here awaits: peers are handed frames through :class:`Peer.send`, which only
queues them.

Why this module is a little over 400 lines: what the room decides for one frame (admit,
hold, correct, broadcast, answer a sync) reads the same state (its peers, the versions
applied, the updates on their way to the log); the parts that stand alone already live
beside it (admission, versions, presence, corrections).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Protocol

import pycrdt
import structlog

from collab.access.principal import SERVER_AGENT
from collab.live import protocol
from collab.live.admission import Admission, Peer
from collab.live.closecodes import CloseCode
from collab.live.fanout import CommittedUpdate, Message
from collab.live.presence import Presence
from collab.live.versions import Versions
from collab.live.writer import Committed, WriterClosed, WriterError
from collab.runtime.metrics import Metrics
from events import EventMetadata, NewEvent
from events.models import (
    MAX_CORRECTION_REASONS,
    DocCorrected,
    DocUpdated,
    DomainEvent,
    project_stream,
)
from events.store import CachedState
from music import document
from music.update_values import Extent
from music.updates import EMPTY_UPDATE

log = structlog.get_logger("collab.live.room")

#: what a read-only peer is told when it sends an update (y-protocols' auth message)
READ_ONLY = "permission denied: read-only access (viewer); edits are not stored"


class Durability(Protocol):
    """Where the room sends an update to become durable: the writer.

    Callbacks run in submission order once the event's batch is decided; ``submit``
    raises WriterError at once instead of queueing when it cannot take the event.
    """

    def submit(
        self,
        stream_id: str,
        event: NewEvent,
        on_committed: Callable[[Committed], None] | None = None,
        on_failed: Callable[[Exception], None] | None = None,
    ) -> asyncio.Future[Committed]: ...


class RoomWriter(Durability, Protocol):
    """The rooms' writer: :class:`Durability`, and a wait for what it was handed."""

    async def flush(self) -> None:
        """Return once every event submitted so far is decided."""


def _no_cluster(message: Message) -> None:
    pass


class Room:
    def __init__(
        self,
        project_id: str,
        writer: Durability,
        metrics: Metrics,
        *,
        save_state: Callable[[CachedState], None] | None = None,
        cache_every: int = 1000,
        publish: Callable[[Message], None] = _no_cluster,
        on_gap: Callable[[Room], None] | None = None,
    ) -> None:
        self.project_id = project_id
        self.stream_id = project_stream(project_id)
        self.doc = document.new_document()
        #: the stream versions applied (each once) and the global position of the last
        self.versions = Versions()
        self.position = 0
        self.peers: set[Peer] = set()
        #: peers plus API requests using the room; it unloads when this drops to 0
        self.holds = 0
        self.pending = 0
        self._writer = writer
        self._metrics = metrics
        self.presence = Presence(
            project_id, lambda frame, exclude: self._broadcast(frame, exclude=exclude), publish
        )
        self._full_update: bytes | None = None
        self._save_state = save_state
        self._cache_every = cache_every
        self._cached_version = 0
        self._publish = publish
        self._on_gap = on_gap
        self._admission = Admission(self.doc.get_update, metrics)
        self._submitted = 0

    # -- loading ----------------------------------------------------------------------

    def load(self, updates: list[bytes], version: int, position: int) -> None:
        """Apply updates read from the cache and the log (before any peer joins)."""
        if updates:
            self.doc.apply_update(
                updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)
            )
        self.versions.loaded(version)
        self.position = max(self.position, position)
        self._full_update = None
        self._admission.forget()

    def loaded_from_cache(self, version: int) -> None:
        self._cached_version = version

    # -- peers --------------------------------------------------------------------------

    def attach(self, peer: Peer) -> None:
        """A peer joins: it gets our step 1 and everyone's presence."""
        self.peers.add(peer)
        peer.send(protocol.encode_sync_step1(self.doc.get_state()))
        if self.presence:
            peer.send(protocol.encode_awareness(self.presence.entries()))

    def read_only(self, peer: Peer) -> None:
        """A peer may no longer write: its held updates go (it is told on its next)."""
        self._admission.drop(peer)

    def detach(self, peer: Peer) -> None:
        """A peer leaves: its presence and its held updates go."""
        self.peers.discard(peer)
        self._admission.drop(peer)
        self.presence.left(peer)

    def receive(self, peer: Peer, message: protocol.Message) -> None:
        match message:
            case protocol.SyncStep1(state_vector):
                peer.send(protocol.encode_sync_step2(self._update_for(state_vector)))
            case protocol.SyncStep2(update, extent) | protocol.Update(update, extent):
                if peer.can_write:
                    self.submit(
                        update, origin=peer, actor=peer.actor, agent=peer.agent, extent=extent
                    )
                elif update != EMPTY_UPDATE:
                    # y-protocols' answer to a write it may not make; the connection
                    # stays open for what a viewer may do (read, presence)
                    self._metrics.refused.labels("read_only").inc()
                    peer.send(protocol.encode_auth_denied(READ_ONLY))
            case protocol.AwarenessUpdate(entries):
                self.presence.changed(peer, entries)
            case protocol.QueryAwareness():
                peer.send(protocol.encode_awareness(self.presence.entries()))
            case protocol.AuthDenied():
                pass  # only servers send it; a client echoing one changes nothing

    def _update_for(self, state_vector: bytes) -> bytes:
        if state_vector == b"\x00":
            # Join storms ask for the whole document many times over: encode it once.
            if self._full_update is None:
                self._full_update = self.doc.get_update()
            return self._full_update
        try:
            return self.doc.get_update(state_vector)
        except ValueError as exc:
            raise protocol.MalformedUpdate(f"state vector refused: {exc}") from None

    # -- updates ----------------------------------------------------------------------

    def submit(
        self,
        update: bytes,
        *,
        origin: Peer | None,
        actor: str,
        agent: str = SERVER_AGENT,
        correlation_id: str | None = None,
        event: DomainEvent | None = None,
        parents: tuple[str, ...] = (),
        extent: Extent | None = None,
    ) -> asyncio.Future[Committed] | None:
        """Queue a checked update for the log; it is applied and broadcast once durable.

        ``event`` replaces the ``doc.updated`` event that carries it by default (a
        rollback appends ``project.rolled_back``); ``parents`` are DAIDs it derives from
        besides the previous version, which the store adds itself; ``extent`` is what
        ``protocol.check_update`` read of it (read here when not given). Returns None for
        a plain update that changes nothing, and for a peer's update that refers to ids
        the document does not have yet: it is held until they arrive
        (``admission.HOLD_SECONDS``). Raises MalformedUpdate for an update the log must
        not hold, and WriterError when the writer refuses it (the caller decides what the
        client is told).
        """
        if update == EMPTY_UPDATE and event is None:
            return None
        if update and update != EMPTY_UPDATE:
            if extent is None:
                # Frames from peers were checked when decoded; updates the server
                # built (typed edits, rollbacks) are checked here.
                extent = protocol.check_update(update)
            if not self._admission.admit(update, extent):
                if origin is None:
                    self._admission.forget()
                    raise protocol.UnappliableUpdate(
                        "update refers to changes the document does not have"
                    )
                self._admission.hold(update, extent, origin, actor)
                return None
        future = self._log(
            update,
            origin,
            actor,
            agent=agent,
            correlation_id=correlation_id,
            event=event,
            parents=parents,
        )
        self._release()
        self._correct()
        return future

    def _correct(self) -> None:
        """Follow the updates just logged with the correction of the values they wrote
        outside the document schema, if any (``music.schema``, ``music.corrections``)."""
        try:
            correction = self._admission.correction()
        except Exception:
            # a defect, not the client's doing: its update is stored; build the trial again
            self._admission.forget()
            log.exception("correction not built", project=self.project_id)
            return
        if correction is None:
            return
        update, reasons = correction
        self._metrics.corrected.inc(len(reasons))
        log.info("values outside the schema corrected", project=self.project_id, reasons=reasons)
        if len(reasons) > MAX_CORRECTION_REASONS:
            more = len(reasons) - MAX_CORRECTION_REASONS + 1
            reasons = [*reasons[: MAX_CORRECTION_REASONS - 1], f"and {more} more values"]
        try:
            event = DocCorrected(update=update, reasons=tuple(reasons))
            self._log(update, None, SERVER_AGENT, event=event)
        except WriterError as exc:
            # The values stay until the next write that touches them (a full queue can
            # take the update and refuse its correction right after).
            log.warning("correction not stored", project=self.project_id, error=str(exc))
        except Exception:
            # The trial holds a correction the log will not: build it again.
            self._admission.forget()
            log.exception("correction not built", project=self.project_id)

    def _log(
        self,
        update: bytes,
        origin: Peer | None,
        actor: str,
        *,
        agent: str = SERVER_AGENT,
        correlation_id: str | None = None,
        event: DomainEvent | None = None,
        parents: tuple[str, ...] = (),
    ) -> asyncio.Future[Committed]:
        self._metrics.updates_received.inc()
        new_event = NewEvent(
            event or _doc_updated(update), _metadata(actor, agent, correlation_id), parents=parents
        )
        self._submitted += 1
        key = self._submitted
        try:
            future = self._writer.submit(
                self.stream_id,
                new_event,
                on_committed=lambda done: self._committed(key, update, origin, done),
                on_failed=lambda error: self._failed(key, origin, error),
            )
        except WriterError as exc:
            self._admission.forget()  # the trial holds an update the log will not
            self._refused(origin, exc)
            raise
        self._admission.in_flight[key] = update
        self.pending += 1
        return future

    def _release(self) -> None:
        """Send held updates whose missing ids are now on their way to the log."""
        while (held := self._admission.next_ready()) is not None:
            if not held.origin.can_write:
                continue  # downgraded while its update waited: a viewer's is not stored
            try:
                self._log(held.update, held.origin, held.actor, agent=held.origin.agent)
            except WriterError:
                return  # the sender is closed; it resends on reconnect

    def expire_held(self, now: float | None = None) -> None:
        """Close the senders of updates whose missing ids did not arrive in time."""
        self._admission.expire(now)

    def _refused(self, origin: Peer | None, exc: WriterError) -> None:
        if isinstance(exc, WriterClosed):
            if origin is not None:
                origin.close(CloseCode.SERVICE_RESTART, "server is restarting")
            return
        self._metrics.refused.labels("overloaded").inc()
        if origin is not None:
            origin.close(CloseCode.TRY_AGAIN_LATER, f"overloaded: {exc}")

    def _committed(self, key: int, update: bytes, origin: Peer | None, done: Committed) -> None:
        self.pending -= 1
        del self._admission.in_flight[key]
        if self._apply_durable(update, done, origin) and not done.announced:
            self._publish(CommittedUpdate(self.project_id, done.version, done.position, update))

    def apply_committed(self, update: bytes, done: Committed, origin: Peer | None) -> bool:
        """Apply an update another writer made durable and send it to every peer; False
        when this version was applied before (nothing is sent)."""
        if not self.versions.wants(done.version):
            return False
        if update and update != EMPTY_UPDATE:
            self._admission.committed_elsewhere(update)
        return self._apply_durable(update, done, origin)

    @property
    def version(self) -> int:
        """The highest stream version applied."""
        return self.versions.top

    def _apply_durable(self, update: bytes, done: Committed, origin: Peer | None) -> bool:
        """Apply a durable update and send it to every peer but its origin; False when
        its version was applied before."""
        wanted, jumped = self.versions.take(done.version)
        if not wanted:
            return False
        if jumped and self._on_gap is not None:
            # Someone else (another node, a script) appended to this stream in between:
            # what they wrote comes from the fan-out or from the log.
            self._on_gap(self)
        self.position = max(self.position, done.position)
        if not update or update == EMPTY_UPDATE:
            return True  # a rollback to what the document already is
        try:
            self.doc.apply_update(update)
        except Exception as exc:  # noqa: BLE001 - only a writer without the trial stores these
            self._admission.forget()
            self._metrics.refused.labels("unappliable_stored").inc()
            log.error(  # noqa: TRY400 - the reason is the message; no traceback to show
                "stored update does not apply", project=self.project_id, error=str(exc)
            )
            return True
        self._full_update = None
        frame = protocol.encode_update(update)
        sent = 0
        # A peer may close (and detach) while being sent to: iterate over a copy.
        for peer in tuple(self.peers):
            if peer is not origin:
                peer.send(frame)
                sent += 1
        self._metrics.updates_broadcast.inc(sent)
        if (
            self._save_state is not None
            and self.versions.gap is None
            and self.version - self._cached_version >= self._cache_every
        ):
            self.save_cache()
        return True

    def _failed(self, key: int, origin: Peer | None, error: Exception) -> None:
        self.pending -= 1
        del self._admission.in_flight[key]
        self._admission.forget()  # the trial holds an update the log will not
        self._metrics.refused.labels("database").inc()
        if origin is not None:
            origin.close(CloseCode.TRY_AGAIN_LATER, "database unavailable; reconnect later")
        log.warning("update not stored", project=self.project_id, error=str(error))

    def save_cache(self) -> None:
        if self._save_state is None or self.version == 0 or self.version <= self._cached_version:
            return
        if self.versions.gap is not None:
            return  # the state would claim a version whose earlier updates it lacks
        self._cached_version = self.version
        self._save_state(
            CachedState(self.stream_id, self.version, self.position, self.doc.get_update())
        )

    # -- awareness ----------------------------------------------------------------------

    def _broadcast(self, frame: bytes, *, exclude: Peer | None) -> None:
        for peer in tuple(self.peers):
            if peer is not exclude:
                peer.send(frame)

    def close_all(self, code: CloseCode, reason: str) -> None:
        for peer in list(self.peers):
            peer.close(code, reason)


def _doc_updated(update: bytes) -> DocUpdated:
    """The event of an admitted update. The store's prepare validates every event it
    writes (a round trip through the model), so one that meets the model's two
    constraints is not validated here too (building the model twice was 2 % of the
    server); one that does not is refused here, to its sender alone, instead of
    failing the updates it would share a write with."""
    author = protocol.update_author(update)
    if update and (author is None or author >= 0):
        return DocUpdated.model_construct(update=update, client_id=author)
    return DocUpdated(update=update, client_id=author)


@functools.lru_cache(maxsize=4096)
def _metadata(actor: str, agent: str, correlation_id: str | None) -> EventMetadata:
    """One metadata object per writer (it is frozen): validated once, and found in the
    store's cache of its encoded forms without a field-by-field comparison."""
    return EventMetadata(actor=actor, agent_id=agent, correlation_id=correlation_id)
