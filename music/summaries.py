"""Change records as sentences for the history, and the records of consecutive events
folded into their net effect (a fader drag as one entry); the records come from
:mod:`music.changes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from music import document
from music.changes import Record


def _fmt(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        label = value.get("name") or value.get("type") or value.get("id")
        if label is not None:
            return str(label)
        if "items" in value:
            return f"{value['items']} items"
        return "{…}"
    return str(value)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(part) for part in path)


def _field_line(label: str, field: str, record: Record) -> str:
    op = record["op"]
    if op == "added":
        return f"{label}: set {field} to {_fmt(record['new'])}"
    if op == "removed":
        return f"{label}: removed {field}"
    return f"{label}: {field} {_fmt(record['old'])} → {_fmt(record['new'])}"


def summarize(records: Sequence[Record]) -> list[str]:
    """Human sentences for change records, in document order; counts are gathered."""
    summary = _Summary()
    for record in records:
        summary.add(record)
    return summary.lines()


#: up to this many notes of one clip, a sentence names them by id
NAMED_NOTES = 3


class _Summary:
    def __init__(self) -> None:
        self._lines: list[str] = []
        self._notes: dict[tuple[str, str], int] = {}
        #: the ids of the notes counted (a record of a note without one adds None)
        self._note_ids: dict[tuple[str, str], list[str | None]] = {}
        self._automation: list[str] = []
        self._tracks_added_or_removed = False
        self._reordered = False

    def add(self, record: Record) -> None:
        path: list[Any] = record["path"]
        root = path[0]
        if root == document.META and len(path) == 2:
            self._lines.append(_field_line("meta", str(path[1]), record).removeprefix("meta: "))
        elif root == document.TRACKS and len(path) >= 2:
            self._track(record, path)
        elif root == document.TRACK_ORDER:
            self._reordered = True
        elif root == document.SECTIONS and len(path) >= 2:
            section = (record.get("where") or {}).get("section", str(path[1]))
            if len(path) == 2 and record["op"] in ("added", "removed"):
                self._lines.append(f"{record['op']} section {section}")
            else:
                self._lines.append(_field_line(f"section {section}", _dotted(path[2:]), record))
        else:
            self._lines.append(f"{record['op']} {_dotted(path)}")

    def _track(self, record: Record, path: list[Any]) -> None:
        op: str = record["op"]
        where: dict[str, str] = record.get("where") or {}
        track = where.get("track", str(path[1]))
        if len(path) == 2:
            if op in ("added", "removed"):
                self._tracks_added_or_removed = True
                self._lines.append(f"{op} track {track}")
            else:
                self._lines.append(f"track {track} replaced")
        elif len(path) == 3:
            if path[2] == "name" and op == "changed":
                self._lines.append(f"renamed track {_fmt(record['old'])} → {_fmt(record['new'])}")
            else:
                self._lines.append(_field_line(track, str(path[2]), record))
        elif path[2] == "clips":
            self._clip(record, path, track, where.get("clip", str(path[3])))
        elif path[2] == "effects":
            effect = where.get("effect", str(path[3]))
            if len(path) == 4 and op in ("added", "removed"):
                preposition = "to" if op == "added" else "from"
                self._lines.append(f"{op} effect {effect} {preposition} {track}")
            else:
                self._lines.append(_field_line(f"{track} / {effect}", _dotted(path[4:]), record))
        elif path[2] == "automation":
            label = f"{track}: automation {path[3]}"
            if label not in self._automation:
                self._automation.append(label)
        else:
            self._lines.append(_field_line(track, _dotted(path[2:]), record))

    def _clip(self, record: Record, path: list[Any], track: str, clip: str) -> None:
        op: str = record["op"]
        if len(path) == 4 and op in ("added", "removed"):
            preposition = "to" if op == "added" else "from"
            self._lines.append(f"{op} clip {clip} {preposition} {track}")
        elif len(path) >= 5 and path[4] == "notes":
            kind, count = "changed", 1
            if len(path) == 6 and op in ("added", "removed"):
                kind = op
            elif len(path) == 5 and op in ("added", "removed"):
                # the whole notes list appeared or went: count its items
                value = record["new"] if op == "added" else record["old"]
                kind, count = op, int((value or {}).get("items", 0))
            self._notes[kind, clip] = self._notes.get((kind, clip), 0) + count
            note = record.get("where", {}).get("note") if len(path) >= 6 else None
            self._note_ids.setdefault((kind, clip), []).append(note)
        elif len(path) == 5 and path[4] == "name" and op == "changed":
            self._lines.append(f"renamed clip {_fmt(record['old'])} → {_fmt(record['new'])}")
        else:
            self._lines.append(_field_line(f"{track} / {clip}", _dotted(path[4:]), record))

    def _named_notes(self, kind: str, clip: str) -> str | None:
        """``note n1`` or ``notes n1, n2, n3`` when every note counted has an id and
        they are few; None otherwise (then the sentence counts them)."""
        ids = self._note_ids.get((kind, clip), [])
        if not ids or None in ids:
            return None
        unique = list(dict.fromkeys(i for i in ids if i is not None))
        if len(unique) > NAMED_NOTES:
            return None
        return ("note " if len(unique) == 1 else "notes ") + ", ".join(unique)

    def lines(self) -> list[str]:
        lines = list(self._lines)
        for (kind, clip), count in self._notes.items():
            notes = self._named_notes(kind, clip) or _plural(count, "note")
            if kind == "added":
                lines.append(f"{notes} added to clip {clip}")
            elif kind == "removed":
                lines.append(f"{notes} removed from clip {clip}")
            else:
                lines.append(f"{notes} changed in clip {clip}")
        lines.extend(f"{label} changed" for label in self._automation)
        if self._reordered and not self._tracks_added_or_removed:
            lines.append("reordered tracks")
        return lines


def merge(groups: Iterable[Sequence[Record]]) -> list[Record]:
    """Fold the records of consecutive events (oldest first) into their net effect."""
    merged: dict[str, Record] = {}
    for records in groups:
        for record in records:
            key = _dotted(record["path"])
            previous = merged.get(key)
            if previous is None:
                merged[key] = dict(record)
                continue
            first, then = previous["op"], record["op"]
            if first == "added" and then == "removed":
                del merged[key]
                continue
            if first == "added":
                op = "added"
            elif first == "removed" and then == "added":
                op = "changed"
            else:
                op = then
            merged[key] = {**previous, "op": op, "new": record["new"], "where": record["where"]}
    # A change inside something the group added or removed is part of that.
    wholes = [tuple(r["path"]) for r in merged.values() if r["op"] in ("added", "removed")]
    return [
        record
        for record in merged.values()
        if not (record["op"] == "changed" and record["old"] == record["new"])
        and not any(
            len(whole) < len(record["path"]) and tuple(record["path"][: len(whole)]) == whole
            for whole in wholes
        )
    ]
