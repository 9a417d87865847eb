"""A document built from stored updates, leaving out those that cannot be applied.

The log holds whatever was appended before the live path checked updates by applying
them: an update that decodes but that Yjs refuses on top of the document it targets
(a "poison" update) stays there for good. Loading a room, or a projection's document,
merges a stream's updates and applies them at once; when that fails, :func:`salvage`
finds the updates that fail and builds the document without them.

A failed ``apply_update`` may already have integrated part of the update into the
document, so after each failure the document is built again from the last state that
was known to be good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pycrdt


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
