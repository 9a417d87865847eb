"""Who is in a room (awareness): the states of this node's clients and of other nodes'.

Never stored. Each state is kept with its clock and where it comes from: a connection of
this node, or another node (``collab.live.fanout``). A client's state is changed only by
its own connection, or by its node; a client that reconnects to this node from another
takes its entry over (its clock goes on). y-protocols' rules otherwise: a higher clock
wins, the same clock renews, a ``null`` state removes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from collab.live import protocol
from collab.live.admission import Peer
from collab.live.fanout import Awareness, Message
from collab.live.protocol import AwarenessEntry

#: awareness states not renewed for this long are dropped (y-protocols uses 30 s)
AWARENESS_TIMEOUT: Final = 30.0


@dataclass(slots=True)
class _State:
    clock: int
    state_json: str
    owner: Peer | None
    seen: float
    #: the node whose client this is; None: a client of this node
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """States that went: all of them (for this node's clients) and this node's own
    (for the other nodes)."""

    entries: list[AwarenessEntry]
    ours: list[AwarenessEntry]


class Presence:
    """The states of one room; ``broadcast`` sends a frame to the room's peers but one,
    ``publish`` tells the other nodes."""

    def __init__(
        self,
        project_id: str,
        broadcast: Callable[[bytes, Peer | None], None],
        publish: Callable[[Message], None],
    ) -> None:
        self._project_id = project_id
        self._broadcast = broadcast
        self._publish = publish
        self._states: dict[int, _State] = {}

    # -- what peers and nodes say ---------------------------------------------------------

    def changed(self, peer: Peer, entries: tuple[AwarenessEntry, ...]) -> None:
        """A peer of this node sent awareness entries."""
        accepted = self.merge(entries, peer, None)
        if accepted:
            frame = protocol.encode_awareness(accepted)
            self._broadcast(frame, peer)
            self._publish(Awareness(self._project_id, frame))

    def changed_elsewhere(self, node: str, entries: tuple[AwarenessEntry, ...]) -> None:
        """Presence of clients of another node, published by that node."""
        accepted = self.merge(entries, None, node)
        if accepted:
            self._broadcast(protocol.encode_awareness(accepted), None)

    def ours(self) -> bytes | None:
        """The awareness frame of this node's clients (another node asks for it)."""
        entries = self.entries(ours_only=True)
        return protocol.encode_awareness(entries) if entries else None

    def left(self, peer: Peer) -> None:
        """A peer left: its states go."""
        self._drop(self.of_peer(peer))

    def expire(self, now: float | None = None) -> None:
        """Drop states their clients stopped renewing (they went silent)."""
        self._drop(self.silent(now))

    def node_lost(self, node: str) -> None:
        """Another node stopped or went silent: its clients' states go."""
        self._drop(self.of_node(node))

    def _drop(self, client_ids: list[int]) -> None:
        removed = self.remove(client_ids)
        if removed.entries:
            self._broadcast(protocol.encode_awareness(removed.entries), None)
        if removed.ours:
            self._publish(Awareness(self._project_id, protocol.encode_awareness(removed.ours)))

    # -- the states -----------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self._states)

    def merge(
        self, entries: tuple[AwarenessEntry, ...], peer: Peer | None, node: str | None
    ) -> list[AwarenessEntry]:
        """Take the entries ``peer`` (of this node) or ``node`` sent that are newer than
        what is known; those are returned."""
        now = time.monotonic()
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            known = self._states.get(entry.client_id)
            if known is not None and known.node is None and known.owner is not peer:
                continue  # a client of this node: only its own connection changes it
            if known is not None and (
                entry.clock < known.clock or (entry.clock == known.clock and not entry.removed)
            ):
                if entry.clock == known.clock:
                    known.seen = now  # a renewal of the same state
                continue
            if entry.removed:
                self._states.pop(entry.client_id, None)
            else:
                self._states[entry.client_id] = _State(
                    entry.clock, entry.state_json, peer, now, node
                )
            accepted.append(entry)
        return accepted

    def entries(self, *, ours_only: bool = False) -> list[AwarenessEntry]:
        return [
            AwarenessEntry(cid, s.clock, s.state_json)
            for cid, s in self._states.items()
            if not ours_only or s.node is None
        ]

    def remove(self, client_ids: list[int]) -> Removed:
        removed = Removed([], [])
        for cid in client_ids:
            state = self._states.pop(cid)
            entry = AwarenessEntry(cid, state.clock + 1, "null")
            removed.entries.append(entry)
            if state.node is None:
                removed.ours.append(entry)
        return removed

    def of_peer(self, peer: Peer) -> list[int]:
        return [cid for cid, s in self._states.items() if s.owner is peer]

    def of_node(self, node: str) -> list[int]:
        return [cid for cid, s in self._states.items() if s.node == node]

    def silent(self, now: float | None = None) -> list[int]:
        """Clients that stopped renewing their state (they went silent)."""
        limit = (time.monotonic() if now is None else now) - AWARENESS_TIMEOUT
        return [cid for cid, s in self._states.items() if s.seen < limit]
