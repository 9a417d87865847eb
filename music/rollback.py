"""Rollback as a forward edit: the Yjs update that turns a document into a past state.

A live document is never reseeded (editors would keep their old items and merge
them straight back). Instead the current document is walked side by side with the
target one, and every difference becomes an ordinary CRDT operation: keys set or
deleted in maps, the differing middle of an array replaced, nested maps and arrays
updated in place where both sides have them. Applied to the current document the
result equals the target; edits made concurrently merge with it like any others;
and rolling the rollback back is just another rollback.

No I/O here: the API hands in the room's document and the target from time travel.
"""

from __future__ import annotations

from typing import Any

import pycrdt

from music import document

_ROOTS: tuple[tuple[str, type[pycrdt.Map[Any]] | type[pycrdt.Array[Any]]], ...] = (
    (document.META, pycrdt.Map),
    (document.TRACKS, pycrdt.Map),
    (document.TRACK_ORDER, pycrdt.Array),
    (document.SECTIONS, pycrdt.Array),
)


def restoring_update(current: pycrdt.Doc[Any], target: pycrdt.Doc[Any]) -> bytes:
    """The update that makes ``current``'s content equal ``target``'s (computed on a
    copy; ``current`` is not changed). An unchanged document gives an empty update."""
    work = document.copy_of(current)

    def change() -> None:
        for name, kind in _ROOTS:
            have = work.get(name, type=kind)
            want = target.get(name, type=kind)
            if isinstance(have, pycrdt.Map) and isinstance(want, pycrdt.Map):
                _sync_map(have, want)
            elif isinstance(have, pycrdt.Array) and isinstance(want, pycrdt.Array):
                _sync_array(have, want)

    return document.transact(work, change)


def _same(have: Any, want: Any) -> bool:
    if _kind(have) != _kind(want):
        return False
    return bool(document.plain(have, keep_none=True) == document.plain(want, keep_none=True))


def _kind(value: Any) -> str:
    if isinstance(value, pycrdt.Map):
        return "map"
    if isinstance(value, pycrdt.Array):
        return "array"
    if isinstance(value, pycrdt.Text):
        return "text"
    return "value"


def _fresh(value: Any) -> Any:
    """A new (preliminary) copy of ``value`` to insert, keeping its shared types."""
    if isinstance(value, pycrdt.Map):
        return pycrdt.Map({key: _fresh(item) for key, item in value.items()})
    if isinstance(value, pycrdt.Array):
        return pycrdt.Array([_fresh(item) for item in value])
    if isinstance(value, pycrdt.Text):
        return pycrdt.Text(str(value))
    return value


def _sync_map(have: pycrdt.Map[Any], want: pycrdt.Map[Any]) -> None:
    wanted = dict(want.items())
    for key in [key for key, _ in have.items() if key not in wanted]:
        del have[key]
    for key, value in wanted.items():
        if key not in have:
            have[key] = _fresh(value)
            continue
        current = have[key]
        if isinstance(current, pycrdt.Map) and isinstance(value, pycrdt.Map):
            _sync_map(current, value)
        elif isinstance(current, pycrdt.Array) and isinstance(value, pycrdt.Array):
            _sync_array(current, value)
        elif not _same(current, value):
            have[key] = _fresh(value)


def _sync_array(have: pycrdt.Array[Any], want: pycrdt.Array[Any]) -> None:
    old = list(have)
    new = list(want)
    head = 0
    while head < len(old) and head < len(new) and _same(old[head], new[head]):
        head += 1
    tail = 0
    while (
        tail < len(old) - head
        and tail < len(new) - head
        and _same(old[len(old) - 1 - tail], new[len(new) - 1 - tail])
    ):
        tail += 1
    old_mid = old[head : len(old) - tail]
    new_mid = new[head : len(new) - tail]
    if len(old_mid) == len(new_mid) and all(
        _kind(a) == _kind(b) and _kind(a) in ("map", "array")
        for a, b in zip(old_mid, new_mid, strict=True)
    ):
        # Same shape: update the items in place (a changed note stays the same item).
        for a, b in zip(old_mid, new_mid, strict=True):
            if isinstance(a, pycrdt.Map) and isinstance(b, pycrdt.Map):
                _sync_map(a, b)
            elif isinstance(a, pycrdt.Array) and isinstance(b, pycrdt.Array):
                _sync_array(a, b)
        return
    if old_mid:
        del have[head : head + len(old_mid)]
    for offset, value in enumerate(new_mid):
        have.insert(head + offset, _fresh(value))
