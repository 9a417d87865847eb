"""Seeded y-websocket frames for fuzzing the live socket: real ones and broken ones.

Every frame is built from the seed alone, so a finding is reproduced by its seed and
unit number. Valid updates come from one pycrdt document that keeps editing (so they
build on each other, as an editor's do); everything meant to be refused or to probe a
check comes from throwaway documents with client ids of their own, so that refusing
it leaves no gap in a history the server keeps.

Frames are encoded here, byte by byte, rather than with the server's codec (which is
what is under test): ``varUint(type)``, then for sync ``varUint(subtype)
varUint8Array(payload)`` (y-protocols ``PROTOCOL.md``).

Over 400 lines because every frame kind is built from one seeded generator whose
documents and client ids the kinds share.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pycrdt

from music import document
from tests.live import random_edit
from tests.poison import Poison, find_poison

#: unit kinds and how often each is drawn (out of their sum)
WEIGHTS: dict[str, int] = {
    # what editors send: the server must accept these (see ACCEPTED)
    "update": 24,
    "step2": 6,
    "step1": 8,
    "awareness": 8,
    "query_awareness": 4,
    "auth": 2,
    # updates that decode, whose content is the question
    "bit_flip": 20,
    "poison": 6,
    "nul_string": 8,
    "non_finite": 8,
    "crafted_item": 8,
    "wrong_root_kind": 4,
    "deep_any": 2,
    "deep_types": 2,
    # frames that break the protocol
    "truncated_varint": 8,
    "wrong_length": 8,
    "huge_length": 6,
    "bad_state_vector": 4,
    "awareness_bad_json": 8,
    "unknown_type": 6,
    "unknown_sync_subtype": 4,
    "random_bytes": 8,
    "empty": 2,
    "text": 2,
    "oversize": 1,
}
#: kinds of frames an editor sends: refusing one is a finding
ACCEPTED = frozenset({"update", "step2", "step1", "awareness", "query_awareness", "auth"})
#: edits made by one editing document before the next one takes over
EDITS_PER_EDITOR = 2_000
#: a frame opening with this byte is a query for awareness: the server answers each
QUERY_AWARENESS = 3


@dataclass(frozen=True, slots=True)
class Unit:
    """Frames sent together (a poison follows the updates it is refused on)."""

    number: int
    kind: str
    #: ``str`` frames go as WebSocket text frames
    frames: tuple[bytes | str, ...]

    @property
    def queries(self) -> int:
        """Awareness answers the server owes for these frames while it keeps the
        connection open."""
        return sum(
            1 for f in self.frames if isinstance(f, bytes) and f[:1] == bytes([QUERY_AWARENESS])
        )


def var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def var_bytes(data: bytes) -> bytes:
    return var_uint(len(data)) + data


def var_string(text: str) -> bytes:
    return var_bytes(text.encode("utf-8"))


def sync_frame(subtype: int, payload: bytes) -> bytes:
    return b"\x00" + var_uint(subtype) + var_bytes(payload)


def awareness_frame(entries: list[tuple[int, int, bytes]]) -> bytes:
    body = var_uint(len(entries)) + b"".join(
        var_uint(client) + var_uint(clock) + var_bytes(state) for client, clock, state in entries
    )
    return b"\x01" + var_bytes(body)


def item_update(client: int, key: str, ref: int, content: bytes, root: str = "meta") -> bytes:
    """A v1 update of one item: ``root[key]`` set to ``content`` of content ref ``ref``."""
    info = 0x20 | ref  # a map key follows the parent; no origins
    return (
        var_uint(1)
        + var_uint(1)
        + var_uint(client)
        + var_uint(0)
        + bytes([info])
        + var_uint(1)
        + var_string(root)
        + var_string(key)
        + content
        + var_uint(0)
    )


def nested_maps_update(client: int, depth: int) -> bytes:
    """``meta.k`` holds a map holding a map ... ``depth`` levels deep, as one update."""
    items = bytearray(b"\x27" + var_uint(1) + var_string("meta") + var_string("k") + var_uint(1))
    for clock in range(1, depth):
        # parent: the map item before it (an id), key "k", content: a new map
        items += b"\x27" + var_uint(0) + var_uint(client) + var_uint(clock - 1)
        items += var_string("k") + var_uint(1)
    return var_uint(1) + var_uint(depth) + var_uint(client) + var_uint(0) + bytes(items) + b"\x00"


class FrameGenerator:
    """Units of frames, drawn from ``seed``; ``max_message_bytes`` is the server's limit."""

    def __init__(
        self,
        seed: int,
        *,
        max_message_bytes: int,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        unknown = skip - WEIGHTS.keys()
        if unknown:
            raise ValueError(f"unknown frame kinds: {sorted(unknown)}")
        self.rng = random.Random(seed)
        self.max_message_bytes = max_message_bytes
        self.kinds = [k for k in WEIGHTS if k not in skip]
        self.weights = [WEIGHTS[k] for k in self.kinds]
        self.editor = self._document()
        self._edits: list[bytes] = []
        self._editing = self.editor.observe(lambda event: self._edits.append(event.update))
        self._edit_count = 0
        self.poisons: list[Poison] = [find_poison(seed * 100 + i) for i in range(8)]
        self.count = 0
        self._build: dict[str, Callable[[], tuple[bytes | str, ...]]] = {
            kind: getattr(self, f"_{kind}") for kind in WEIGHTS
        }

    def __iter__(self) -> FrameGenerator:
        return self

    def __next__(self) -> Unit:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        self.count += 1
        return Unit(self.count, kind, self._build[kind]())

    # -- helpers -------------------------------------------------------------------------

    def _client(self) -> int:
        return self.rng.randrange(1, 2**32)

    def _document(self) -> pycrdt.Doc[Any]:
        doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=self._client())
        document.declare_roots(doc)
        return doc

    def _edit(self) -> bytes:
        """The next update of the editing document (never empty)."""
        self._edit_count += 1
        if self._edit_count % EDITS_PER_EDITOR == 0:
            # A new editor now and then keeps each frame cheap to build in long runs.
            self.editor.unobserve(self._editing)
            self.editor = self._document()
            self._editing = self.editor.observe(lambda event: self._edits.append(event.update))
        self._edits.clear()
        while not self._edits:
            random_edit(self.rng, self.editor, 9)
        return self._edits[-1]

    def _throwaway(self, change: Callable[[pycrdt.Doc[Any]], None]) -> bytes:
        doc = self._document()

        def changed() -> None:
            with doc.transaction():
                change(doc)

        updates = _captured(doc, changed)
        return updates[-1] if updates else b"\x00\x00"

    def _some_update(self) -> bytes:
        """A real update that is never sent as it is (throwaway or a fork of the editor)."""
        if self.rng.random() < 0.5:
            return self._throwaway(lambda doc: random_edit(self.rng, doc, 8))
        fork = self._document()  # the editor's content, under a client id of its own
        fork.apply_update(self.editor.get_update())
        updates: list[bytes] = []
        while not updates:
            updates = _captured(fork, lambda: random_edit(self.rng, fork, 7))
        return updates[-1]

    def _number(self) -> float:
        return self.rng.choice([math.nan, math.inf, -math.inf, -math.nan])

    # -- what editors send ---------------------------------------------------------------

    def _update(self) -> tuple[bytes | str, ...]:
        return (sync_frame(2, self._edit()),)

    def _step2(self) -> tuple[bytes | str, ...]:
        return (sync_frame(1, self._edit()),)

    def _step1(self) -> tuple[bytes | str, ...]:
        choice = self.rng.randrange(3)
        if choice == 0:
            state = self.editor.get_state()
        elif choice == 1:
            state = b"\x00"
        else:
            pairs = [(self._client(), self.rng.randrange(10**6)) for _ in range(3)]
            state = var_uint(len(pairs)) + b"".join(var_uint(c) + var_uint(k) for c, k in pairs)
        return (sync_frame(0, state),)

    def _awareness(self) -> tuple[bytes | str, ...]:
        state = f'{{"user": {{"name": "fuzz", "color": "#{self.rng.randrange(2**24):06x}"}}}}'
        clock = self.rng.randrange(1, 10**6)
        return (awareness_frame([(self._client(), clock, state.encode())]),)

    def _query_awareness(self) -> tuple[bytes | str, ...]:
        return (bytes([QUERY_AWARENESS]),)

    def _auth(self) -> tuple[bytes | str, ...]:
        return (b"\x02\x00" + var_string("permission denied"),)

    # -- updates that decode, whose content is the question ------------------------------

    def _bit_flip(self) -> tuple[bytes | str, ...]:
        flipped = bytearray(self._some_update())
        for _ in range(self.rng.randint(1, 3)):
            bit = self.rng.randrange(len(flipped) * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
        return (sync_frame(2, bytes(flipped)),)

    def _poison(self) -> tuple[bytes | str, ...]:
        poison = self.rng.choice(self.poisons)
        return (*(sync_frame(2, u) for u in poison.base), sync_frame(2, poison.update))

    def _nul_string(self) -> tuple[bytes | str, ...]:
        text = self.rng.choice(["a\x00b", "\x00", "name\x00"])

        def change(doc: pycrdt.Doc[Any]) -> None:
            meta = doc.get(document.META, type=pycrdt.Map)
            tracks = doc.get(document.TRACKS, type=pycrdt.Map)
            match self.rng.randrange(5):
                case 0:
                    meta["name"] = text
                case 1:
                    tracks[f"t{self._client()}"] = pycrdt.Map({"name": text, "volume_db": 0.0})
                case 2:
                    meta[text] = 1.0
                case 3:
                    meta["notes"] = pycrdt.Text(text)
                case _:
                    meta["tags"] = ["ok", {"nested": [text]}]

        return (sync_frame(2, self._throwaway(change)),)

    def _non_finite(self) -> tuple[bytes | str, ...]:
        number = self._number()

        def change(doc: pycrdt.Doc[Any]) -> None:
            meta = doc.get(document.META, type=pycrdt.Map)
            tracks = doc.get(document.TRACKS, type=pycrdt.Map)
            match self.rng.randrange(4):
                case 0:
                    meta["tempo"] = number
                case 1:
                    tracks[f"t{self._client()}"] = pycrdt.Map({"name": "x", "volume_db": number})
                case 2:
                    notes = pycrdt.Array([pycrdt.Map({"pitch": number, "start": 0.0})])
                    tracks[f"t{self._client()}"] = pycrdt.Map({"name": "n", "notes": notes})
                case _:
                    meta["automation"] = [[0.0, number]]  # lists: a dict's order is random

        return (sync_frame(2, self._throwaway(change)),)

    def _crafted_item(self) -> tuple[bytes | str, ...]:
        """One hand-encoded item: contents the document layout never uses, and values
        hidden where a pycrdt editor would not put them."""
        nan_bits = self.rng.choice(["7ff8000000000000", "7ff0000000000001", "fff8000000000000"])
        contents: list[tuple[int, bytes]] = [
            (2, var_uint(1) + var_string(self.rng.choice(["NaN", "1e999", '"a\\u0000b"']))),
            (3, var_bytes(self.rng.randbytes(8))),  # binary
            (4, var_string("a\x00b")),  # a string item in a map
            (5, var_string('{"x": 1}')),  # embed
            (6, var_string("bold") + var_string("true")),  # format
            (8, var_uint(1) + b"\x7b" + bytes.fromhex(nan_bits)),  # float64 NaN payloads
            (8, var_uint(1) + b"\x7c" + struct.pack(">f", math.inf)),  # float32 infinity
            (8, var_uint(1) + b"\x76" + var_uint(1) + var_string("k\x00") + b"\x7e"),
            (8, var_uint(1) + b"\x7a" + struct.pack(">q", -(2**63))),  # bigint
            (9, var_string(f"sub-{self._client()}") + b"\x76" + var_uint(0)),  # a subdocument
        ]
        ref, content = self.rng.choice(contents)
        key = self.rng.choice(["tempo", "name", "k\x00"])
        return (sync_frame(2, item_update(self._client(), key, ref, content)),)

    def _wrong_root_kind(self) -> tuple[bytes | str, ...]:
        """The server's root names used as other kinds of shared types."""
        doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=self._client())  # no roots declared
        kind = self.rng.randrange(4)

        def change() -> None:
            match kind:
                case 0:
                    doc.get(document.META, type=pycrdt.Array).append(1.0)
                case 1:
                    doc.get(document.TRACKS, type=pycrdt.Text).insert(0, "x")
                case 2:
                    doc.get(document.TRACK_ORDER, type=pycrdt.Map)["k"] = 1.0
                case _:
                    doc.get(document.SECTIONS, type=pycrdt.Map)["k"] = pycrdt.Array([1.0])

        return (sync_frame(2, _captured(doc, change)[-1]),)

    def _deep_any(self) -> tuple[bytes | str, ...]:
        depth = self.rng.choice([200, 2_000, 20_000, 30_000])
        value = b"\x75\x01" * depth + b"\x7d\x01"  # [[[ ... 1 ... ]]]
        return (sync_frame(2, item_update(self._client(), "tempo", 8, var_uint(1) + value)),)

    def _deep_types(self) -> tuple[bytes | str, ...]:
        depth = self.rng.choice([100, 1_100, 5_000])
        return (sync_frame(2, nested_maps_update(self._client(), depth)),)

    # -- frames that break the protocol --------------------------------------------------

    def _truncated_varint(self) -> tuple[bytes | str, ...]:
        fixed = [b"\x80", b"\xff\xff", b"\x00\x80", b"\x00\x02\x80", b"\x00\x02\xff\xff\xff"]
        if self.rng.random() < 0.5:
            return (self.rng.choice(fixed),)
        frame = sync_frame(2, self._some_update())
        return (frame[: self.rng.randrange(1, len(frame))],)

    def _wrong_length(self) -> tuple[bytes | str, ...]:
        update = self._some_update()
        declared = max(0, len(update) + self.rng.choice([-3, -1, 1, 2, 50]))
        return (b"\x00" + var_uint(self.rng.randrange(3)) + var_uint(declared) + update,)

    def _huge_length(self) -> tuple[bytes | str, ...]:
        huge = self.rng.choice([2**31, 2**32 + 1, 2**53 - 1])
        frames = [
            b"\x00\x02" + var_uint(huge) + b"\x01\x00",
            b"\x00\x02" + b"\xff" * 10 + b"\x01",  # beyond 2^53
            b"\x01" + var_uint(huge) + b"\x01",
            b"\x01" + var_bytes(var_uint(huge) + b"\x01\x01\x00"),  # awareness count
            sync_frame(0, var_uint(huge) + b"\x01\x01"),  # state vector count
        ]
        return (self.rng.choice(frames),)

    def _bad_state_vector(self) -> tuple[bytes | str, ...]:
        state = self.rng.choice([b"", b"\x05\x01", b"\x01\x80", self.rng.randbytes(6)])
        return (sync_frame(0, state),)

    def _awareness_bad_json(self) -> tuple[bytes | str, ...]:
        state = self.rng.choice(
            [
                b"{",
                b"not json",
                b'{"a": NaN}',
                b"Infinity",
                b"\xff\xfe",  # not UTF-8
                b"[" * 50_000,  # nested deeper than any parser's recursion
                b'{"a": "\\ud800"}',
            ]
        )
        return (awareness_frame([(self._client(), 1, state)]),)

    def _unknown_type(self) -> tuple[bytes | str, ...]:
        if self.rng.random() < 0.2:  # an auth message of a subtype y-protocols lacks
            return (b"\x02" + var_uint(self.rng.randrange(1, 300)) + var_string("x"),)
        kind = self.rng.choice([4, 5, 17, 127, 128, 2**20, 2**53 - 1])
        return (var_uint(kind) + self.rng.randbytes(self.rng.randrange(8)),)

    def _unknown_sync_subtype(self) -> tuple[bytes | str, ...]:
        subtype = self.rng.choice([3, 4, 100, 2**30])
        return (sync_frame(subtype, self.rng.randbytes(4)),)

    def _random_bytes(self) -> tuple[bytes | str, ...]:
        return (self.rng.randbytes(self.rng.randrange(1, 64)),)

    def _empty(self) -> tuple[bytes | str, ...]:
        return (b"",)

    def _text(self) -> tuple[bytes | str, ...]:
        return (self.rng.choice(["hello", "\x00\x02\x01\x00", "{}"]),)

    def _oversize(self) -> tuple[bytes | str, ...]:
        size = self.max_message_bytes + self.rng.randrange(1, 100)
        return (b"\x00\x02" + var_uint(size) + bytes(size),)


def _captured(doc: pycrdt.Doc[Any], change: Callable[[], None]) -> list[bytes]:
    """The updates ``change`` makes to ``doc``. The observer is removed afterwards: a
    document whose observer is never removed is never freed (about 200 KB per fork of
    the editor, so a long campaign's driver grew by gigabytes, 2026-12-04)."""
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    try:
        change()
    finally:
        doc.unobserve(subscription)
    return updates
