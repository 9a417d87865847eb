"""Yjs v1 updates of a project document: the checks a stored update must pass.

Errors::

    MalformedUpdate          bytes that do not decode as a Yjs update (or state vector)
     +-- UnappliableUpdate   an update that decodes but cannot be applied to the document
     +-- UnsafeUpdateValue   an update writing a value the log or JSON cannot hold

pycrdt decodes updates; its errors (``ValueError`` and pyo3 panics) are translated here
so that callers only ever see the tree above.
"""

from __future__ import annotations

from typing import Final

import pycrdt

from music import update_values
from music.update_values import Extent

#: the largest client id an editor writes (JavaScript's largest safe integer)
MAX_CLIENT_ID: Final = 2**53 - 1
#: a Yjs v1 update that changes nothing (what editors send as an empty step 2)
EMPTY_UPDATE: Final = b"\x00\x00"


class MalformedUpdate(ValueError):
    pass


class UnappliableUpdate(MalformedUpdate):
    pass


class UnsafeUpdateValue(MalformedUpdate):
    pass


def check_update(update: bytes) -> Extent:
    """Raise MalformedUpdate unless ``update`` decodes as a Yjs v1 update the log can hold.

    Its values are walked first (UnsafeUpdateValue): besides NUL characters and
    non-finite numbers, that bounds the nesting of values, and yrs' decoder recurses
    into nested values until the process's stack overflows (a 30,000-deep array
    crashed the server). Returns what the update carries and refers to.
    """
    try:
        extent = update_values.check_values(update)
    except update_values.UnsafeValue as exc:
        raise UnsafeUpdateValue(f"update refused: {exc}") from None
    except update_values.Unreadable as exc:
        raise MalformedUpdate(f"update does not decode: {exc}") from None
    check_decodes(update)
    return extent


def check_decodes(update: bytes) -> None:
    """Raise MalformedUpdate unless pycrdt decodes ``update``, whatever its values.

    For updates already in the log: logs written before the values were checked hold
    NaNs and NULs that the read models show as null and U+FFFD.
    """
    try:
        pycrdt.get_state(update)
    except Exception as exc:  # noqa: BLE001 - pycrdt raises ValueError; pyo3 panics vary
        raise MalformedUpdate(f"update does not decode: {exc}") from None
    except BaseException as exc:
        # pyo3's PanicException derives from BaseException; let real interrupts through.
        if type(exc).__name__ != "PanicException":
            raise
        raise MalformedUpdate("update does not decode (decoder panicked)") from None


def update_author(update: bytes) -> int | None:
    """The Yjs client id that wrote ``update`` when exactly one did, else None.

    A v1 update opens with ``varUint(clients)`` then, per client, ``varUint(structs)
    varUint(client) ...``: three varints, no need to decode the rest again.
    """
    try:
        clients, _structs, client = update_values.leading_uints(update, 3)
    except update_values.Unreadable:
        return None
    # Yjs client ids are JavaScript safe integers; larger ones are not ids of an editor.
    return client if clients == 1 and client <= MAX_CLIENT_ID else None
