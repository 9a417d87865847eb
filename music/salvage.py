"""A document built from stored updates, leaving out those that cannot be applied.

The log holds whatever was appended before the live path checked updates by applying
them: an update that decodes but that Yjs refuses on top of the document it targets
(a "poison" update) stays there for good. Loading a room, or a projection's document,
merges a stream's updates and applies them at once; when that fails, :func:`salvage`
finds the updates that fail and builds the document without them.

:func:`load` reads a stream's stored updates batch by batch and salvages each on top of
the state before it; what is done with an update left out is the caller's: the room
logs and counts it, a projection's document already set it aside.

A failed ``apply_update`` may already have integrated part of the update into the
document, so after each failure the document is built again from the last state that
was known to be good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import pycrdt

from music.updates import EMPTY_UPDATE


def apply_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by pycrdt applying or merging updates, means the update
    cannot be applied (as opposed to, say, a cancellation)."""
    # pycrdt's Rust code panicking surfaces as pyo3's PanicException, a BaseException.
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


@dataclass(slots=True)
class Salvaged:
    #: the document's state as one update (empty document: an empty update)
    state: bytes
    #: index into the updates given, and why it could not be applied
    refused: list[tuple[int, str]] = field(default_factory=list)


def salvage(updates: Sequence[bytes], base: bytes | None = None) -> Salvaged:
    """``base`` (a state known to apply) plus every update of ``updates`` that can be
    applied, in order; the others are named in ``refused``.

    Parts of the list are applied merged, halved around failures: a list with a few
    bad updates costs a few dozen applies, not one per update.
    """
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if base:
        doc.apply_update(base)
    good = base
    refused: list[tuple[int, str]] = []

    def attempt(lo: int, hi: int) -> None:
        nonlocal doc, good
        part = updates[lo:hi]
        try:
            doc.apply_update(part[0] if len(part) == 1 else pycrdt.merge_updates(*part))
        except BaseException as exc:
            if not apply_error(exc):
                raise
            doc = pycrdt.Doc()
            if good:
                doc.apply_update(good)
            if hi - lo == 1:
                refused.append((lo, f"{type(exc).__name__}: {exc}"))
                return
            middle = (lo + hi) // 2
            attempt(lo, middle)
            attempt(middle, hi)
            return
        good = doc.get_update()

    if updates:
        attempt(0, len(updates))
    return Salvaged(good or doc.get_update(), refused)


class StoredUpdate(Protocol):
    """An update as read from the log (``events.store.PayloadRecord`` is one)."""

    @property
    def version(self) -> int: ...

    @property
    def position(self) -> int: ...

    @property
    def payload(self) -> bytes | None: ...


R = TypeVar("R", bound=StoredUpdate)


@dataclass(slots=True)
class Loaded(Generic[R]):
    #: ``base`` plus every update that could be applied; None when there was neither
    state: bytes | None
    #: stream version and log position of the last record read (those given if none)
    version: int
    position: int
    #: the records whose update was left out, and why
    refused: list[tuple[R, str]] = field(default_factory=list)


async def load(
    read: Callable[[int], Awaitable[Sequence[R]]],
    *,
    base: bytes | None = None,
    version: int = 0,
    position: int = 0,
    batch: int,
    keep: Callable[[R], bool] = lambda _: True,
) -> Loaded[R]:
    """``base`` (the state as of ``version``) plus the updates of every record that
    ``read(after_version)`` returns (up to ``batch`` at a time, in version order) and
    ``keep`` accepts; an update the document refuses is left out and named in
    ``refused``. Each batch is merged and applied at once unless it holds a refused one.
    """
    loaded: Loaded[R] = Loaded(base, version, position)
    while True:
        records = await read(loaded.version)
        if not records:
            return loaded
        kept = [r for r in records if r.payload and r.payload != EMPTY_UPDATE and keep(r)]
        if kept:
            salvaged = salvage([r.payload for r in kept if r.payload], loaded.state)
            loaded.state = salvaged.state
            loaded.refused += [(kept[index], reason) for index, reason in salvaged.refused]
        loaded.version, loaded.position = records[-1].version, records[-1].position
        if len(records) < batch:
            return loaded
