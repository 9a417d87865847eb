"""The document schema: what each place of the project document may hold. No I/O.

The layout of docs/document.md as data (:data:`DOCUMENT`, a tree of :class:`Record`,
:class:`MapOf`, :class:`ArrayOf` and :class:`Leaf` checks), :func:`spec_at` for the
rule of any path, and :func:`problems` for every place of a value outside its rule.
Keys the schema does not name are kept, whatever they hold: a newer editor may write
them. What is done about a value outside the schema is :mod:`music.corrections`'.

The field rules are those of the typed edits (``music.edits``);
``tests/test_document_schema.py`` holds the two equal.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pycrdt

from music import document
from music.diff import Path

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


def shown(value: Any) -> str:
    """``value`` as a reason shows it: quoted if text, cut at 40 characters."""
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
            return f"{shown(value)} is not a string"
        if len(value) < min_length:
            return "is empty"
        if len(value) > max_length:
            return f"is longer than {max_length} characters"
        if compiled is not None and not compiled.fullmatch(value):
            return f"{shown(value)} is not of the form {pattern}"
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
            return f"{shown(value)} is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{shown(value)} is not finite"
        if isinstance(value, int) and abs(value) > _LARGEST_FLOAT:
            return "is beyond the range of a float"
        if whole and value != int(value):
            return f"{shown(value)} is not a whole number"
        if low is not None and (value <= low if above else value < low):
            return f"{shown(value)} is {'not above' if above else 'below'} {shown(low)}"
        if high is not None and value > high:
            return f"{shown(value)} is above {shown(high)}"
        return None

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{shown(value)} is not true or false"


def choice(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        if value in allowed and isinstance(value, str):
            return None
        return f"{shown(value)} is not one of {', '.join(allowed)}"

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
                found.append((path, f"{shown(value)} is not a map"))
                return
            for key, inner in value.items():
                if key in fields:
                    _problems(fields[key], inner, (*path, key), found)
        case MapOf(item, key_check):
            if not isinstance(value, pycrdt.Map | dict):
                found.append((path, f"{shown(value)} is not a map"))
                return
            for key, inner in value.items():
                key_problem = key_check(key) if key_check is not None else None
                if key_problem is not None:
                    found.append(((*path, key), f"key {key_problem}"))
                else:
                    _problems(item, inner, (*path, key), found)
        case ArrayOf(item):
            if not isinstance(value, pycrdt.Array | list):
                found.append((path, f"{shown(value)} is not a list"))
                return
            for index, inner in enumerate(value):
                _problems(item, inner, (*path, index), found)
