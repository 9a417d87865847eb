"""Long loops that run on the server's event loop give way at regular intervals.

The live path shares one event loop with the projections and the store's reads. A
batch of 5,000 events decoded or folded without a pause holds every WebSocket of the
process for as long as it takes (a projects fold costs ~120 µs per event: 0.6 s), so
such loops call :meth:`Pacer.pause` once per item; it lets the loop run whatever is
ready once every ``slice`` seconds of work.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

#: seconds of work between two pauses: the longest a fold delays a live update
SLICE: Final = 0.002


class Pacer:
    __slots__ = ("_since", "_slice")

    def __init__(self, slice_seconds: float = SLICE) -> None:
        self._slice = slice_seconds
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Give way if this slice of work is used up (cheap otherwise)."""
        if time.perf_counter() - self._since >= self._slice:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
