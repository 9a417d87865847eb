"""Every value a Yjs v1 update stores, read by a decoder of our own.

The suites check what the log holds with it: an update may carry a string with a NUL
character or a non-finite number that no later state shows (overwritten, deleted), and
PostgreSQL's jsonb refuses both, so every stored update is read item by item. This
reader follows the Yjs v1 encoding (``yjs/src/utils/encoding.js``, lib0's ``any``) and
is kept apart from the server's own checks on purpose: it is the oracle they are
measured against.

Layout: ``varUint(clients)``, per client ``varUint(structs) varUint(client)
varUint(clock)`` then its structs (an info byte; GC and skip carry a length, items
their origins, parent, key and content), then the delete set.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator

#: content refs of an item (the low five bits of its info byte)
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_XML_ELEMENT, _XML_HOOK = 3, 5
#: ``any`` values nested deeper than this are not read: pycrdt converts them to Python
#: recursively, and crashes the process (SIGSEGV) at about 20,000 levels
MAX_DEPTH = 500


class Unreadable(ValueError):
    """The bytes are not a Yjs v1 update this reader understands."""


class TooDeep(ValueError):
    """An ``any`` value nested deeper than MAX_DEPTH: looking inside is not safe."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise Unreadable(f"ends at byte {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.pos:
            raise Unreadable(
                f"{count} bytes wanted at {self.pos}, {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def var_uint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise Unreadable(f"varint too long at {self.pos}")

    def var_int(self) -> int:
        byte = self.byte()
        value, negative, shift = byte & 0x3F, bool(byte & 0x40), 6
        while byte & 0x80:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise Unreadable(f"varint too long at {self.pos}")
        return -value if negative else value

    def string(self) -> str:
        raw = self.take(self.var_uint())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(f"string before {self.pos} is not UTF-8") from None

    def any(self, depth: int = 0) -> Iterator[object]:
        """The leaves of one lib0 ``any`` value: strings (keys too) and numbers."""
        if depth > MAX_DEPTH:
            raise TooDeep(f"a value nested more than {MAX_DEPTH} levels deep")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            yield self.var_int()
        elif tag == 124:
            yield struct.unpack(">f", self.take(4))[0]
        elif tag == 123:
            yield struct.unpack(">d", self.take(8))[0]
        elif tag == 122:
            yield struct.unpack(">q", self.take(8))[0]
        elif tag == 119:
            yield self.string()
        elif tag == 118:
            for _ in range(self.var_uint()):
                yield self.string()
                yield from self.any(depth + 1)
        elif tag == 117:
            for _ in range(self.var_uint()):
                yield from self.any(depth + 1)
        elif tag == 116:
            self.take(self.var_uint())
        else:
            raise Unreadable(f"unknown any tag {tag} at {self.pos - 1}")


def _json_leaves(text: str) -> Iterator[object]:
    if text == "undefined":
        return
    try:
        # NaN and ±Infinity come back as floats, and so do numbers too large for one
        value = json.loads(text, parse_constant=float)
    except (ValueError, RecursionError):
        raise Unreadable(f"JSON content is not JSON: {text[:40]!r}") from None
    yield text
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                yield key
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, (str, float, int)) and not isinstance(item, bool):
            yield item


def _content(reader: _Reader, ref: int) -> Iterator[object]:
    if ref == _DELETED:
        reader.var_uint()
    elif ref == _JSON:
        for _ in range(reader.var_uint()):
            yield from _json_leaves(reader.string())
    elif ref == _BINARY:
        reader.take(reader.var_uint())
    elif ref == _STRING:
        yield reader.string()
    elif ref == _EMBED:
        yield from _json_leaves(reader.string())
    elif ref == _FORMAT:
        yield reader.string()
        yield from _json_leaves(reader.string())
    elif ref == _TYPE:
        if reader.var_uint() in (_XML_ELEMENT, _XML_HOOK):
            yield reader.string()
    elif ref == _ANY:
        for _ in range(reader.var_uint()):
            yield from reader.any()
    elif ref == _DOC:
        yield reader.string()
        yield from reader.any()
    else:
        raise Unreadable(f"unknown content ref {ref}")


def stored_values(update: bytes) -> Iterator[object]:
    """Every string (text, keys, names) and number the update stores; raises Unreadable."""
    reader = _Reader(update)
    for _ in range(reader.var_uint()):
        structs = reader.var_uint()
        reader.var_uint()  # client
        reader.var_uint()  # clock
        for _ in range(structs):
            info = reader.byte()
            ref = info & 0x1F
            if ref in (_GC, _SKIP):
                reader.var_uint()
                continue
            if info & 0x80:  # origin
                reader.var_uint()
                reader.var_uint()
            if info & 0x40:  # right origin
                reader.var_uint()
                reader.var_uint()
            if not info & 0xC0:  # no origins: the parent is written out
                if reader.var_uint() == 1:
                    yield reader.string()  # a root type's name
                else:
                    reader.var_uint()
                    reader.var_uint()
                if info & 0x20:
                    yield reader.string()  # the key in a map
            yield from _content(reader, ref)
    for _ in range(reader.var_uint()):  # the delete set
        reader.var_uint()
        for _ in range(reader.var_uint()):
            reader.var_uint()
            reader.var_uint()


def bad_values(update: bytes) -> list[str]:
    """What PostgreSQL's JSON could not hold: NUL characters, lone surrogates, non-finite
    numbers; one line each (empty when the update is clean). Raises TooDeep."""
    found: list[str] = []
    try:
        for value in stored_values(update):
            if isinstance(value, str):
                if "\x00" in value:
                    found.append(f"string with NUL: {value[:40]!r}")
                elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
                    found.append(f"string with a lone surrogate: {value[:40]!r}")
            elif isinstance(value, float) and not math.isfinite(value):
                found.append(f"non-finite number: {value}")
    except Unreadable as exc:
        found.append(f"not readable as a Yjs v1 update: {exc}")
    return found


def state_vector(encoded: bytes) -> dict[int, int]:
    """A v1 state vector as ``{client: clock}`` (its encoded order is arbitrary)."""
    reader = _Reader(encoded)
    pairs = {}
    for _ in range(reader.var_uint()):
        client = reader.var_uint()
        pairs[client] = reader.var_uint()
    return pairs
