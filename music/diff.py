"""Structural diff of two JSON documents: which paths were added, removed or changed.

Used for ``GET /api/projects/{id}/diff`` and, on the parts an update touched, for
the history's change records. Objects are compared key by key. Lists keep their
common head and tail; what differs in between is compared item by item when both
sides have the same length (a note whose velocity changed is one changed path),
otherwise it is reported as items removed and added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Path = tuple[str | int, ...]
Op = Literal["added", "removed", "changed"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: the value at a path that does not exist
MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Change:
    op: Op
    path: Path
    #: the value before (MISSING when added)
    old: Any
    #: the value after (MISSING when removed)
    new: Any


def diff(old: Any, new: Any, path: Path = ()) -> list[Change]:
    """The changes that turn ``old`` into ``new``: keys in sorted order, list items in
    their order."""
    out: list[Change] = []
    _diff(old, new, path, out)
    return out


def _diff(old: Any, new: Any, path: Path, out: list[Change]) -> None:
    if old is MISSING and new is MISSING:
        return
    if old is MISSING:
        out.append(Change("added", path, MISSING, new))
    elif new is MISSING:
        out.append(Change("removed", path, old, MISSING))
    elif isinstance(old, dict) and isinstance(new, dict):
        # Sorted: Yjs maps have no order, and the same change must read the same way
        # whenever it is computed (a rebuild gives identical rows).
        for key in sorted(old.keys() | new.keys()):
            _diff(old.get(key, MISSING), new.get(key, MISSING), (*path, key), out)
    elif isinstance(old, list) and isinstance(new, list):
        _diff_lists(old, new, path, out)
    elif not _same(old, new):
        out.append(Change("changed", path, old, new))


def _same(old: Any, new: Any) -> bool:
    # Yjs keeps every number as a double: 3 and 3.0 are the same value, True and 1 not.
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and bool(old == new)
    return bool(old == new)


def _diff_lists(old: list[Any], new: list[Any], path: Path, out: list[Change]) -> None:
    head = 0
    while head < len(old) and head < len(new) and old[head] == new[head]:
        head += 1
    tail = 0
    while (
        tail < len(old) - head
        and tail < len(new) - head
        and old[len(old) - 1 - tail] == new[len(new) - 1 - tail]
    ):
        tail += 1
    old_mid = old[head : len(old) - tail]
    new_mid = new[head : len(new) - tail]
    if len(old_mid) == len(new_mid):
        for offset, (before, after) in enumerate(zip(old_mid, new_mid, strict=True)):
            _diff(before, after, (*path, head + offset), out)
        return
    for offset, before in enumerate(old_mid):
        out.append(Change("removed", (*path, head + offset), before, MISSING))
    for offset, after in enumerate(new_mid):
        out.append(Change("added", (*path, head + offset), MISSING, after))


def note_of(change: Change, old: Any, new: Any) -> str | None:
    """The id of the note ``change`` lies in (``tracks/T/clips/C/notes/i/...``), looked
    up in the document after the change (before it, for a removal): paths place notes by
    position, people know them by id."""
    path = change.path
    if len(path) < 6 or path[0] != "tracks" or path[2] != "clips" or path[4] != "notes":
        return None
    node: Any = old if change.op == "removed" else new
    for key in path[:6]:
        if isinstance(node, dict) and isinstance(key, str):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    note_id = node.get("id") if isinstance(node, dict) else None
    return note_id if isinstance(note_id, str) else None
