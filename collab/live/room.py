"""One live project in memory: its document, its peers, their presence.

The room's document holds exactly what the log holds: an update from a client is
checked, handed to the group-commit writer, and applied and broadcast only in the
writer's ``on_committed`` callback. "Checked" means more than "decodes": an update that
writes a value the log cannot hold (a NUL, a NaN; ``protocol.check_update``) is
refused, and so is one that does not apply to the document (a decodable update can
still name a parent that is not a shared type), and one that refers to ids nobody sent
is held until they arrive: :mod:`collab.live.admission` keeps the trial document this
is decided on, so nothing the room could not apply is ever stored (one stored poison
update stopped every reader of the log).

The room hands updates to a :class:`Durability` port (the group-commit writer in the
server, a hand-driven log in ``tests/test_room_log.py``).

Because updates are applied only once durable, a client joining in between never sees
one that is not, and the room never has to be repaired after a failed append (the
sender is closed with 1013 and resends on reconnect, because Yjs clients keep their
edits).

Nothing here awaits: peers are handed frames through :class:`Peer.send`, which only
queues them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pycrdt
import structlog

from collab.access.principal import SERVER_AGENT
from collab.live import protocol
from collab.live.admission import Admission, Peer
from collab.live.closecodes import CloseCode
from collab.live.protocol import AwarenessEntry
from collab.live.writer import Committed, WriterClosed, WriterError
from collab.runtime.metrics import Metrics
from events import EventMetadata, NewEvent
from events.models import DocUpdated, DomainEvent, project_stream
from events.store import CachedState
from music import document
from music.update_values import Extent
from music.updates import EMPTY_UPDATE

log = structlog.get_logger("collab.live.room")

#: what a read-only peer is told when it sends an update (y-protocols' auth message)
READ_ONLY = "permission denied: read-only access (viewer); edits are not stored"
#: awareness states not renewed for this long are dropped (y-protocols uses 30 s)
AWARENESS_TIMEOUT = 30.0


class Durability(Protocol):
    """Where the room sends an update to become durable: the group-commit writer.

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


@dataclass(slots=True)
class _Presence:
    clock: int
    state_json: str
    owner: Peer | None
    seen: float


class Room:
    def __init__(
        self,
        project_id: str,
        writer: Durability,
        metrics: Metrics,
        *,
        save_state: Callable[[CachedState], None] | None = None,
        cache_every: int = 1000,
    ) -> None:
        self.project_id = project_id
        self.stream_id = project_stream(project_id)
        self.doc = document.new_document()
        #: stream version and global position of the last document event applied
        self.version = 0
        self.position = 0
        self.peers: set[Peer] = set()
        #: peers plus API requests using the room; it unloads when this drops to 0
        self.holds = 0
        self.pending = 0
        self._writer = writer
        self._metrics = metrics
        self._presence: dict[int, _Presence] = {}
        self._full_update: bytes | None = None
        self._save_state = save_state
        self._cache_every = cache_every
        self._cached_version = 0
        self._gap_from: int | None = None
        self._admission = Admission(self.doc.get_update, metrics)
        self._submitted = 0

    # -- loading ----------------------------------------------------------------------

    def load(self, updates: list[bytes], version: int, position: int) -> None:
        """Apply updates read from the cache and the log (before any peer joins)."""
        if updates:
            self.doc.apply_update(
                updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)
            )
        self.version = max(self.version, version)
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
        if self._presence:
            peer.send(protocol.encode_awareness(self._presence_entries()))

    def read_only(self, peer: Peer) -> None:
        """A peer may no longer write: its held updates go (it is told on its next)."""
        self._admission.drop(peer)

    def detach(self, peer: Peer) -> None:
        """A peer leaves: its presence and its held updates go."""
        self.peers.discard(peer)
        self._admission.drop(peer)
        gone = [cid for cid, p in self._presence.items() if p.owner is peer]
        self._remove_presence(gone)

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
                self._awareness(peer, entries)
            case protocol.QueryAwareness():
                peer.send(protocol.encode_awareness(self._presence_entries()))
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
        return future

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
            event or DocUpdated(update=update, client_id=protocol.update_author(update)),
            EventMetadata(actor=actor, agent_id=agent, correlation_id=correlation_id),
            parents=parents,
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
        if done.version != self.version + 1 and self._gap_from is None:
            # Someone else (another node, a script) appended to this stream in between;
            # the loader fills the gap from the log.
            self._gap_from = self.version
        self._apply_durable(update, done, origin)

    def apply_committed(self, update: bytes, done: Committed, origin: Peer | None) -> None:
        """Apply an update another writer made durable and send it to every peer."""
        if update and update != EMPTY_UPDATE:
            self._admission.committed_elsewhere(update)
        self._apply_durable(update, done, origin)

    def _apply_durable(self, update: bytes, done: Committed, origin: Peer | None) -> None:
        """Apply a durable update and send it to every peer but its origin."""
        self.version = max(self.version, done.version)
        self.position = max(self.position, done.position)
        if not update or update == EMPTY_UPDATE:
            return  # a rollback to what the document already is
        try:
            self.doc.apply_update(update)
        except Exception as exc:  # noqa: BLE001 - only a writer without the trial stores these
            self._admission.forget()
            self._metrics.refused.labels("unappliable_stored").inc()
            log.error(  # noqa: TRY400 - the reason is the message; no traceback to show
                "stored update does not apply", project=self.project_id, error=str(exc)
            )
            return
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
            and self._gap_from is None
            and self.version - self._cached_version >= self._cache_every
        ):
            self.save_cache()

    def _failed(self, key: int, origin: Peer | None, error: Exception) -> None:
        self.pending -= 1
        del self._admission.in_flight[key]
        self._admission.forget()  # the trial holds an update the log will not
        self._metrics.refused.labels("database").inc()
        if origin is not None:
            origin.close(CloseCode.TRY_AGAIN_LATER, "database unavailable; reconnect later")
        log.warning("update not stored", project=self.project_id, error=str(error))

    def take_gap(self) -> int | None:
        gap, self._gap_from = self._gap_from, None
        return gap

    def save_cache(self) -> None:
        if self._save_state is None or self.version == 0 or self.version <= self._cached_version:
            return
        self._cached_version = self.version
        self._save_state(
            CachedState(self.stream_id, self.version, self.position, self.doc.get_update())
        )

    # -- awareness ----------------------------------------------------------------------

    def _awareness(self, peer: Peer, entries: tuple[AwarenessEntry, ...]) -> None:
        now = time.monotonic()
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            known = self._presence.get(entry.client_id)
            if known is not None and known.owner is not None and known.owner is not peer:
                continue  # another connection's presence: only its owner changes it
            if known is not None and (
                entry.clock < known.clock or (entry.clock == known.clock and not entry.removed)
            ):
                if entry.clock == known.clock:
                    known.seen = now  # a renewal of the same state
                continue
            if entry.removed:
                self._presence.pop(entry.client_id, None)
            else:
                self._presence[entry.client_id] = _Presence(
                    entry.clock, entry.state_json, peer, now
                )
            accepted.append(entry)
        if accepted:
            self._broadcast(protocol.encode_awareness(accepted), exclude=peer)

    def _presence_entries(self) -> list[AwarenessEntry]:
        return [AwarenessEntry(cid, p.clock, p.state_json) for cid, p in self._presence.items()]

    def _remove_presence(self, client_ids: list[int]) -> None:
        removed = []
        for cid in client_ids:
            presence = self._presence.pop(cid)
            removed.append(AwarenessEntry(cid, presence.clock + 1, "null"))
        if removed:
            self._broadcast(protocol.encode_awareness(removed), exclude=None)

    def expire_presence(self, now: float | None = None) -> None:
        """Drop states their clients stopped renewing (they went silent)."""
        limit = (time.monotonic() if now is None else now) - AWARENESS_TIMEOUT
        self._remove_presence([cid for cid, p in self._presence.items() if p.seen < limit])

    def _broadcast(self, frame: bytes, *, exclude: Peer | None) -> None:
        for peer in tuple(self.peers):
            if peer is not exclude:
                peer.send(frame)

    def close_all(self, code: CloseCode, reason: str) -> None:
        for peer in list(self.peers):
            peer.close(code, reason)
