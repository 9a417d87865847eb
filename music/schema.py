"""The document schema, and the correction that brings a document back inside it.

A CRDT client keeps what it wrote, so a live update that writes a value outside the
schema (``tempo`` set to ``"fast"``, a note's pitch 500) cannot be refused without
leaving its sender diverged. It is stored, and the server follows it at once with a
*correcting update* (docs/document.md, "The correction rule"):

- a value outside the schema is put back to the value it replaced, when that one was
  valid, and otherwise removed (its key deleted, or its item taken out of its array);
- a note whose ``pitch``, ``start``, ``duration`` or ``velocity`` cannot be put back is
  removed whole (a note without a pitch means nothing), and so is a plain JSON object
  or array (which Yjs cannot change in place) with anything invalid inside;
- keys the schema does not name are kept, whatever they hold: a newer editor may write
  them.

:class:`Watcher` records the places a transaction wrote, from deep observers on the
four roots, with the values map keys held before; :func:`check` reads the places
again and returns the :class:`Fix` each invalid one needs; :func:`correct` applies the
fixes as one transaction and returns its update. Only the places an update wrote are
read, so a fader move checks one number, whatever the size of the project.

The field rules are those of the typed edits (``music.edits``);
``tests/test_document_schema.py`` holds the two equal.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import pycrdt
import pycrdt._pycrdt as pycrdt_native

from music import document
from music.diff import MISSING, Path

#: what a leaf check says of a value: None when valid, otherwise what is wrong
Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Leaf:
    check: Check


@dataclass(frozen=True, slots=True)
class Record:
    """A Map with known fields; ``core`` fields cannot be removed alone."""

    fields: dict[str, Spec]
    core: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MapOf:
    """A Map whose every entry (any key) is ``item``."""

    item: Spec
    key: Check | None = None


@dataclass(frozen=True, slots=True)
class ArrayOf:
    item: Spec


Spec = Leaf | Record | MapOf | ArrayOf


# -- leaf checks -------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _plain_text(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, pycrdt.Map | dict):
        return "a map"
    if isinstance(value, pycrdt.Array | list):
        return "a list"
    if value is None:
        return "null"
    return str(value)


def text(max_length: int, *, min_length: int = 0, pattern: str | None = None) -> Check:
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"{_shown(value)} is not a string"
        if len(value) < min_length:
            return "is empty"
        if len(value) > max_length:
            return f"is longer than {max_length} characters"
        if compiled is not None and not compiled.fullmatch(value):
            return f"{_shown(value)} is not of the form {pattern}"
        return None

    return check


_LARGEST_FLOAT: Final = sys.float_info.max


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    whole: bool = False,
) -> Check:
    """A number within ``low``..``high`` (``above``: greater than ``low``)."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{_shown(value)} is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_shown(value)} is not finite"
        if isinstance(value, int) and abs(value) > _LARGEST_FLOAT:
            return "is beyond the range of a float"
        if whole and value != int(value):
            return f"{_shown(value)} is not a whole number"
        if low is not None and (value <= low if above else value < low):
            return f"{_shown(value)} is {'not above' if above else 'below'} {_shown(low)}"
        if high is not None and value > high:
            return f"{_shown(value)} is above {_shown(high)}"
        return None

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{_shown(value)} is not true or false"


def choice(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        if value in allowed and isinstance(value, str):
            return None
        return f"{_shown(value)} is not one of {', '.join(allowed)}"

    return check


def param_value(value: Any) -> str | None:
    if isinstance(value, bool | str):
        return text(500)(value) if isinstance(value, str) else None
    return number()(value)


# -- the document ------------------------------------------------------------------------

_NAME: Final = text(500)
_ID: Final = text(200, min_length=1)
_BEATS: Final = number(0, 1e7)
_LENGTH: Final = number(0, 1e7, above=True)

META: Final = Record(
    {
        "name": Leaf(_NAME),
        "tempo": Leaf(number(0, 1000, above=True)),
        "time_signature": Leaf(text(6, pattern=r"[1-9][0-9]?/(1|2|4|8|16|32)")),
        "key": Leaf(text(40)),
        "sample_rate": Leaf(number(8000, 384000, whole=True)),
    }
)
NOTE: Final = Record(
    {
        "id": Leaf(_ID),
        "pitch": Leaf(number(0, 127, whole=True)),
        "start": Leaf(_BEATS),
        "duration": Leaf(_LENGTH),
        "velocity": Leaf(number(1, 127, whole=True)),
    },
    core=frozenset({"pitch", "start", "duration", "velocity"}),
)
CLIP: Final = Record(
    {
        "name": Leaf(_NAME),
        "start_beats": Leaf(_BEATS),
        "length_beats": Leaf(_LENGTH),
        "source": Leaf(_NAME),
        "notes": ArrayOf(NOTE),
    }
)
EFFECT: Final = Record(
    {
        "id": Leaf(_ID),
        "type": Leaf(text(100, min_length=1)),
        "enabled": Leaf(boolean),
        "params": MapOf(Leaf(param_value), key=_ID),
    }
)
POINT: Final = Record(
    {
        "time": Leaf(_BEATS),
        "value": Leaf(number()),
        "curve": Leaf(choice("linear", "step", "exponential")),
    },
    core=frozenset({"time", "value"}),
)
TRACK: Final = Record(
    {
        "name": Leaf(_NAME),
        "kind": Leaf(choice("audio", "midi", "drums", "bus")),
        "instrument": Leaf(_NAME),
        "color": Leaf(text(7, pattern=r"#[0-9a-fA-F]{6}")),
        "volume_db": Leaf(number(-144, 24)),
        "pan": Leaf(number(-1, 1)),
        "mute": Leaf(boolean),
        "solo": Leaf(boolean),
        "armed": Leaf(boolean),
        "effects": ArrayOf(EFFECT),
        "clips": MapOf(CLIP, key=_ID),
        "automation": MapOf(ArrayOf(POINT), key=_ID),
    }
)
SECTION: Final = Record(
    {"name": Leaf(_NAME), "start_beats": Leaf(_BEATS), "length_beats": Leaf(_LENGTH)}
)
DOCUMENT: Final[dict[str, Spec]] = {
    document.META: META,
    document.TRACKS: MapOf(TRACK, key=_ID),
    document.TRACK_ORDER: ArrayOf(Leaf(_ID)),
    document.SECTIONS: ArrayOf(SECTION),
}


def spec_at(path: Path) -> Spec | None:
    """The schema of the value at ``path`` (root name first); None outside it (a key
    the schema does not name, or below one)."""
    spec: Spec | None = DOCUMENT.get(str(path[0])) if path else None
    for step in path[1:]:
        match spec:
            case Record(fields):
                spec = fields.get(step) if isinstance(step, str) else None
            case MapOf(item) if isinstance(step, str):
                spec = item
            case ArrayOf(item) if isinstance(step, int):
                spec = item
            case _:
                return None
        if spec is None:
            return None
    return spec


def problems(spec: Spec, value: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """Every place in ``value`` (at ``path``) outside ``spec``, with what is wrong."""
    found: list[tuple[Path, str]] = []
    _problems(spec, value, path, found)
    return found


def _problems(spec: Spec, value: Any, path: Path, found: list[tuple[Path, str]]) -> None:
    match spec:
        case Leaf(check):
            problem = check(value)
            if problem is not None:
                found.append((path, problem))
        case Record(fields):
            if not isinstance(value, pycrdt.Map | dict):
                found.append((path, f"{_shown(value)} is not a map"))
                return
            for key, inner in value.items():
                if key in fields:
                    _problems(fields[key], inner, (*path, key), found)
        case MapOf(item, key_check):
            if not isinstance(value, pycrdt.Map | dict):
                found.append((path, f"{_shown(value)} is not a map"))
                return
            for key, inner in value.items():
                key_problem = key_check(key) if key_check is not None else None
                if key_problem is not None:
                    found.append(((*path, key), f"key {key_problem}"))
                else:
                    _problems(item, inner, (*path, key), found)
        case ArrayOf(item):
            if not isinstance(value, pycrdt.Array | list):
                found.append((path, f"{_shown(value)} is not a list"))
                return
            for index, inner in enumerate(value):
                _problems(item, inner, (*path, index), found)


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
        done = "removed" if self.restore is MISSING else f"restored {_shown(self.restore)}"
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
