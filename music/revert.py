"""Undo one actor's changes in a range of versions, keep everyone else's; no I/O.

The range is replayed on the document as it was before it, each update in a
transaction marked as the actor's or as another's; a pycrdt UndoManager that tracks
only the actor's transactions then undoes all of them. What the undo changed is a
Yjs update like any other: applied to the current document (later edits included),
it removes what the actor inserted and restores what the actor deleted or
overwrote, while the others' edits stay where they do not touch the same values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import pycrdt

from music import document
from music.salvage import apply_error

THEIRS: Final = "reverted actor"
OTHERS: Final = "others"


@dataclass(frozen=True, slots=True)
class Reverting:
    update: bytes
    #: the actor's updates that were replayed (and undone)
    undone: int


def reverting_update(base: bytes | None, updates: Iterable[tuple[bytes, bool]]) -> Reverting:
    """``base``: the document's state before the range (None: empty); ``updates``: the
    range's document updates in order, each with whether it is the actor's."""
    doc = document.new_document()
    if base is not None:
        doc.apply_update(base)
    roots: list[Any] = [
        doc.get(document.META, type=pycrdt.Map),
        doc.get(document.TRACKS, type=pycrdt.Map),
        doc.get(document.TRACK_ORDER, type=pycrdt.Array),
        doc.get(document.SECTIONS, type=pycrdt.Array),
    ]
    undo = pycrdt.UndoManager(scopes=roots, capture_timeout_millis=0)
    undo.include_origin(THEIRS)
    replayed = 0
    for update, theirs in updates:
        try:
            with doc.transaction(origin=THEIRS if theirs else OTHERS):
                doc.apply_update(update)
        except Exception as exc:
            if not apply_error(exc):
                raise
            continue  # an update the log kept but no document takes (set aside by the fold)
        replayed += theirs
    before = doc.get_state()
    while undo.can_undo():
        undo.undo()
    return Reverting(doc.get_update(before), replayed)
