"""The correction that brings a document back inside its schema (``music.schema``).

A CRDT client keeps what it wrote, so a live update that writes a value outside the
schema (``tempo`` set to ``"fast"``, a note's pitch 500) cannot be refused without
leaving its sender diverged. It is stored, and the server follows it at once with a
*correcting update* (docs/document.md, "The correction rule"):

- a value outside the schema is put back to the value it replaced, when that one was
  valid, and otherwise removed (its key deleted, or its item taken out of its array);
- a note whose ``pitch``, ``start``, ``duration`` or ``velocity`` cannot be put back is
  removed whole (a note without a pitch means nothing), and so is a plain JSON object
  or array (which Yjs cannot change in place) with anything invalid inside;
- an entry whose key breaks its map's rule for keys (track, clip, parameter ids) is
  removed.

:class:`Watcher` records the places a transaction wrote, from deep observers on the
four roots, with the values map keys held before; :func:`check` reads the places
again and returns the :class:`Fix` each invalid one needs; :func:`correct` applies the
fixes as one transaction and returns its update. Only the places an update wrote are
read, so a fader move checks one number, whatever the size of the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import pycrdt
import pycrdt._pycrdt as pycrdt_native

from music import document
from music.diff import MISSING, Path
from music.schema import Leaf, MapOf, Record, Spec, problems, shown, spec_at

# -- what a transaction wrote ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """A map key or an array item a transaction wrote: the plain value written (MISSING
    for a shared type), and the plain value a key held before."""

    path: Path
    old: Any = MISSING
    new: Any = MISSING


_MapEvent: Final = pycrdt_native.MapEvent
_ArrayEvent: Final = pycrdt_native.ArrayEvent
_SHARED: Final = (pycrdt_native.Map, pycrdt_native.Array, pycrdt_native.Text)


class Watcher:
    """Records what the transactions on ``doc`` write while :attr:`watching`."""

    def __init__(self, doc: pycrdt.Doc[Any]) -> None:
        self.watching = False
        self.written: list[Written] = []
        self._subscriptions = [
            doc.get(name, type=kind).integrated.observe_deep(self._observer(name))
            for name, kind in _ROOT_TYPES.items()
        ]

    def take(self) -> list[Written]:
        written, self.written = self.written, []
        return written

    def _observer(self, root: str) -> Callable[[list[Any]], None]:
        def seen(events: list[Any]) -> None:
            if not self.watching:
                return
            for event in events:
                base: Path = (root, *event.path)
                kind = type(event)
                if kind is _MapEvent:
                    for key, change in event.keys.items():
                        action = change["action"]
                        if action == "delete":
                            continue
                        new = change["newValue"]
                        old = change.get("oldValue", MISSING)
                        self.written.append(
                            Written(
                                (*base, key),
                                MISSING if isinstance(old, _SHARED) else old,
                                MISSING if isinstance(new, _SHARED) else new,
                            )
                        )
                elif kind is _ArrayEvent:
                    index = 0
                    for op in event.delta:
                        if "retain" in op:
                            index += op["retain"]
                        elif "insert" in op:
                            for item in op["insert"]:
                                new = MISSING if isinstance(item, _SHARED) else item
                                self.written.append(Written((*base, index), new=new))
                                index += 1

        return seen


_ROOT_TYPES: Final[dict[str, type[pycrdt.Map[Any]] | type[pycrdt.Array[Any]]]] = {
    document.META: pycrdt.Map,
    document.TRACKS: pycrdt.Map,
    document.TRACK_ORDER: pycrdt.Array,
    document.SECTIONS: pycrdt.Array,
}


# -- fixes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    """One correction: put ``restore`` back at ``path``, or remove what is there."""

    path: Path
    problem: str
    restore: Any = MISSING

    @property
    def reason(self) -> str:
        where = _cut(".".join(str(step) for step in self.path), 300)
        done = "removed" if self.restore is MISSING else f"restored {shown(self.restore)}"
        return f"{where}: {_cut(self.problem, 300)}; {done}"


def _cut(text: str, length: int) -> str:
    """``text`` at most ``length`` characters long (keys and values can be long)."""
    return text if len(text) <= length else text[: length - 3] + "..."


def check(doc: pycrdt.Doc[Any], written: Iterable[Written]) -> list[Fix]:
    """The fixes the places in ``written`` need, as ``doc`` holds them now.

    A place written several times is put back to the newest valid value it replaced:
    the places are read newest first, and a removal gives way to a restore. A plain
    value that was valid when written is not read again (the common case, and the
    costly part): a later change by another writer is that writer's server's to check.
    """
    fixes: dict[Path, Fix] = {}
    for place in reversed(list(written)):
        key_problem = _key_problem(place.path)
        if key_problem is not None:
            fixes[place.path] = Fix(place.path, key_problem)
            continue
        spec = spec_at(place.path)
        if spec is None:
            continue
        if place.new is not MISSING and isinstance(spec, Leaf) and spec.check(place.new) is None:
            continue
        value = _lookup(doc, place.path)
        if value is MISSING:
            continue  # removed since (by a later change of the same transaction)
        for path, problem in problems(spec, value, place.path):
            if path == place.path and _restorable(spec, place.old):
                fix = Fix(path, problem, restore=place.old)
            else:
                removed = _removable(doc, path)
                inner = ".".join(str(step) for step in path[len(removed) :])
                fix = Fix(removed, f"{inner}: {problem}" if inner else problem)
            known = fixes.get(fix.path)
            if known is None or (known.restore is MISSING and fix.restore is not MISSING):
                fixes[fix.path] = fix
    return _outermost(fixes.values())


def correct(doc: pycrdt.Doc[Any], fixes: list[Fix]) -> bytes:
    """Apply ``fixes`` to ``doc`` in one transaction; the update it made."""
    # Array items go last and from the end, so that earlier removals do not move the
    # items later ones name.
    keyed = [fix for fix in fixes if isinstance(fix.path[-1], str)]
    indexed = sorted(
        (fix for fix in fixes if isinstance(fix.path[-1], int)),
        key=lambda fix: fix.path,
        reverse=True,
    )

    def change() -> None:
        for fix in keyed:
            parent = _lookup(doc, fix.path[:-1])
            if not isinstance(parent, pycrdt.Map):
                continue
            if fix.restore is MISSING:
                del parent[str(fix.path[-1])]
            else:
                parent[str(fix.path[-1])] = fix.restore
        for fix in indexed:
            parent = _lookup(doc, fix.path[:-1])
            index = int(fix.path[-1])
            if isinstance(parent, pycrdt.Array) and index < len(parent):
                del parent[index]

    return document.transact(doc, change)


def _key_problem(path: Path) -> str | None:
    """What is wrong with the key of a map entry at ``path``, if its map names a rule
    for its keys (track, clip, parameter ids)."""
    if len(path) < 2 or not isinstance(path[-1], str):
        return None
    parent = spec_at(path[:-1])
    if not isinstance(parent, MapOf) or parent.key is None:
        return None
    problem = parent.key(path[-1])
    return None if problem is None else f"key {problem}"


def _restorable(spec: Spec, old: Any) -> bool:
    """Whether ``old`` can be put back: a valid plain value (a replaced map or list is
    gone from the document, and plain JSON is not restored)."""
    if old is MISSING or isinstance(old, dict | list | pycrdt.Map | pycrdt.Array):
        return False
    return not problems(spec, old)


def _removable(doc: pycrdt.Doc[Any], path: Path) -> Path:
    """The place to remove for a problem at ``path``: itself, or the note or point it is
    a core field of, or the nearest value around it that Yjs can change (not plain JSON)."""
    while len(path) > 1:
        parent_path = path[:-1]
        parent = _lookup(doc, parent_path)
        spec = spec_at(parent_path)
        inside_plain = not isinstance(parent, pycrdt.Map | pycrdt.Array)
        core = isinstance(spec, Record) and path[-1] in spec.core
        if not (inside_plain or core) or len(parent_path) == 1:
            return path
        path = parent_path
    return path


def _outermost(fixes: Iterable[Fix]) -> list[Fix]:
    """Leave out fixes inside a value that another fix removes."""
    removed = {fix.path for fix in fixes if fix.restore is MISSING}
    return [
        fix
        for fix in fixes
        if not any(fix.path[:depth] in removed for depth in range(1, len(fix.path)))
    ]


def _lookup(doc: pycrdt.Doc[Any], path: Path) -> Any:
    value: Any = doc.get(str(path[0]), type=_ROOT_TYPES[str(path[0])])
    for step in path[1:]:
        if isinstance(value, pycrdt.Map | dict) and isinstance(step, str):
            value = value.get(step, MISSING)
        elif isinstance(value, pycrdt.Array | list) and isinstance(step, int):
            value = value[step] if 0 <= step < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value
