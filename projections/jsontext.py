"""JSON text of read-model values, for ``jsonb`` columns.

A fold writes several JSON texts per event (change records, summary, patch) and a
project's whole document per batch; with the standard library's encoder these cost
more than applying the update. orjson writes the same JSON about ten times faster.
Where they differ, orjson is what PostgreSQL needs: a NaN or infinity (which an editor
can put into a Yjs document) becomes ``null`` instead of ``NaN``, which ``jsonb``
refuses and which would stop the projection at that event for good. For the same
reason a value JSON has no form for (bytes, an XML type an editor inserted) is written
as ``null``, and a NUL character in a string (which Yjs stores, and which neither
``jsonb`` nor a text column accepts: "\\u0000 cannot be converted to text") as U+FFFD,
the replacement character; :func:`clean` does the same for text columns.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

#: the escape of a NUL character in JSON text: after an even number of backslashes (after
#: an odd number, the backslash of ``\u0000`` is itself escaped: that is text)
_NUL_ESCAPE: Final = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (non-ASCII characters kept as they are)."""
    try:
        text = orjson.dumps(value, default=_null).decode()
    except TypeError:
        # Integers beyond 64 bits (free JSON of services): jsonb keeps them exactly.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_null)
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    return text


def clean(text: str) -> str:
    """``text`` as a text column holds it: NUL characters become U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _null(_value: Any) -> None:
    return None
