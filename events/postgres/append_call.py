"""The server-side function ``collab_append``: checking requests, its arguments, its rows.

See ``migrations/0001_event_log.sql`` for why positions are commit-ordered and dense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

import asyncpg

from events.errors import DuplicateEvent, EventStoreError, WrongExpectedVersion
from events.records import PreparedEvent
from events.store import ANY, NO_STREAM, AppendRequest, AppendResult, describe

MAX_STREAM_ID_LENGTH: Final = 200
QUERY: Final = "select * from collab_append($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"


class StaleLineage(EventStoreError):
    """A request was prepared against a version tip that moved on (retried, never shown)."""

    def __init__(self, stream_id: str, tip: str | None) -> None:
        self.stream_id = stream_id
        self.tip = tip
        super().__init__(f"stream {stream_id!r}: its version lineage moved on; retry")


def check_request(request: AppendRequest) -> None:
    stream_id = request.stream_id
    if not stream_id or len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise ValueError(f"stream id must be 1-{MAX_STREAM_ID_LENGTH} characters")
    if not request.events:
        raise ValueError(f"append to {stream_id!r}: no events given")
    expected = request.expected_version
    if isinstance(expected, int) and expected < 0:
        raise ValueError(f"expected version must be >= 0, got {expected}")


def check_unique_ids(
    requests: Sequence[AppendRequest], prepared: Sequence[Sequence[PreparedEvent]]
) -> None:
    seen: set[UUID] = set()
    for request, events in zip(requests, prepared, strict=True):
        for event in events:
            if event.event_id in seen:
                raise DuplicateEvent(
                    event.event_id,
                    request.stream_id,
                    "the same event id appears twice in one append",
                )
            seen.add(event.event_id)


def append_arguments(
    requests: Sequence[AppendRequest],
    prepared: Sequence[Sequence[PreparedEvent]],
    tips: Sequence[tuple[str | None, str | None]],
) -> list[Any]:
    """The parameters of ``collab_append``: per-request arrays, then per-event arrays."""
    streams = [request.stream_id for request in requests]
    expected = [
        None if version is ANY else 0 if version is NO_STREAM else version
        for version in (request.expected_version for request in requests)
    ]
    per_event = [
        (
            index,
            event.event_id,
            event.event_type,
            event.schema_version,
            event.data_json,
            event.payload,
            event.metadata_json,
            event.daid,
            event.parents_json,
            event.content_hash,
        )
        for index, events in enumerate(prepared, start=1)
        for event in events
    ]
    return [
        streams,
        expected,
        *(list(column) for column in zip(*per_event, strict=True)),
        [base for base, _made in tips],
        [made for _base, made in tips],
    ]


def append_outcome(request: AppendRequest, row: asyncpg.Record) -> AppendResult | EventStoreError:
    status = row["status"]
    if status in ("ok", "existing"):
        return AppendResult(
            request.stream_id,
            tuple(row["versions"]),
            tuple(row["positions"]),
            tuple(row["daids"]),
        )
    if status == "wrong_version":
        return WrongExpectedVersion(
            request.stream_id, describe(request.expected_version), row["current_version"]
        )
    if status == "stale_lineage":
        return StaleLineage(request.stream_id, row["detail"])
    if status == "duplicate":
        event_id, _, reason = str(row["detail"]).partition(": ")
        return DuplicateEvent(UUID(event_id), request.stream_id, reason)
    raise EventStoreError(f"unexpected append status {status!r}")  # pragma: no cover
