"""The derived state cache: rebuildable, never part of the log."""

from __future__ import annotations

from events.postgres.connection import Database
from events.store import CachedState


class StateCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self, stream_id: str) -> CachedState | None:
        rows = await self._db.fetch(
            "select version, position, state from state_cache where stream_id = $1", stream_id
        )
        if not rows:
            return None
        row = rows[0]
        return CachedState(stream_id, row["version"], row["position"], row["state"])

    async def save(self, cached: CachedState) -> None:
        """Keep the newest state per stream (an older one never replaces a newer one)."""
        await self._db.fetch(
            "insert into state_cache (stream_id, version, position, state)"
            " values ($1, $2, $3, $4) on conflict (stream_id) do update"
            " set version = excluded.version, position = excluded.position,"
            " state = excluded.state, saved_at = now()"
            " where state_cache.version < excluded.version",
            cached.stream_id,
            cached.version,
            cached.position,
            cached.state,
        )

    async def clear(self) -> None:
        await self._db.fetch("truncate state_cache")
