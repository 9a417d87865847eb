"""What a room may hand to the log: the trial document and the held updates.

An update is stored only if it applies to the room's document and leaves nothing
pending there. Both depend on the updates still on their way to the log, so the check
runs on a *trial document*: the room's document plus those updates. It is built at a
room's first update (a room only read costs nothing more) and dropped whenever it may
differ from that, to be built again when next needed.

Pending items are the subtle part: yrs keeps an item whose origin, right neighbour or
parent it does not know as pending, without an error, and ``Doc.get_update()`` leaves
pending items out. A stored update with a pending item made the room, its state cache
and the log's replay part ways, and failed once the missing ids arrived (two of them
in a fuzzing campaign of 2026-12-02). So an update that refers to ids neither the
document nor the updates on their way carry is *held*: it waits, in the trial only,
for an update that brings them, then goes to the log right after it. Editors send such
updates when an edit races their own sync step 2 after a reconnect. The bookkeeping of
which ids the log will hold (``logged``) uses each update's :class:`Extent`, read by
the same walk that checks its values, so the hot path never decodes a state vector.

The trial is also where values outside the document schema are found: it records the
places each admitted update writes (``music.corrections.Watcher``), and
:meth:`Admission.correction` builds the correcting update on it, so that the
correction goes to the log right behind the update it corrects. While an update is
held, the correction is built on a copy without the held updates: it could otherwise
refer to ids the log does not have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pycrdt

from collab.live.closecodes import CloseCode
from collab.runtime.metrics import Metrics
from music import corrections, document, salvage, update_values
from music.update_values import Extent
from music.updates import UnappliableUpdate

#: a peer's update that refers to ids nobody sent waits this long for them
HOLD_SECONDS = 10.0
#: at most this many updates wait in one room
MAX_HELD = 64


class Peer(Protocol):
    """A connected client, as the room sees it."""

    @property
    def actor(self) -> str:
        """Recorded as the actor of the peer's updates."""

    @property
    def agent(self) -> str:
        """Recorded as the agent of the peer's updates (a service's id, or the server's)."""

    @property
    def can_write(self) -> bool:
        """False for a read-only peer (a viewer): its updates are refused, not stored."""

    def send(self, frame: bytes) -> None:
        """Queue a frame; never blocks (a peer that falls behind closes itself)."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Close after the frames already queued; returns at once."""


@dataclass(slots=True)
class Held:
    """A peer's update waiting for the ids it refers to."""

    update: bytes
    extent: Extent
    origin: Peer
    actor: str
    since: float


class Admission:
    """The trial document, the updates in flight and the held updates of one room."""

    def __init__(self, document_state: Callable[[], bytes], metrics: Metrics) -> None:
        #: the room document's state (``get_update()``), read when the trial is built
        self._document_state = document_state
        self._metrics = metrics
        self._trial: pycrdt.Doc[Any] | None = None
        #: submission key -> update, for updates handed to the log and not yet decided
        self.in_flight: dict[int, bytes] = {}
        #: client -> next clock of the document plus the updates in flight (what the
        #: log will hold); valid while the trial is
        self._logged: dict[int, int] = {}
        #: peers' updates that wait for ids they refer to, in arrival order
        self._held: list[Held] = []
        #: places the admitted updates wrote, not yet checked against the schema
        self._written: list[corrections.Written] = []
        self._watcher: corrections.Watcher | None = None

    def forget(self) -> None:
        """The trial may differ from the document plus the updates in flight: rebuild it."""
        self._trial = None

    def admit(self, update: bytes, extent: Extent) -> bool:
        """Apply ``update`` to the trial document; whether it is complete there.

        Raises UnappliableUpdate when it does not apply. An incomplete update stays
        pending in the trial; the caller holds it (:meth:`hold`) or refuses it.
        """
        trial = self._trial_document()
        try:
            self._watch(trial.apply_update, update)
        except BaseException as exc:
            if not salvage.apply_error(exc):
                raise  # a cancellation or an interrupt, not a refusal
            self._trial = None  # a refused apply can leave the trial half-changed
            if not (self._held and self._blame_held(update)):
                raise UnappliableUpdate(f"update does not apply to the document: {exc}") from None
        if not extent.complete(self._logged):
            return False
        extent.advance(self._logged)
        return True

    def correction(self) -> tuple[bytes, list[str]] | None:
        """The update that brings the places admitted updates wrote back inside the
        schema, and one reason per value; None when they are valid. It is applied to the
        trial: the caller must hand it to the log (or :meth:`forget` the trial).

        While updates are held, the correction is built on the document plus the
        updates in flight only, so that it cannot refer to a held update's items (which
        the log may never get), and then applied to the trial.
        """
        if not self._written:
            return None
        trial = self._trial_document()
        written, self._written = self._written, []
        fixes = corrections.check(trial, written)
        base = trial
        if fixes and self._held:
            # rare: judged again on a copy that has no held update's items
            base = self._logged_document()
            fixes = corrections.check(base, written)
        if not fixes:
            return None
        update = corrections.correct(base, fixes)
        if base is not trial:
            trial.apply_update(update)
        update_values.check_values(update).advance(self._logged)
        return update, [fix.reason for fix in fixes]

    def _logged_document(self) -> pycrdt.Doc[Any]:
        """The document plus the updates in flight: what the log will hold."""
        doc = document.new_document()
        doc.apply_update(self._document_state())
        for update in self.in_flight.values():
            doc.apply_update(update)
        return doc

    def _watch(self, apply: Callable[[bytes], None], update: bytes) -> None:
        """``apply(update)`` to the trial, recording the places it writes."""
        if self._watcher is not None:
            self._watcher.written = self._written
            self._watcher.watching = True
        try:
            apply(update)
        finally:
            if self._watcher is not None:
                self._watcher.watching = False

    def hold(self, update: bytes, extent: Extent, origin: Peer, actor: str) -> None:
        """Keep an incomplete update until the ids it refers to arrive."""
        if len(self._held) >= MAX_HELD:
            self._trial = None
            raise UnappliableUpdate(f"more than {MAX_HELD} updates wait for changes nobody sent")
        self._held.append(Held(update, extent, origin, actor, time.monotonic()))

    def next_ready(self) -> Held | None:
        """The first held update whose missing ids are now on their way to the log."""
        for held in self._held:
            if held.extent.complete(self._logged):
                held.extent.advance(self._logged)
                self._held.remove(held)
                return held
        return None

    def committed_elsewhere(self, update: bytes) -> None:
        """Another writer made ``update`` durable: the trial takes it too."""
        if self._trial is None:
            return
        try:
            self._trial.apply_update(update)
            update_values.check_values(update).advance(self._logged)
        except Exception:  # noqa: BLE001 - rebuilt from the document when next needed
            self._trial = None

    def drop(self, peer: Peer) -> None:
        """A peer left: its held updates go (Yjs clients send them again on reconnect)."""
        if any(held.origin is peer for held in self._held):
            self._held = [held for held in self._held if held.origin is not peer]
            self._trial = None

    def expire(self, now: float | None = None) -> None:
        """Close the senders of updates whose missing ids did not arrive in time."""
        limit = (time.monotonic() if now is None else now) - HOLD_SECONDS
        for held in [held for held in self._held if held.since < limit]:
            self._held.remove(held)
            self._trial = None
            self._metrics.refused.labels("incomplete").inc()
            held.origin.close(
                CloseCode.BAD_MESSAGE,
                f"update refers to changes nobody sent within {HOLD_SECONDS:.0f} s",
            )

    def _trial_document(self, *updates: bytes) -> pycrdt.Doc[Any]:
        """The document plus the updates in flight, ``updates``, and the held ones."""
        if self._trial is None:
            trial = document.new_document()
            self._watcher = corrections.Watcher(trial)
            # get_update() leaves out pending items: the document has none, because
            # only complete updates are stored; the held ones are applied again below.
            trial.apply_update(self._document_state())
            for update in self.in_flight.values():
                trial.apply_update(update)
            self._logged = update_values.state_of(trial.get_state())
            # What the updates in flight wrote was checked when they were admitted;
            # the others are checked (again) as they are applied now.
            for update in updates:
                self._watch(trial.apply_update, update)
            for held in self._held:
                self._watch(trial.apply_update, held.update)
            self._trial = trial
        return self._trial

    def _blame_held(self, update: bytes) -> bool:
        """After ``update`` failed to apply: whether a held update made it fail.

        A held update is applied for real only once the ids it refers to arrive, so it
        fails with the update that brings them. When ``update`` applies without the
        held ones, each held update that does not apply after it closes its sender with
        4400 and is dropped; the trial then holds ``update`` and the rest.
        """
        held, self._held = self._held, []
        trial = self._trial_document()
        try:
            self._watch(trial.apply_update, update)
        except BaseException as exc:
            if not salvage.apply_error(exc):
                raise
            self._held, self._trial = held, None
            return False
        for waiting in held:
            try:
                self._watch(trial.apply_update, waiting.update)
            except BaseException as exc:
                if not salvage.apply_error(exc):
                    raise
                self._metrics.refused.labels("UnappliableUpdate").inc()
                waiting.origin.close(
                    CloseCode.BAD_MESSAGE,
                    f"update does not apply once the changes it refers to arrived: {exc}",
                )
                self._trial = None
                trial = self._trial_document(update)
            else:
                self._held.append(waiting)
        return True
