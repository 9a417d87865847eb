"""Values inside a Yjs v1 update that the log and the read models cannot hold.

Yjs stores any JavaScript value, but PostgreSQL's text and jsonb refuse the NUL
character and JSON has no form for NaN or ±Infinity; one such value stopped the read
models for every user. :func:`check_values` walks the update's structs without applying
them and raises :class:`UnsafeValue` for a NUL in any string or key (map keys, root
names, text, formatting, embedded JSON), for a non-finite float and for XML types.

Layout (yjs ``UpdateDecoderV1``, lib0 ``decoding.readAny``)::

    update    varUint(clients) clients x (varUint(structs) varUint(client) varUint(clock)
              structs x struct) delete-set
    struct    info:u8; info & 0x1f = 0 GC, 10 Skip (varUint length), else an item:
              [origin id if info & 0x80] [right origin id if info & 0x40]
              [if neither: varUint(1) varString(root) | varUint(0) id;
               varString(key) if info & 0x20] content(info & 0x1f)
    content   1 deleted varUint | 2 JSON varUint(n) n x varString | 3 binary varBytes
              4 string varString | 5 embed varString(JSON) | 6 format varString varString(JSON)
              7 type varUint(ref) [varString(name) if ref is 3 or 5] | 8 any varUint(n) n x any
              9 doc varString(guid) any
    any       127 undefined, 126 null, 125 varInt, 124 float32, 123 float64, 122 bigint64,
              121 false, 120 true, 119 varString, 118 object, 117 array, 116 varBytes

The walk runs before pycrdt sees the update (``music.updates.check_update``): yrs' decoder
recurses into nested values without a bound, so the depth is checked here first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: nesting of objects and arrays inside one value beyond which the update is refused
MAX_DEPTH: Final = 64

_NUL: Final = b"\x00"


class UnsafeValue(ValueError):
    """A value the log, JSON or PostgreSQL cannot hold; the message says which."""


class Unreadable(ValueError):
    """The update is not a Yjs v1 update this walk can read (runs short, unknown tags)."""


class _Short(ValueError):
    pass


class _Scanner:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        data, pos = self.data, self.pos
        value = shift = 0
        while True:
            if pos >= len(data):
                raise _Short
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
            if shift > 70:
                raise _Short

    def skip_signed(self) -> None:
        data, pos = self.data, self.pos
        while True:
            if pos >= len(data):
                raise _Short
            byte = data[pos]
            pos += 1
            if byte < 0x80:
                self.pos = pos
                return

    def raw(self) -> bytes:
        length = self.uint()
        end = self.pos + length
        if end > len(self.data):
            raise _Short
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def string(self, what: str) -> bytes:
        chunk = self.raw()
        if _NUL in chunk:
            raise UnsafeValue(f"{what} contains a NUL character")
        return chunk

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise _Short
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk


@dataclass(slots=True)
class Extent:
    """Which ids an update carries and which ids outside it it needs.

    yrs keeps a struct whose origin, right origin or parent it does not know as
    *pending*, without an error, and ``Doc.get_update()`` leaves pending structs out: a
    document rebuilt from another's state lacks them, and the two part ways once the
    missing ids arrive. The room therefore stores an update only once it is
    :meth:`complete` against the document it is applied to.
    """

    #: client -> first clock the update carries for it
    starts: dict[int, int] = field(default_factory=dict)
    #: client -> the clock after the last one the update carries for it
    ends: dict[int, int] = field(default_factory=dict)
    #: client -> highest clock of an id the update refers to (origins, parents,
    #: deletions); ids the update carries itself count too, they are covered by ``ends``
    refers: dict[int, int] = field(default_factory=dict)
    #: client -> clock the document must already hold because the update skips up to it
    skips: dict[int, int] = field(default_factory=dict)

    def refer(self, client: int, clock: int) -> None:
        if clock >= self.refers.get(client, -1):
            self.refers[client] = clock

    def complete(self, state: Mapping[int, int]) -> bool:
        """Whether a document at ``state`` (client -> next clock) integrates all of it."""
        reach = dict(state)
        for client, start in self.starts.items():
            known = state.get(client, 0)
            if start > known or self.skips.get(client, 0) > known:
                return False
            reach[client] = max(known, self.ends[client])
        return all(clock < reach.get(client, 0) for client, clock in self.refers.items())

    def covered_by(self, state: Mapping[int, int]) -> bool:
        """Whether every id the update carries or deletes is in a document at ``state``."""
        return all(end <= state.get(client, 0) for client, end in self.ends.items()) and all(
            clock < state.get(client, 0) for client, clock in self.refers.items()
        )

    def advance(self, state: dict[int, int]) -> None:
        """``state`` after a complete apply of the update."""
        for client, end in self.ends.items():
            if end > state.get(client, 0):
                state[client] = end


def check_values(update: bytes) -> Extent:
    """Raise UnsafeValue if ``update`` writes a NUL character or a non-finite number.

    Also refused: values nested deeper than MAX_DEPTH, and shared types the update nests
    deeper than MAX_DEPTH inside each other. Raises Unreadable when the bytes are not an
    update this walk can read. Returns the update's :class:`Extent`.
    """
    scanner = _Scanner(update)
    nesting = _Nesting()
    extent = Extent()
    try:
        for _ in range(scanner.uint()):
            structs = scanner.uint()
            client = scanner.uint()
            clock = scanner.uint()
            if structs:
                extent.starts[client] = min(clock, extent.starts.get(client, clock))
            for _ in range(structs):
                clock += _struct(scanner, nesting, extent, client, clock)
            if structs:
                extent.ends[client] = max(clock, extent.ends.get(client, clock))
        # The delete set names only ids and lengths: nothing in it is a value, but a
        # deletion of an id the document lacks is kept pending like a struct.
        for _ in range(scanner.uint()):
            client = scanner.uint()
            for _ in range(scanner.uint()):
                clock = scanner.uint()
                length = scanner.uint()
                if length:
                    extent.refer(client, clock + length - 1)
    except _Short:
        raise Unreadable("update runs past its end") from None
    return extent


def state_of(state_vector: bytes) -> dict[int, int]:
    """Decode a Yjs state vector (``varUint(n) n x (client, clock)``)."""
    scanner = _Scanner(state_vector)
    try:
        return {scanner.uint(): scanner.uint() for _ in range(scanner.uint())}
    except _Short:
        raise Unreadable("state vector runs past its end") from None


class _Nesting:
    """How deep the update nests shared types, as far as the update itself tells.

    An item names its parent (a root, or the id of a shared type) or, when it has a
    left or right neighbour, takes its neighbour's parent. Parents that the update does
    not create count as roots: the depth is bounded per update, which is what stops one
    update from nesting thousands of maps (Python's JSON of the document then recurses
    past its limit).
    """

    __slots__ = ("levels", "types")

    def __init__(self) -> None:
        #: id of a shared type the update creates -> its depth (a root's children: 1)
        self.types: dict[tuple[int, int], int] = {}
        #: first and last id of each item -> the depth of the type holding it
        self.levels: dict[tuple[int, int], int] = {}


def _struct(scanner: _Scanner, nesting: _Nesting, extent: Extent, client: int, clock: int) -> int:
    """Read one struct; its length in clock ticks."""
    info = scanner.take(1)[0]
    ref = info & 0x1F
    if ref == 0:  # GC
        return scanner.uint()
    if ref == 10:  # Skip: the ids it stands for must be in the document already
        length = scanner.uint()
        extent.skips[client] = max(clock + length, extent.skips.get(client, 0))
        return length
    level = 0
    if info & 0x80:
        origin = (scanner.uint(), scanner.uint())
        extent.refer(*origin)
        level = nesting.levels.get(origin, 0)
    if info & 0x40:
        right = (scanner.uint(), scanner.uint())
        extent.refer(*right)
        level = level or nesting.levels.get(right, 0)
    if not info & 0xC0:
        if scanner.uint() == 1:
            scanner.string("a root type's name")
        else:
            parent = (scanner.uint(), scanner.uint())
            extent.refer(*parent)
            level = nesting.types.get(parent, 0)
        if info & 0x20:
            scanner.string("a map key")
    length = _content(scanner, ref)
    if ref == 7:
        if level >= MAX_DEPTH:
            raise UnsafeValue(f"shared types nest deeper than {MAX_DEPTH} levels")
        nesting.types[(client, clock)] = level + 1
    nesting.levels[(client, clock)] = level
    nesting.levels[(client, clock + length - 1)] = level
    return length


def _content(scanner: _Scanner, ref: int) -> int:
    """Read an item's content; its length in clock ticks."""
    if ref == 1:  # deleted
        return scanner.uint()
    if ref == 2:  # JSON (written by old Yjs versions)
        count = scanner.uint()
        for _ in range(count):
            text = scanner.string("a JSON value")
            if text != b"undefined":
                _json(text)
        return count
    if ref == 3:  # binary
        scanner.raw()
    elif ref == 4:
        text = scanner.string("a text")
        try:  # Yjs counts text in UTF-16 code units
            return len(text.decode("utf-8").encode("utf-16-le")) // 2
        except UnicodeError:
            raise Unreadable("a text is not UTF-8") from None
    elif ref == 5:  # embed
        _json(scanner.string("an embedded value"))
    elif ref == 6:  # format
        scanner.string("a format attribute's name")
        _json(scanner.string("a format attribute"))
    elif ref == 7:  # a shared type
        type_ref = scanner.uint()
        if type_ref > 6:  # yrs' weak links carry more; no Yjs editor writes them
            raise Unreadable(f"unknown shared type {type_ref}")
        if type_ref > 2:
            # XmlElement, XmlFragment, XmlHook, XmlText: a project document has none,
            # and its JSON view has no form for them.
            raise UnsafeValue("XML types have no place in a project document")
    elif ref == 8:
        count = scanner.uint()
        for _ in range(count):
            _any(scanner, 0)
        return count
    elif ref == 9:  # a subdocument
        scanner.string("a subdocument's guid")
        _any(scanner, 0)
    else:
        raise Unreadable(f"unknown content type {ref}")
    return 1


def _any(scanner: _Scanner, depth: int) -> None:
    tag = scanner.take(1)[0]
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return
    if tag == 125:
        scanner.skip_signed()
    elif tag == 123:
        high = scanner.take(8)
        if high[0] & 0x7F == 0x7F and high[1] & 0xF0 == 0xF0:
            raise UnsafeValue("a number is NaN or infinite")
    elif tag == 124:
        high = scanner.take(4)
        if high[0] & 0x7F == 0x7F and high[1] & 0x80 == 0x80:
            raise UnsafeValue("a number is NaN or infinite")
    elif tag == 122:
        scanner.take(8)
    elif tag == 119:
        scanner.string("a string")
    elif tag in (118, 117):
        if depth >= MAX_DEPTH:
            raise UnsafeValue(f"a value nests deeper than {MAX_DEPTH} levels")
        for _ in range(scanner.uint()):
            if tag == 118:
                scanner.string("an object key")
            _any(scanner, depth + 1)
    elif tag == 116:
        scanner.raw()
    else:
        raise Unreadable(f"unknown value type {tag}")


def _refuse_constant(name: str) -> Any:
    raise UnsafeValue(f"a number is {name}")


def _json(text: bytes) -> None:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, UnsafeValue):
            raise
        raise UnsafeValue("an embedded JSON value does not parse") from None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise UnsafeValue("a string contains a NUL character")
        elif isinstance(item, float):
            if not math.isfinite(item):  # 1e999 parses as infinity
                raise UnsafeValue("a number is NaN or infinite")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if "\x00" in key:
                    raise UnsafeValue("an object key contains a NUL character")
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def leading_uints(data: bytes, count: int) -> list[int]:
    """The first ``count`` varUints of ``data`` (Unreadable when it runs short)."""
    scanner = _Scanner(data)
    try:
        return [scanner.uint() for _ in range(count)]
    except _Short:
        raise Unreadable("runs past its end") from None
