"""Events a projection cannot fold, set aside so that its fold goes on.

The log is append-only: an event the store accepted stays there for good, also when
no fold can handle it (a Yjs update that decodes but cannot be applied, a value a
column refuses). A read model that retried it forever would never move again, so
such an event is *quarantined*: a row in ``projection_quarantine`` (migration 0010)
names the projection, the event's position, stream and type, and why, written in the
transaction that moves the checkpoint past it. The read model simply lacks the event.

Two ways lead there:

* the runner (:func:`projections.fold.apply_batch`) narrows a batch that fails with
  an error :func:`unfoldable` accepts down to the events that fail alone, and records
  those instead of folding them;
* a fold that knows how to skip an event (the ``projects`` projection, for an update
  its document refuses) records it itself with :func:`record`, and folds the rest of it.

A rebuild deletes a projection's rows with its tables (:func:`clear`), and finds them
again. Whether the database is reachable is never a property of an event: an error
that says the database is away or refuses for reasons of its own (a constraint, a
lock, a full disk) is retried, as before, and never quarantined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from events.errors import EventStoreError, QueryFailed
from events.records import StoredEvent
from events.sql import Sql
from projections import jsontext

#: SQLSTATE classes that are about the values written: 22 data exception (a NUL in
#: text, a number out of range), 54 program limit exceeded (a value too large, nested
#: too deep). Any other refusal (a constraint, a serialization failure, a full disk, an
#: operator's intervention) is the database's, retried.
_DATA_CLASSES: Final = frozenset({"22", "54"})
#: exceptions that say the fold's code is wrong, not the event: every event would fail
_CODE_FAULTS: Final = (
    AttributeError,
    NameError,
    ImportError,
    AssertionError,
    NotImplementedError,
    SyntaxError,
    MemoryError,
)
#: how many of a projection's quarantined events status and /ready list (the newest)
LISTED: Final = 20
#: longest reason kept (an error message may quote a whole value)
_REASON_LIMIT: Final = 1000


def unfoldable(exc: BaseException) -> bool:
    """True when ``exc``, raised folding an event, says that event cannot be folded
    (folding it again would fail the same way); False when retrying may succeed or when
    the fault is not the event's."""
    if isinstance(exc, QueryFailed):
        return (exc.sqlstate or "")[:2] in _DATA_CLASSES
    if isinstance(exc, (EventStoreError, *_CODE_FAULTS)):
        return False
    # pycrdt's Rust code panicking on an input surfaces as pyo3's PanicException, a
    # BaseException of its own.
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def reason(exc: BaseException) -> str:
    """What is recorded of ``exc``: its type and message, cut short."""
    text = jsontext.clean(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def owner(name: str) -> str:
    """The projection a checkpoint name belongs to (``projects#1/2``, a share of a
    parallel fold, records its events under ``projects``)."""
    return name.partition("#")[0]


@dataclass(frozen=True, slots=True)
class Quarantined:
    position: int
    stream_id: str
    event_type: str
    reason: str
    at: datetime


async def record(tx: Sql, projection: str, event: StoredEvent, why: str) -> None:
    """Inside the fold's transaction: ``event`` is set aside by ``projection``."""
    await tx.execute(
        "insert into projection_quarantine (projection, position, stream_id, event_type,"
        " reason) values ($1, $2, $3, $4, $5) on conflict (projection, position) do update"
        " set reason = excluded.reason, quarantined_at = now()",
        owner(projection),
        event.position,
        event.stream_id,
        event.event_type,
        jsontext.clean(why),
    )


async def clear(tx: Sql, projection: str) -> None:
    """Inside the transaction that empties the read model: forget its quarantine."""
    await tx.execute("delete from projection_quarantine where projection = $1", owner(projection))


async def positions(sql: Sql, projection: str, stream_id: str) -> set[int]:
    """The positions of ``stream_id`` that ``projection`` has set aside."""
    rows = await sql.fetch(
        "select position from projection_quarantine where projection = $1 and stream_id = $2",
        owner(projection),
        stream_id,
    )
    return {int(row["position"]) for row in rows}


async def listed(
    sql: Sql, names: Sequence[str], limit: int = LISTED
) -> dict[str, tuple[int, tuple[Quarantined, ...]]]:
    """By projection: how many events it has set aside, and the newest ``limit`` of
    them in position order. Projections without any are left out."""
    rows = await sql.fetch(
        "select projection, position, stream_id, event_type, reason, quarantined_at, total"
        " from (select q.*, count(*) over w as total, row_number() over"
        " (w order by position desc) as newest from projection_quarantine q"
        " where projection = any($1::text[]) window w as (partition by projection)) q"
        " where newest <= $2 order by projection, position",
        list(names),
        limit,
    )
    found: dict[str, tuple[int, list[Quarantined]]] = {}
    for row in rows:
        _, events = found.setdefault(str(row["projection"]), (int(row["total"]), []))
        events.append(
            Quarantined(
                int(row["position"]),
                str(row["stream_id"]),
                str(row["event_type"]),
                str(row["reason"]),
                row["quarantined_at"],
            )
        )
    return {name: (total, tuple(events)) for name, (total, events) in found.items()}


async def counts(sql: Sql) -> dict[str, int]:
    """How many events each projection has set aside (for the metrics)."""
    rows = await sql.fetch(
        "select projection, count(*) as n from projection_quarantine group by projection"
    )
    return {str(row["projection"]): int(row["n"]) for row in rows}
