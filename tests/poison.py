"""Poison updates: Yjs updates that decode but cannot be applied to the document they target.

A poison update is found the way an attacker or a buggy client finds one: flip single bits
of a real update (seeded, so every run finds the same one) until the result still decodes
(``pycrdt.get_state`` accepts it) but ``Doc.apply_update`` refuses it on top of the state
the earlier updates built.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pycrdt

from music import document


@dataclass(frozen=True)
class Poison:
    #: the document's state the search started from (a room's or a log's)
    start: bytes
    #: updates that build the state the poison is refused on (send these first)
    base: tuple[bytes, ...]
    #: decodes as a Yjs update, but applying it on top of ``base`` raises
    update: bytes
    #: the update that ``update`` was flipped from
    original: bytes


def _decodes(update: bytes) -> bool:
    try:
        pycrdt.get_state(update)
    except Exception:
        return False
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        return False
    return True


def applies(start: bytes, base: tuple[bytes, ...], update: bytes) -> bool:
    """Whether ``update`` applies to a document built from ``start`` and ``base``."""
    doc = document.new_document()
    doc.apply_update(start)
    for earlier in base:
        doc.apply_update(earlier)
    try:
        doc.apply_update(update)
    except Exception:
        return False
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        return False
    return True


def _editing_session(client_id: int) -> list[bytes]:
    """A small DAW edit: meta, then a track with a clip and a note (nested shared types)."""
    doc = pycrdt.Doc(client_id=client_id)
    meta = doc.get("meta", type=pycrdt.Map)
    tracks = doc.get("tracks", type=pycrdt.Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    meta["name"] = "Song"
    meta["tempo"] = 120.0
    tracks["t1"] = pycrdt.Map(
        {
            "name": "Drums",
            "volume_db": 0.0,
            "clips": pycrdt.Map(
                {"c1": pycrdt.Map({"notes": pycrdt.Array([pycrdt.Map({"pitch": 60})])})}
            ),
        }
    )
    tracks["t1"]["name"] = "Bass"
    return updates


def find_poison(seed: int = 1, start: bytes = b"\x00\x00") -> Poison:
    """The first update (in seeded bit order) that decodes but does not apply.

    Whether an update applies depends on the document it meets: pass the state of the
    room or log it will be sent to as ``start`` (a synced client's ``doc.get_update()``,
    or a replay of the log), then send ``base`` and ``update`` there.
    """
    rng = random.Random(seed)
    updates = _editing_session(client_id=rng.randrange(1, 2**31))
    for index, original in enumerate(updates):
        base = tuple(updates[:index])
        bits = list(range(len(original) * 8))
        rng.shuffle(bits)
        for bit in bits:
            flipped = bytearray(original)
            flipped[bit // 8] ^= 1 << (bit % 8)
            candidate = bytes(flipped)
            if _decodes(candidate) and not applies(start, base, candidate):
                return Poison(start, base, candidate, original)
    raise AssertionError(f"no poison update found with seed {seed}")
