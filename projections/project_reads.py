"""Reading the ``projects`` read models: lists, the project view, history, time travel.

Everything here reads tables written by :mod:`projections.projects` (and, for time
travel, the log after the nearest stored state). Pages use keyset cursors: opaque
strings the caller passes back unchanged.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from events.models import project_stream
from events.sql import Row, Sql
from events.store import EventStore
from music import document
from music.changes import DocumentTracker, apply_patch
from music.summaries import merge, summarize
from projections import projects, quarantine
from projections.project_documents import replay


class BadCursor(ValueError):
    """A cursor that this server did not hand out."""


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        number = int(value)
    except (ValueError, UnicodeDecodeError):
        number = None
    if number is None or prefix != "v1":
        raise BadCursor(f"invalid cursor {cursor!r}")
    return number


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


# -- projects ---------------------------------------------------------------------------


async def list_projects(
    sql: Sql,
    *,
    name: str | None = None,
    member: str | None = None,
    updated_since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Projects, most recently changed first."""
    before = decode_cursor(cursor) if cursor else None
    rows = await sql.fetch(
        "select p.project_id, p.name, p.owner, p.created_at, p.updated_at, p.version,"
        " p.position, p.tempo, p.time_signature, p.key, p.sample_rate,"
        " (select count(*) from project_tracks t where t.project_id = p.project_id) as tracks"
        " from projects p"
        " where ($1::text is null or p.name ilike '%' || $1 || '%' escape '\\')"
        " and ($2::text is null or exists (select 1 from project_members m"
        "      where m.project_id = p.project_id and m.member = $2))"
        " and ($3::timestamptz is null or p.updated_at >= $3)"
        " and ($4::bigint is null or p.position < $4)"
        " order by p.position desc limit $5",
        _like_escape(name) if name is not None else None,
        member,
        updated_since,
        before,
        limit + 1,
    )
    items = [_project_summary(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["position"]) if len(rows) > limit else None
    return Page(items, next_cursor)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _identity(row: Row) -> dict[str, Any]:
    """The fields a project list item and the project view share."""
    return {
        "id": str(row["project_id"]),
        "name": row["name"],
        "owner": row["owner"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "version": row["version"],
        "position": row["position"],
    }


def _project_summary(row: Row) -> dict[str, Any]:
    return {
        **_identity(row),
        "tempo": row["tempo"],
        "time_signature": row["time_signature"],
        "key": row["key"],
        "sample_rate": row["sample_rate"],
        "track_count": row["tracks"],
    }


async def get_project(sql: Sql, project_id: str) -> dict[str, Any] | None:
    """The project view: meta, tracks in order (mixer, effects, clips), sections, members,
    snapshots, analysis counts, current version and position."""
    row = await sql.fetchrow(
        "select project_id, name, owner, created_at, updated_at, version, position,"
        " doc_version, document from projects where project_id = $1",
        project_id,
    )
    if row is None:
        return None
    doc = json.loads(row["document"])
    tracks = await sql.fetch(
        "select track_id, ordinal, name, kind, instrument, color, volume_db, pan, mute, solo,"
        " armed, clip_count, note_count, effect_count from project_tracks"
        " where project_id = $1 order by ordinal",
        project_id,
    )
    clips = await sql.fetch(
        "select track_id, clip_id, name, start_beats, length_beats, source, note_count"
        " from project_clips where project_id = $1 order by track_id, start_beats, clip_id",
        project_id,
    )
    effects = await sql.fetch(
        "select track_id, ordinal, effect_id, type, enabled, params from project_effects"
        " where project_id = $1 order by track_id, ordinal",
        project_id,
    )
    members = await sql.fetch(
        "select member, role, granted_at from project_members where project_id = $1"
        " order by member",
        project_id,
    )
    analyses = await sql.fetch(
        "select analysis_type, count, last_version from project_analyses"
        " where project_id = $1 order by analysis_type",
        project_id,
    )
    clips_of: dict[str, list[dict[str, Any]]] = {}
    for clip in clips:
        clips_of.setdefault(clip["track_id"], []).append(
            {
                "id": clip["clip_id"],
                "name": clip["name"],
                "start_beats": clip["start_beats"],
                "length_beats": clip["length_beats"],
                "source": clip["source"],
                "note_count": clip["note_count"],
            }
        )
    effects_of: dict[str, list[dict[str, Any]]] = {}
    for effect in effects:
        effects_of.setdefault(effect["track_id"], []).append(
            {
                "id": effect["effect_id"],
                "type": effect["type"],
                "enabled": effect["enabled"],
                "params": json.loads(effect["params"]),
            }
        )
    return {
        **_identity(row),
        "document_version": row["doc_version"],
        "meta": doc.get("meta", {}),
        "tracks": [
            {
                "id": t["track_id"],
                "name": t["name"],
                "kind": t["kind"],
                "instrument": t["instrument"],
                "color": t["color"],
                "mixer": {
                    "volume_db": t["volume_db"],
                    "pan": t["pan"],
                    "mute": t["mute"],
                    "solo": t["solo"],
                    "armed": t["armed"],
                },
                "effects": effects_of.get(t["track_id"], []),
                "clips": clips_of.get(t["track_id"], []),
                "clip_count": t["clip_count"],
                "note_count": t["note_count"],
            }
            for t in tracks
        ],
        "sections": doc.get("sections", []),
        "members": [
            {"user": m["member"], "role": m["role"], "granted_at": m["granted_at"].isoformat()}
            for m in members
        ],
        "snapshots": await snapshots(sql, project_id),
        "analyses": {a["analysis_type"]: a["count"] for a in analyses},
    }


async def project_version(sql: Sql, project_id: str) -> int | None:
    """The stream version the projection has folded for a project (None: unknown)."""
    value = await sql.fetchval("select version from projects where project_id = $1", project_id)
    return int(value) if value is not None else None


# -- snapshots --------------------------------------------------------------------------


async def snapshots(sql: Sql, project_id: str) -> list[dict[str, Any]]:
    rows = await sql.fetch(
        "select name, description, version, position, daid, actor, created_at"
        " from project_snapshots where project_id = $1 order by version, position",
        project_id,
    )
    return [_snapshot(row) for row in rows]


async def snapshot(sql: Sql, project_id: str, name: str) -> dict[str, Any] | None:
    row = await sql.fetchrow(
        "select name, description, version, position, daid, actor, created_at"
        " from project_snapshots where project_id = $1 and name = $2",
        project_id,
        name,
    )
    return _snapshot(row) if row is not None else None


def _snapshot(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "description": row["description"],
        "version": row["version"],
        "position": row["position"],
        "daid": row["daid"],
        "actor": row["actor"],
        "created_at": row["created_at"].isoformat(),
    }


# -- history ----------------------------------------------------------------------------

_HISTORY_COLUMNS = (
    "version, position, recorded_at, actor, agent_id, event_type, daid, changes, summary"
)


async def history(
    sql: Sql,
    project_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    group_window: timedelta | None = None,
) -> Page:
    """Newest first. With ``group_window``, consecutive document edits of one actor, each
    within the window of the next, are one entry (a fader drag is one line)."""
    before = decode_cursor(cursor) if cursor else None
    if group_window is None:
        rows = await _history_rows(sql, project_id, before, limit + 1)
        items = [_entry([row]) for row in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1]["version"]) if len(rows) > limit else None
        return Page(items, next_cursor)

    groups: list[list[Row]] = []  # newest group first; rows inside newest first
    chunk = max(100, limit * 4)
    exhausted = False
    while len(groups) <= limit and not exhausted:
        rows = await _history_rows(sql, project_id, before, chunk)
        exhausted = len(rows) < chunk
        for row in rows:
            if groups and _joins(groups[-1][-1], row, group_window):
                groups[-1].append(row)
            else:
                groups.append([row])
        if rows:
            before = rows[-1]["version"]
    # The last group may continue on the next page only if it is not complete yet:
    # with more than ``limit`` groups, every group up to ``limit`` is complete.
    items = [_entry(list(reversed(group))) for group in groups[:limit]]
    next_cursor = None
    if len(groups) > limit:
        next_cursor = encode_cursor(groups[limit - 1][-1]["version"])
    return Page(items, next_cursor)


async def _history_rows(sql: Sql, project_id: str, before: int | None, limit: int) -> list[Row]:
    return await sql.fetch(
        f"select {_HISTORY_COLUMNS} from project_history where project_id = $1"
        " and ($2::bigint is null or version < $2) order by version desc limit $3",
        project_id,
        before,
        limit,
    )


def _joins(newer: Row, older: Row, window: timedelta) -> bool:
    return bool(
        newer["event_type"] == older["event_type"] == "doc.updated"
        and newer["actor"] == older["actor"]
        and newer["recorded_at"] - older["recorded_at"] <= window
    )


def _entry(rows: list[Row]) -> dict[str, Any]:
    """One history entry from rows oldest first (one row unless grouped)."""
    last = rows[-1]
    if len(rows) == 1:
        summary = list(last["summary"])
    else:
        summary = summarize(merge(json.loads(row["changes"]) for row in rows)) or [
            "no visible change"
        ]
    entry: dict[str, Any] = {
        "version": last["version"],
        "position": last["position"],
        "recorded_at": last["recorded_at"].isoformat(),
        "actor": last["actor"],
        "agent_id": last["agent_id"],
        "event_type": last["event_type"],
        "daid": last["daid"],
        "summary": summary,
    }
    if len(rows) > 1:
        entry["grouped"] = {
            "count": len(rows),
            "from_version": rows[0]["version"],
            "started_at": rows[0]["recorded_at"].isoformat(),
            "daids": [row["daid"] for row in rows],
        }
    return entry


# -- time travel ------------------------------------------------------------------------


async def view_at(sql: Sql, project_id: str, version: int) -> dict[str, Any]:
    """The project's document as JSON as of stream version ``version``: the newest
    stored view at or before it, plus the patches of the versions after it. The
    projection must have folded ``version`` (the caller checks)."""
    state = await sql.fetchrow(
        "select version, document from project_states where project_id = $1 and version <= $2"
        " order by version desc limit 1",
        project_id,
        version,
    )
    view: dict[str, Any] = (
        json.loads(state["document"]) if state else document.to_json(document.new_document())
    )
    rows = await sql.fetch(
        "select patch from project_history where project_id = $1 and version > $2"
        " and version <= $3 and patch is not null order by version",
        project_id,
        int(state["version"]) if state else 0,
        version,
    )
    for row in rows:
        apply_patch(view, json.loads(row["patch"]))
    return view


# -- the Yjs document at a version -------------------------------------------------


async def document_at(
    store: EventStore, sql: Sql, project_id: str, version: int
) -> DocumentTracker:
    """The project's Yjs document as of stream version ``version`` (the caller checks
    that the version exists): the newest stored state at or before it, plus the
    document events after that state from the log, without those the projection set
    aside. Rollback needs the shared types; for JSON, :func:`view_at` is much cheaper
    on long projects."""
    state = await sql.fetchrow(
        "select version, state from project_states where project_id = $1 and version <= $2"
        " order by version desc limit 1",
        project_id,
        version,
    )
    return await replay(
        store,
        project_id,
        state=bytes(state["state"]) if state else None,
        after_version=int(state["version"]) if state else 0,
        to_version=version,
        skip=await quarantine.positions(sql, projects.NAME, project_stream(project_id)),
    )
