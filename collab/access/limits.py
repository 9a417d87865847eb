"""Rate limits per principal and per client address, with the ``limits`` library.

Four budgets (``collab.runtime.config.RateSettings``), each a ``limits`` rate
(``60/minute``, ``200/second``...):

- ``connections``: socket opens, per address and, once the token is read, per principal;
- ``http_writes``: unsafe HTTP requests (POST, DELETE...), per address and per principal;
- ``updates``: frames a principal sends on its sockets, counted together;
- ``update_bytes``: the bytes of those frames.

Fixed windows: one counter per key and window, the cheapest check ``limits`` has, which
the live path pays once per frame. Counters are kept in memory (one node), or in Redis
when ``storage`` names one (``async+redis://host:6379``), shared by every node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from collab.runtime.config import RateSettings

Budget = Literal["connections", "http_writes", "updates", "update_bytes"]
BUDGETS: Final[tuple[Budget, ...]] = ("connections", "http_writes", "updates", "update_bytes")


@dataclass(frozen=True, slots=True)
class Exceeded:
    """A refused hit: which budget, its rate, and when to try again."""

    budget: Budget
    rate: str
    retry_after: float

    @property
    def message(self) -> str:
        return f"rate limit exceeded: {self.budget.replace('_', ' ')} over {self.rate}"


class RateLimits:
    def __init__(self, settings: RateSettings) -> None:
        self._items: dict[Budget, RateLimitItem] = {}
        self._rates: dict[Budget, str] = {}
        for budget in BUDGETS:
            text = getattr(settings, budget)
            try:
                self._items[budget] = parse(text)
            except ValueError:
                raise ValueError(
                    f"rate limit {budget}: {text!r} is not a rate such as 60/minute"
                ) from None
            self._rates[budget] = text
        url = settings.storage
        # the asyncio flavour of each storage (async+memory://, async+redis://...)
        storage = storage_from_string(url if url.startswith("async+") else f"async+{url}")
        if not isinstance(storage, Storage):
            raise TypeError(f"rate limit storage {url!r} has no asyncio flavour")
        self._limiter = FixedWindowRateLimiter(storage)

    async def hit(self, budget: Budget, *keys: str, cost: int = 1) -> Exceeded | None:
        """Count ``cost`` against each key's budget; the first key over it, or None.

        Each key is counted on its own (an address and a principal), so a principal on
        many addresses and an address with many principals are both held back.
        """
        item = self._items[budget]
        for key in keys:
            if not await self._limiter.hit(item, budget, key, cost=cost):
                stats = await self._limiter.get_window_stats(item, budget, key)
                retry = max(0.0, stats.reset_time - time.time())
                return Exceeded(budget, self._rates[budget], retry)
        return None
