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

Versions: the room applies each stream version once. An update that arrives with a
version past the next one (another node or a script wrote in between) is applied, and
the versions skipped are remembered as *missing*: their updates are applied when they
come (from the fan-out, or read from the log by ``Rooms.fill_gaps``, which ``on_gap``
asks for), and anything already applied is dropped, so no peer gets an update twice.

In a cluster the room publishes its own commits and its clients' presence
(:mod:`collab.live.fanout`) and keeps other nodes' clients' presence apart from its own.

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
from collab.live.fanout import Awareness, CommittedUpdate, Message
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
#: versions remembered as missing at most; a larger jump is read from the log at once
MAX_MISSING = 10_000


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
    #: the node whose client this is; None: a client of this node
    node: str | None = None


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
        #: versions below ``version`` whose updates have not been applied yet
        self.missing: set[int] = set()
        #: the jump was too large to list: everything after this version is to be read
        self._read_from: int | None = None
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
        if self._apply_durable(update, done, origin):
            self._publish(CommittedUpdate(self.project_id, done.version, done.position, update))

    def apply_committed(self, update: bytes, done: Committed, origin: Peer | None) -> bool:
        """Apply an update another writer made durable and send it to every peer; False
        when this version was applied before (nothing is sent)."""
        if not self.wants(done.version):
            return False
        if update and update != EMPTY_UPDATE:
            self._admission.committed_elsewhere(update)
        return self._apply_durable(update, done, origin)

    def wants(self, version: int) -> bool:
        """Whether the update of ``version`` has not been applied yet."""
        return version > self.version or version in self.missing or self._unread(version)

    def _unread(self, version: int) -> bool:
        return self._read_from is not None and version > self._read_from

    @property
    def gap(self) -> int | None:
        """The version after which the log is to be read for missing updates, if any."""
        if self._read_from is not None:
            return self._read_from
        return min(self.missing) - 1 if self.missing else None

    def settle(self, through: int) -> None:
        """The log was read up to ``through``: nothing at or below it is missing any more
        (versions the read did not return hold events other than document updates)."""
        self.missing = {v for v in self.missing if v > through}
        if self._read_from is not None:
            self._read_from = None if through >= self.version else max(self._read_from, through)

    def _apply_durable(self, update: bytes, done: Committed, origin: Peer | None) -> bool:
        """Apply a durable update and send it to every peer but its origin; False when
        its version was applied before."""
        version = done.version
        if version > self.version:
            if version > self.version + 1:
                # Someone else (another node, a script) appended to this stream in
                # between: what they wrote comes from the fan-out or from the log.
                if version - self.version > MAX_MISSING or self._read_from is not None:
                    start = self.version if self._read_from is None else self._read_from
                    self._read_from = min(self.version, start)
                else:
                    self.missing.update(range(self.version + 1, version))
                if self._on_gap is not None:
                    self._on_gap(self)
            self.version = version
        elif version in self.missing:
            self.missing.discard(version)
        elif not self._unread(version):
            return False
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
            and self.gap is None
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
        if self.gap is not None:
            return  # the state would claim a version whose earlier updates it lacks
        self._cached_version = self.version
        self._save_state(
            CachedState(self.stream_id, self.version, self.position, self.doc.get_update())
        )

    # -- awareness ----------------------------------------------------------------------

    def _awareness(self, peer: Peer, entries: tuple[AwarenessEntry, ...]) -> None:
        accepted = self._merge_presence(entries, peer, None)
        if accepted:
            frame = protocol.encode_awareness(accepted)
            self._broadcast(frame, exclude=peer)
            self._publish(Awareness(self.project_id, frame))

    def remote_awareness(self, node: str, entries: tuple[AwarenessEntry, ...]) -> None:
        """Presence of clients of another node, published by that node."""
        accepted = self._merge_presence(entries, None, node)
        if accepted:
            self._broadcast(protocol.encode_awareness(accepted), exclude=None)

    def _merge_presence(
        self, entries: tuple[AwarenessEntry, ...], peer: Peer | None, node: str | None
    ) -> list[AwarenessEntry]:
        """Take the entries that are newer than what is known; those are returned."""
        now = time.monotonic()
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            known = self._presence.get(entry.client_id)
            if known is not None and known.node is None and known.owner is not peer:
                # A client of this node: only its own connection changes it. A client
                # of another node that reconnected here takes its entry over (by clock).
                continue
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
                    entry.clock, entry.state_json, peer, now, node
                )
            accepted.append(entry)
        return accepted

    def _presence_entries(self) -> list[AwarenessEntry]:
        return [AwarenessEntry(cid, p.clock, p.state_json) for cid, p in self._presence.items()]

    def local_presence(self) -> bytes | None:
        """The awareness frame of this node's clients (another node asks for it)."""
        entries = [
            AwarenessEntry(cid, p.clock, p.state_json)
            for cid, p in self._presence.items()
            if p.node is None
        ]
        return protocol.encode_awareness(entries) if entries else None

    def _remove_presence(self, client_ids: list[int]) -> None:
        removed: list[AwarenessEntry] = []
        ours: list[AwarenessEntry] = []
        for cid in client_ids:
            presence = self._presence.pop(cid)
            entry = AwarenessEntry(cid, presence.clock + 1, "null")
            removed.append(entry)
            if presence.node is None:
                ours.append(entry)
        if removed:
            self._broadcast(protocol.encode_awareness(removed), exclude=None)
        if ours:
            self._publish(Awareness(self.project_id, protocol.encode_awareness(ours)))

    def expire_presence(self, now: float | None = None) -> None:
        """Drop states their clients stopped renewing (they went silent)."""
        limit = (time.monotonic() if now is None else now) - AWARENESS_TIMEOUT
        self._remove_presence([cid for cid, p in self._presence.items() if p.seen < limit])

    def node_lost(self, node: str) -> None:
        """Another node stopped or went silent: its clients' presence goes."""
        self._remove_presence([cid for cid, p in self._presence.items() if p.node == node])

    def _broadcast(self, frame: bytes, *, exclude: Peer | None) -> None:
        for peer in tuple(self.peers):
            if peer is not exclude:
                peer.send(frame)

    def close_all(self, code: CloseCode, reason: str) -> None:
        for peer in list(self.peers):
            peer.close(code, reason)
