"""How far the projections are, seen from a process that reads their tables.

The runner may fold in another process (the server's projection worker, or a
``collab projections run`` elsewhere), so readers learn its progress from the
database: each projection's row in ``projection_checkpoints`` holds its position,
state, last error and failure count, and every move of a checkpoint is announced on
the ``collab_projections`` channel when its batch commits (migration 0007).

:meth:`ProjectionProgress.wait` gives read-your-writes: the API passes the position
an append returned and answers once every projection has folded it. Notifications
wake waiters at once; a lost one (the listening connection dropped) costs a re-read of
the rows, done on every reconnection and every ``poll_interval`` while someone waits.

The status also lists the events each projection set aside because they cannot be
folded (:mod:`projections.quarantine`): those do not make it unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast

import structlog

from events.errors import EventStoreError
from events.sql import Sql, SqlDatabase
from projections import quarantine
from projections.quarantine import Quarantined

log = structlog.get_logger("projections.progress")

CHANNEL: Final = "collab_projections"

State = Literal["starting", "running", "failing", "stopped", "rebuilding"]


class ProgressSource(SqlDatabase, Protocol):
    """What a reader of the progress needs: the tables, the head, the channel."""

    async def head_position(self) -> int: ...

    def notifications(self, channel: str) -> AsyncIterator[str | None]: ...


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    state: State
    position: int
    head: int
    error: str | None
    failures: int
    #: while it is folded by several processes (``rebuilding``): where each one is
    shares: tuple[int, ...] = ()
    #: how many events it set aside because they cannot be folded
    quarantined: int = 0
    #: the newest of those (at most ``quarantine.LISTED``), in position order
    quarantined_events: tuple[Quarantined, ...] = ()

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


_SHARES = (
    "select split_part(name, '#', 1) as of, array_agg(position order by"
    " split_part(split_part(name, '#', 2), '/', 1)::int) as positions"
    " from projection_checkpoints where name like '%#%'"
    " and split_part(name, '#', 1) = any($1::text[]) group by 1"
)


async def share_positions(sql: Sql, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """By projection name, where each process folding it in parallel is (checkpoint rows
    ``name#i/N``, in the order of i); projections folded by one process are left out."""
    return {
        str(row["of"]): tuple(int(p) for p in row["positions"])
        for row in await sql.fetch(_SHARES, list(names))
    }


_ROWS = (
    "select name, position, state, error, failures from projection_checkpoints"
    " where name = any($1::text[])"
)


class ProjectionProgress:
    """The checkpoints of the named projections, followed from the database."""

    def __init__(
        self, source: ProgressSource, names: Sequence[str], *, poll_interval: float = 1.0
    ) -> None:
        self._source = source
        self.names = list(names)
        self._poll = poll_interval
        self._positions = dict.fromkeys(self.names, 0)
        self._moved = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh(exact=True)
        self._task = asyncio.create_task(self._follow(), name="projection-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self, *, exact: bool = False) -> None:
        """Read every position from the table.

        Only forward, unless ``exact``: a notification handled while the query ran may
        be newer than its answer. The follower passes ``exact`` after a reconnection,
        when a checkpoint moved back by a rebuild may have gone unannounced.
        """
        rows = await self._source.queries.fetch(_ROWS, self.names)
        for row in rows:
            self._set(str(row["name"]), int(row["position"]), forward=not exact)

    def position(self, name: str | None = None) -> int:
        """The position every projection (or the named one) has folded, as last seen."""
        names = [name] if name else self.names
        return min((self._positions[n] for n in names), default=0)

    async def wait(self, position: int, within: float, name: str | None = None) -> bool:
        """True once the projections have folded ``position``; False after ``within`` s."""
        deadline = time.monotonic() + within
        while self.position(name) < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            moved = self._moved
            try:
                await asyncio.wait_for(moved.wait(), min(remaining, self._poll))
            except TimeoutError:
                with contextlib.suppress(EventStoreError):
                    await self.refresh()
        return True

    async def status(self) -> list[ProjectionStatus]:
        """Each projection's state as its runner last wrote it, with the log's head."""
        head = await self._source.head_position()
        rows = {
            str(row["name"]): row for row in await self._source.queries.fetch(_ROWS, self.names)
        }
        shares = await share_positions(self._source.queries, self.names)
        set_aside = await quarantine.listed(self._source.queries, self.names)
        result = []
        for name in self.names:
            row = rows.get(name)
            if row is None:
                result.append(ProjectionStatus(name, "starting", 0, head, None, 0))
                continue
            self._set(name, int(row["position"]), forward=True)
            quarantined, events = set_aside.get(name, (0, ()))
            result.append(
                ProjectionStatus(
                    name,
                    cast("State", row["state"]),
                    int(row["position"]),
                    head,
                    row["error"],
                    int(row["failures"]),
                    shares.get(name, ()),
                    quarantined,
                    events,
                )
            )
        return result

    def _set(self, name: str, position: int, *, forward: bool = False) -> None:
        known = self._positions.get(name)
        if known is None or known == position or (forward and position < known):
            return
        # Notifications come in commit order and are taken as they are: a rebuild
        # moves a checkpoint back to 0.
        self._positions[name] = position
        self._moved.set()
        self._moved = asyncio.Event()

    async def _follow(self) -> None:
        async for payload in self._source.notifications(CHANNEL):
            if payload is None:
                # (Re)connected: what happened meanwhile was not announced to us.
                with contextlib.suppress(EventStoreError):
                    await self.refresh(exact=True)
                continue
            name, _, position = payload.rpartition(":")
            try:
                self._set(name, int(position))
            except ValueError:
                log.warning("unreadable checkpoint notification", payload=payload)
