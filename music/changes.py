"""What one document event changed, as records and as sentences for the history.

:class:`DocumentTracker` keeps a project's Yjs document together with its JSON view.
Applying an update, it learns from Yjs which shared types the update touched (deep
observers on the four roots), diffs only those parts of the JSON view before and
after (``music.diff``), and patches the view. A fader move on a track with a
thousand notes therefore compares one number, not the whole document, and the view
always equals ``document.to_json(doc)`` without ever re-reading all of it.

A change *record* is JSON: ``{"op", "path", "old", "new", "where"}``. Container
values are reduced to what names them (``{"name": "Bass"}``), and ``where`` holds the
names of the track, clip, effect or section the path lies in, as they were then, so
that :func:`music.summaries.summarize` can write ``Bass: volume_db -3.0 → -6.0`` or
``3 notes added to clip Verse 1`` from stored records alone, and
:func:`music.summaries.merge` can fold consecutive edits (a fader drag) into one entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Final

import pycrdt
import pycrdt._pycrdt as pycrdt_native

from music import document, salvage, updates
from music.diff import MISSING, Change, Path, diff

Record = dict[str, Any]

_ROOT_TYPES: dict[str, type[pycrdt.Map[Any]] | type[pycrdt.Array[Any]]] = {
    document.META: pycrdt.Map,
    document.TRACKS: pycrdt.Map,
    document.TRACK_ORDER: pycrdt.Array,
    document.SECTIONS: pycrdt.Array,
}


#: what an observer saw: a map key set (the value, MISSING when deleted), an array
#: delta, or a part to re-read
_SET, _DELTA, _REREAD = 0, 1, 2
_Seen = tuple[Path, int, Any]

# pycrdt's own observer wrappers turn every field of every event into Python objects
# (type wrappers, nested values) before the callback runs: more than the update itself
# costs to apply. The tracker observes the underlying Yrs types instead and reads just
# the path and the keys or delta. tests/test_changes.py holds the view equal to the
# document for random DAW edits, which is what would break if these events changed.
_MapEvent: Final = pycrdt_native.MapEvent
_ArrayEvent: Final = pycrdt_native.ArrayEvent
_SHARED: Final = (pycrdt_native.Map, pycrdt_native.Array, pycrdt_native.Text)


class UpdateRefused(Exception):
    """An update that decodes, but that the document cannot apply."""


class DocumentTracker:
    """A project document and its JSON view, kept equal update by update."""

    def __init__(self, state: bytes | None = None) -> None:
        self.doc = document.new_document()
        if state:
            self.doc.apply_update(state)
        self.view: dict[str, Any] = document.to_json(self.doc)
        self._seen: list[_Seen] = []
        #: what the last :meth:`apply` did to the view, as :func:`apply_patch` replays it
        self.patch: list[list[Any]] = []
        self._subscriptions = [
            self.doc.get(name, type=kind).integrated.observe_deep(self._observer(name))
            for name, kind in _ROOT_TYPES.items()
        ]

    def _observer(self, root: str) -> Callable[[list[Any]], None]:
        seen_list = self._seen

        # Runs inside apply_update, while the events can be read: the values are taken
        # now, shared types among them through their JSON (read in this transaction).
        def seen(events: list[Any]) -> None:
            for event in events:
                path = event.path
                base: Path = (root, *path) if path else (root,)
                kind = type(event)
                if kind is _MapEvent:
                    for key, change in event.keys.items():
                        if change["action"] == "delete":
                            value = MISSING
                        else:
                            value = change["newValue"]
                            if isinstance(value, _SHARED):
                                value = _shared_value(value, event.transaction)
                        seen_list.append(((*base, key), _SET, value))
                elif kind is _ArrayEvent:
                    delta = [
                        {
                            "insert": [
                                _shared_value(v, event.transaction) if isinstance(v, _SHARED) else v
                                for v in op["insert"]
                            ]
                        }
                        if "insert" in op
                        else op
                        for op in event.delta
                    ]
                    seen_list.append((base, _DELTA, delta))
                else:
                    seen_list.append((base, _REREAD, None))

        return seen

    def apply(self, update: bytes) -> list[Change]:
        """Apply a Yjs update; return what it changed in the JSON view.

        Raises ``updates.MalformedUpdate`` (changing nothing) for bytes that are not
        a Yjs update: the live path refuses them, but the log accepts any payload.
        Raises :class:`UpdateRefused` for an update that decodes but that the document
        refuses; the tracker must then be dropped (the document may hold part of it).
        """
        self._seen.clear()
        self.patch = []
        updates.check_decodes(update)
        try:
            self.doc.apply_update(update)
        except BaseException as exc:
            if not salvage.apply_error(exc):
                raise
            raise UpdateRefused(f"{type(exc).__name__}: {exc}") from exc
        seen = self._seen
        changes: list[Change] = []
        if len(seen) == 1:
            # Most edits (a fader, a parameter, a note) are one event: no ordering needed.
            if self._patch(seen[0], changes) is None:
                changes = self._refresh(seen[0][0])
            seen.clear()
            return changes
        # Outer parts first, in a fixed order (Yjs reports them in an order that varies
        # between runs). Event paths name places in the updated document: once the
        # outer parts are patched, the inner paths point at the right items.
        replaced: list[Path] = []
        for one in sorted(seen, key=lambda s: (len(s[0]), [str(p) for p in s[0]])):
            path = one[0]
            if any(path[: len(outer)] == outer for outer in replaced):
                continue  # inside a value this update set as a whole
            patched = self._patch(one, changes)
            if patched is None:
                changes.extend(self._refresh(path))
                replaced.append(path)
            elif one[1] == _SET:
                replaced.append(path)
        seen.clear()
        return changes

    def _patch(self, seen: _Seen, changes: list[Change]) -> bool | None:
        """Patch the view with one event; None when it cannot (then re-read the part)."""
        path, kind, value = seen
        if kind == _SET:
            parent = _lookup(self.view, path[:-1])
            key = path[-1]
            if not isinstance(parent, dict) or not isinstance(key, str):
                return None
            old = parent.get(key, MISSING)
            if value is MISSING:
                parent.pop(key, None)
            else:
                parent[key] = value
            self.patch.append(_set_op(path, value))
            changes.extend(diff(old, value, path))
            return True
        items = _lookup(self.view, path)
        if kind != _DELTA or not isinstance(items, list):
            return None
        if not _run_delta(items, value, path, changes):
            return None
        self.patch.append(["delta", list(path), value])
        return True

    def _refresh(self, path: Path) -> list[Change]:
        # A parent created by the same update has no entry in the view yet: go up to
        # the nearest part that exists there.
        while len(path) > 1 and _lookup(self.view, path[:-1]) is MISSING:
            path = path[:-1]
        old = _lookup(self.view, path)
        new = _read(self.doc, path)
        changes = diff(old, new, path)
        if changes:
            _store(self.view, path, new)
            self.patch.append(_set_op(path, new))
        return changes

    def records(self, changes: Iterable[Change]) -> list[Record]:
        """Change records naming where each change happened (from the current view)."""
        return [
            {
                "op": change.op,
                "path": list(change.path),
                "old": _compact(change.old),
                "new": _compact(change.new),
                "where": _where(self.view, change),
            }
            for change in changes
        ]


def _shared_value(value: Any, txn: Any) -> Any:
    """The plain value of a shared type inside an observer (as ``to_py`` gives it)."""
    if isinstance(value, pycrdt_native.Text):
        return value.get_string(txn)
    return _decode_doubles(value.to_json(txn))


# Yjs keeps every number as a double; its JSON writes 3.0 as 3. Built once: json.loads
# with options builds a decoder per call.
_decode_doubles: Final = json.JSONDecoder(parse_int=float).decode


def _set_op(path: Path, value: Any) -> list[Any]:
    return ["unset", list(path)] if value is MISSING else ["set", list(path), value]


def _run_delta(
    items: list[Any], delta: list[dict[str, Any]], path: Path, changes: list[Change] | None
) -> bool:
    """Apply a Yjs array delta to ``items``; False if it does not fit them."""
    old_index = new_index = 0
    for op in delta:
        if "retain" in op:
            old_index += op["retain"]
            new_index += op["retain"]
        elif "delete" in op:
            for _ in range(op["delete"]):
                if new_index >= len(items):
                    return False
                removed = items.pop(new_index)
                if changes is not None:
                    changes.append(Change("removed", (*path, old_index), removed, MISSING))
                old_index += 1
        else:
            for value in op["insert"]:
                items.insert(new_index, value)
                if changes is not None:
                    changes.append(Change("added", (*path, new_index), MISSING, value))
                new_index += 1
    return True


def apply_patch(view: dict[str, Any], patch: list[list[Any]]) -> None:
    """Replay what :meth:`DocumentTracker.apply` did to a view (``tracker.patch``).

    Time travel starts from a stored view and replays the versions after it with this,
    instead of loading the Yjs document (seconds for a long project).
    """
    for op in patch:
        path = tuple(op[1])
        if op[0] == "set":
            _store(view, path, op[2])
        elif op[0] == "unset":
            _store(view, path, MISSING)
        else:
            items = _lookup(view, path)
            if not isinstance(items, list) or not _run_delta(items, op[2], path, None):
                raise ValueError(f"patch does not fit the view at {list(path)}")


def _lookup(view: Any, path: Path) -> Any:
    node = view
    for key in path:
        in_dict = isinstance(node, dict) and isinstance(key, str) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if in_dict or in_list:
            node = node[key]
        else:
            return MISSING
    return node


def _read(doc: pycrdt.Doc[Any], path: Path) -> Any:
    node: Any = doc.get(str(path[0]), type=_ROOT_TYPES[str(path[0])])
    for key in path[1:]:
        if isinstance(node, pycrdt.Map | dict):
            if not isinstance(key, str) or key not in node:
                return MISSING
            node = node[key]
        elif isinstance(node, pycrdt.Array | list):
            if not isinstance(key, int) or not 0 <= key < len(node):
                return MISSING
            node = node[key]
        else:
            return MISSING
    return document.plain(node)


def _store(view: dict[str, Any], path: Path, value: Any) -> None:
    parent = _lookup(view, path[:-1])
    key = path[-1]
    if value is MISSING:
        if isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
            del parent[key]
    elif isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and isinstance(key, int):
        if key < len(parent):
            parent[key] = value
        else:
            parent.append(value)


#: longer strings are cut in change records (the document itself keeps them whole)
MAX_RECORDED_TEXT = 200


def _compact(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, str) and len(value) > MAX_RECORDED_TEXT:
        return value[: MAX_RECORDED_TEXT - 1] + "…"

    if isinstance(value, dict):
        return {key: value[key] for key in ("name", "type", "id") if key in value}
    if isinstance(value, list):
        return {"items": len(value)}
    return value


def _where(view: dict[str, Any], change: Change) -> dict[str, str]:
    """Names of the track, clip, effect or section that ``change.path`` lies in."""
    path = change.path
    own = change.new if change.new is not MISSING else change.old
    where: dict[str, str] = {}

    def name_of(node_path: Path, field: str) -> str:
        node = own if node_path == path else _lookup(view, node_path)
        if isinstance(node, dict) and node.get(field) not in (None, ""):
            return str(node[field])
        return str(node_path[-1])

    if path[0] == document.TRACKS and len(path) >= 2:
        where["track"] = name_of(path[:2], "name")
        if len(path) >= 4 and path[2] == "clips":
            where["clip"] = name_of(path[:4], "name")
        if len(path) >= 4 and path[2] == "effects":
            where["effect"] = name_of(path[:4], "type")
        if len(path) >= 6 and path[2] == "clips" and path[4] == "notes":
            note = own if path[:6] == path else _lookup(view, path[:6])
            if isinstance(note, dict) and isinstance(note.get("id"), str):
                where["note"] = note["id"]
    elif path[0] == document.SECTIONS and len(path) >= 2:
        where["section"] = name_of(path[:2], "name")
    return where
