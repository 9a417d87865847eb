"""Recomputing the log's hashes and links from its raw rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from events.integrity import Break, ChainVerifier
from events.postgres.connection import Database
from events.postgres.rows import EVENT_COLUMNS, stored
from events.records import StoredEvent


@dataclass(frozen=True, slots=True)
class VerifyReport:
    events: int
    streams: int
    last_position: int
    first_break: Break | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


async def verify(
    db: Database,
    stream_id: str | None = None,
    *,
    batch_size: int = 5000,
    observe: Callable[[StoredEvent], None] | None = None,
) -> VerifyReport:
    """Recompute every hash and link from the raw rows (see ``events.integrity``).

    ``observe`` sees every event read, in position order (another check can run in
    the same pass)."""
    verifier = ChainVerifier(check_positions=stream_id is None)
    last = 0
    query = (
        f"select {EVENT_COLUMNS} from events where position > $1"
        + (" and stream_id = $3" if stream_id is not None else "")
        + " order by position limit $2"
    )
    while True:
        args: list[Any] = [last, batch_size]
        if stream_id is not None:
            args.append(stream_id)
        rows = await db.fetch(query, *args)
        for row in rows:
            event = stored(row)
            verifier.feed(event)
            if observe is not None:
                observe(event)
            last = row["position"]
        if verifier.first_break is not None or len(rows) < batch_size:
            break
    heads_query = "select stream_id, version, last_hash from streams where version > 0"
    if stream_id is not None:
        head_rows = await db.fetch(heads_query + " and stream_id = $1", stream_id)
    else:
        head_rows = await db.fetch(heads_query)
    heads = {row["stream_id"]: (row["version"], bytes(row["last_hash"])) for row in head_rows}
    log_head = (
        int(await db.fetchval("select last_position from event_log_head"))
        if stream_id is None
        else None
    )
    first_break = verifier.finish(heads, log_head)
    return VerifyReport(verifier.events, verifier.streams, verifier.last_position, first_break)
