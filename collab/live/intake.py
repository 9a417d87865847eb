"""Which sockets stop being read first when updates wait for the database.

Overload costs latency before it costs connections (``collab.live.writer``): once the
writer is congested the server stops reading editors' frames. Not all at once: first
the **busiest** sockets, those whose recent reads are above the mean of the open
connections, so an editor who sends one change now and then keeps working while a
client that floods waits. If the wait still grows (the writer is *saturated*), every
writing socket pauses.

"Recent" is an exponentially decaying count of reads (time constant ``seconds``): a
paused socket's count decays, so the sockets take turns as the busiest rather than
one of them starving. No I/O; the socket loop asks and tells.
"""

from __future__ import annotations

import math
from typing import Final

#: seconds over which reads are weighed
RATE_SECONDS: Final = 2.0


class Reads:
    """One socket's recent reads."""

    __slots__ = ("at", "count")

    def __init__(self) -> None:
        self.count = 0.0
        self.at = 0.0


class Intake:
    def __init__(self, seconds: float = RATE_SECONDS) -> None:
        self._seconds = seconds
        #: every socket's recent reads together, decayed alike
        self._total = Reads()

    def read(self, reads: Reads, now: float) -> None:
        """A frame was read from the socket whose reads these are."""
        for tally in (reads, self._total):
            tally.count = self._decayed(tally, now) + 1.0
            tally.at = now

    def busiest(self, reads: Reads, now: float, sockets: int) -> bool:
        """Whether this socket read more than the mean of ``sockets`` lately."""
        return self._decayed(reads, now) * max(1, sockets) > self._decayed(self._total, now)

    def _decayed(self, tally: Reads, now: float) -> float:
        if tally.count == 0.0:
            return 0.0
        return tally.count * math.exp((tally.at - now) / self._seconds)
