"""Rate limits per principal and per client address, with the ``limits`` library.

Four budgets (``collab.runtime.config.RateSettings``), each a ``limits`` rate
(``60/minute``, ``200/second``...):

- ``connections``: socket opens;
- ``http_writes``: unsafe HTTP requests (POST, DELETE...);
- ``updates``: frames sent on sockets, all of one principal's sockets together;
- ``update_bytes``: the bytes of those frames.

Each is counted per principal, or per client address when authentication is off (the
callers (``collab.live.ws``, ``collab.http.kit``) choose the key).

Fixed windows: one counter per key and window, the cheapest kind, which the live path
pays once per frame. ``limits`` parses the rates; the counters are kept in this process
(:class:`_Windows`, see why there), or in a ``limits`` storage that ``storage`` names
(Redis, to share them between nodes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from collab.access.principal import Principal
from collab.runtime.config import RateSettings

Budget = Literal["connections", "http_writes", "updates", "update_bytes"]
BUDGETS: Final[tuple[Budget, ...]] = ("connections", "http_writes", "updates", "update_bytes")


def budget_key(principal: Principal | None, address: str | None) -> str:
    """Whose budget a request or socket counts against: its principal's; its address's
    without authentication. Behind a proxy every user shares one address, so an address
    is not counted when there is a principal."""
    if principal is not None and principal.verified:
        return f"principal:{principal.actor}"
    return f"ip:{address or 'unknown'}"


@dataclass(frozen=True, slots=True)
class Exceeded:
    """A refused hit: which budget, its rate, and when to try again."""

    budget: Budget
    rate: str
    retry_after: float

    @property
    def message(self) -> str:
        return f"rate limit exceeded: {self.budget.replace('_', ' ')} over {self.rate}"


class _Windows:
    """Fixed windows kept in this process, for one budget: O(1) a hit.

    ``limits``' own memory storage sweeps every key it holds on each hit (a task it
    schedules per increment): measured on this machine (2026-12-03) 25 us a hit with 10
    keys and 2.2 ms with 20,000, and a client can add keys (addresses, principals).
    Here all keys share the window boundaries, so a new window clears them at once.
    """

    def __init__(self, item: RateLimitItem) -> None:
        self._amount = item.amount
        self._seconds = float(item.get_expiry())
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str, cost: int) -> float | None:
        """Count ``cost``; None when within the budget, else seconds to the next window."""
        now = time.monotonic()
        window = int(now // self._seconds)
        if window != self._window:
            self._window = window
            self._counts.clear()
        count = self._counts.get(key, 0) + cost
        if count > self._amount:
            return (window + 1) * self._seconds - now
        self._counts[key] = count
        return None


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
        self._local: dict[Budget, _Windows] | None = None
        self._limiter: FixedWindowRateLimiter | None = None
        if url.startswith(("memory://", "async+memory://")):
            self._local = {budget: _Windows(item) for budget, item in self._items.items()}
            return
        # the asyncio flavour of each storage (async+redis://...); for Redis, through
        # redis-py, the client the fan-out uses too (limits defaults to coredis)
        url = url if url.startswith("async+") else f"async+{url}"
        options = {"implementation": "redispy"} if url.startswith("async+redis") else {}
        storage = storage_from_string(url, **options)
        if not isinstance(storage, Storage):
            raise TypeError(f"rate limit storage {url!r} has no asyncio flavour")
        self._limiter = FixedWindowRateLimiter(storage)

    async def close(self) -> None:
        """Close the storage's connections (Redis). ``limits`` offers no close of its
        own: its redis-py bridge keeps the client as ``bridge.storage``."""
        if self._limiter is None:
            return
        bridge = getattr(self._limiter.storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()

    async def hit(self, budget: Budget, *keys: str, cost: int = 1) -> Exceeded | None:
        """Count ``cost`` against each key's budget; the first key over it, or None.

        Each key is counted on its own.
        """
        if self._local is not None:
            windows = self._local[budget]
            for key in keys:
                retry = windows.hit(key, cost)
                if retry is not None:
                    return Exceeded(budget, self._rates[budget], retry)
            return None
        assert self._limiter is not None  # noqa: S101 - one of the two is set
        item = self._items[budget]
        for key in keys:
            if not await self._limiter.hit(item, budget, key, cost=cost):
                stats = await self._limiter.get_window_stats(item, budget, key)
                retry = max(0.0, stats.reset_time - time.time())
                return Exceeded(budget, self._rates[budget], retry)
        return None
