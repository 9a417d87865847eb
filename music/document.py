"""The project document: its Yjs layout, and a JSON view of it.

Editors and the server agree on this layout (docs/document.md describes it)::

    meta         Map    name, tempo, time_signature, key, sample_rate
    tracks       Map    track id -> Map(name, kind, instrument, color, volume_db, pan,
                        mute, solo, armed, effects: Array[Map(id, type, enabled,
                        params: Map)], clips: Map(clip id -> Map(name, start_beats,
                        length_beats, source, notes: Array[Map(pitch, start, duration,
                        velocity)])), automation: Map(parameter -> Array[Map(time,
                        value, curve)]))
    track_order  Array  track ids
    sections     Array  Map(name, start_beats, length_beats)

Root types are declared with their kinds before any update is read, so that a
document loaded from the log and one built by an editor agree on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pycrdt

from music.updates import EMPTY_UPDATE

META = "meta"
TRACKS = "tracks"
TRACK_ORDER = "track_order"
SECTIONS = "sections"


def new_document() -> pycrdt.Doc[Any]:
    """An empty document with the four root types declared."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    declare_roots(doc)
    return doc


def declare_roots(doc: pycrdt.Doc[Any]) -> None:
    doc.get(META, type=pycrdt.Map)
    doc.get(TRACKS, type=pycrdt.Map)
    doc.get(TRACK_ORDER, type=pycrdt.Array)
    doc.get(SECTIONS, type=pycrdt.Array)


def to_json(doc: pycrdt.Doc[Any]) -> dict[str, Any]:
    """The whole document as plain JSON (numbers come back as floats, as Yjs stores them).

    pycrdt converts a document in one call, but refuses XML types ("has no Python
    equivalent") and recurses once per level of nesting. Live updates can no longer
    write either (``update_values``); logs written before that can hold them, and such a
    document is converted by :func:`_tolerant` instead.
    """
    roots: dict[str, pycrdt.Map[Any] | pycrdt.Array[Any]] = {
        META: doc.get(META, type=pycrdt.Map),
        TRACKS: doc.get(TRACKS, type=pycrdt.Map),
        TRACK_ORDER: doc.get(TRACK_ORDER, type=pycrdt.Array),
        SECTIONS: doc.get(SECTIONS, type=pycrdt.Array),
    }
    try:
        view = {name: root.to_py() for name, root in roots.items()}
    except (ValueError, RecursionError):
        view = {name: _tolerant(root) for name, root in roots.items()}
    return {
        name: (value if value is not None else ({} if name in (META, TRACKS) else []))
        for name, value in view.items()
    }


def plain(value: Any, *, keep_none: bool = False) -> Any:
    """A value read from the document as plain Python: a map or array by ``to_py()``,
    text as its string, anything else as it is. pycrdt may give an empty map or array
    as None: shown as ``{}`` or ``[]`` (what the JSON view holds), or kept as None with
    ``keep_none`` (rollback compares values as pycrdt gives them).
    """
    if isinstance(value, pycrdt.Map | pycrdt.Array):
        converted = value.to_py()
        if converted is None and not keep_none:
            return {} if isinstance(value, pycrdt.Map) else []
        return converted
    if isinstance(value, pycrdt.Text):
        return str(value)
    return value


#: levels of nesting shown by the tolerant conversion; deeper values show as null
MAX_SHOWN_DEPTH = 64


def _tolerant(root: pycrdt.Map[Any] | pycrdt.Array[Any]) -> Any:
    """Convert without recursion: XML types as their XML text, nesting cut at 64 levels."""
    top: dict[str, Any] | list[Any] = {} if isinstance(root, pycrdt.Map) else []
    stack: list[tuple[Any, dict[str, Any] | list[Any], int]] = [(root, top, 1)]
    while stack:
        source, target, depth = stack.pop()
        pairs = source.items() if isinstance(source, pycrdt.Map) else enumerate(source)
        for key, value in pairs:
            if isinstance(value, pycrdt.Map | pycrdt.Array) and depth < MAX_SHOWN_DEPTH:
                shown: Any = {} if isinstance(value, pycrdt.Map) else []
                stack.append((value, shown, depth + 1))
            elif isinstance(value, pycrdt.Map | pycrdt.Array):
                shown = None
            elif isinstance(
                value, pycrdt.Text | pycrdt.XmlFragment | pycrdt.XmlElement | pycrdt.XmlText
            ):
                shown = str(value)
            elif isinstance(value, pycrdt.Doc):
                shown = None  # a subdocument's content is not part of this one
            else:
                shown = value
            if isinstance(target, dict):
                target[str(key)] = shown
            else:
                target.append(shown)
    return top


def transact(doc: pycrdt.Doc[Any], change: Callable[[], None]) -> bytes:
    """Run ``change`` in one transaction of ``doc``; return the update it made.

    The update holds that transaction's items and deletions only. ``get_update(state)``
    would also carry the document's whole delete set, which grows with every
    overwrite: on a long-edited project that made each edit kilobytes large, and
    applying it cost time proportional to the project's history.
    """
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    try:
        with doc.transaction():
            change()
    finally:
        doc.unobserve(subscription)
    return updates[0] if updates else EMPTY_UPDATE


def copy_of(doc: pycrdt.Doc[Any]) -> pycrdt.Doc[Any]:
    """A separate document with the same content (and a fresh client id)."""
    clone = new_document()
    clone.apply_update(doc.get_update())
    return clone
