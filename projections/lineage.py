"""The ``lineage`` projection: the DAID graph, one node per event, one edge per parent.

A parent DAID that no event of this log carries (minted by another system) becomes
an *external* node, described from what its DAID says (agent, entity, time), so that
lineage queries show it instead of a dangling reference.

Each edge gets a relation naming why the child derives from the parent:

=====================  ==========================================================
``previous_version``   a version (``project.created``, ``doc.updated``,
                       ``project.rolled_back``) and the version before it
``restores``           a rollback and the version it restores
``analysed``           an analysis and the project version it analysed
``input``              an analysis and one of its declared inputs
``tags``               a snapshot and the version it tags
``version``            a provenance record and the project version it came from
``derived_from``       any other declared parent (provenance ``derived_from``)
=====================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from events import daid as daid_module
from events.errors import DaidError
from events.models import (
    VERSION_EVENTS,
    AnalysisRecorded,
    DocUpdated,
    MemberGranted,
    MemberRevoked,
    ProjectCreated,
    ProjectRolledBack,
    ProvenanceRecorded,
    SnapshotTagged,
    project_uuid,
)
from events.records import StoredEvent
from events.sql import Sql

NAME: Final = "lineage"

_ACTIVITIES: Final = {
    ProjectCreated.event_type: "create",
    DocUpdated.event_type: "edit",
    ProjectRolledBack.event_type: "rollback",
    SnapshotTagged.event_type: "tag",
    MemberGranted.event_type: "grant",
    MemberRevoked.event_type: "revoke",
}


def activity_of(event: StoredEvent) -> str:
    data = event.data
    if event.event_type == AnalysisRecorded.event_type:
        return str(data.get("analysis_type", "analysis"))
    if event.event_type == ProvenanceRecorded.event_type:
        return str(data.get("activity", "provenance"))
    return _ACTIVITIES.get(event.event_type, event.event_type)


def _tool(event: StoredEvent) -> dict[str, Any] | None:
    tool = event.data.get("tool")
    if not isinstance(tool, dict):
        return None
    if event.event_type == ProvenanceRecorded.event_type:
        return {**tool, "ai_involvement": event.data.get("ai_involvement", "none")}
    return dict(tool)


def _details(event: StoredEvent) -> dict[str, Any]:
    data = event.data
    kind = event.event_type
    if kind == ProvenanceRecorded.event_type:
        return {"entity": data.get("entity"), "attributes": data.get("attributes", {})}
    if kind == AnalysisRecorded.event_type:
        return {"analysis_type": data.get("analysis_type"), "target": data.get("target")}
    if kind == SnapshotTagged.event_type:
        return {"name": data.get("name"), "version": data.get("version")}
    if kind == ProjectRolledBack.event_type:
        return {
            "target_version": data.get("target_version"),
            "target_snapshot": data.get("target_snapshot"),
        }
    if kind == ProjectCreated.event_type:
        return {"name": data.get("name"), "owner": data.get("owner")}
    if kind in (MemberGranted.event_type, MemberRevoked.event_type):
        return {"user": data.get("user"), "role": data.get("role")}
    return {}


def relation(event: StoredEvent, index: int, parent: str) -> str:
    """Why ``event`` names ``parent`` (the ``index``-th of its parents)."""
    kind = event.event_type
    data = event.data
    if kind == AnalysisRecorded.event_type:
        return "input" if parent in data.get("inputs", ()) else "analysed"
    if kind == ProvenanceRecorded.event_type:
        return "derived_from" if parent in data.get("derived_from", ()) else "version"
    if kind == SnapshotTagged.event_type:
        return "tags"
    if kind in VERSION_EVENTS:
        # The store puts the previous version first; only a stream's first version
        # has none (it is version 1 of its stream).
        if index == 0 and (kind == ProjectRolledBack.event_type or event.stream_version > 1):
            return "previous_version"
        return "restores" if kind == ProjectRolledBack.event_type else "derived_from"
    return "derived_from"


class LineageProjection:
    name = NAME
    tables = ("lineage_nodes", "lineage_edges")

    def forget(self) -> None:
        """Nothing is kept in memory."""

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        nodes: list[tuple[Any, ...]] = []
        edges: list[tuple[str, str, str, int]] = []
        named: dict[str, int] = {}
        for event in events:
            nodes.append(_node(event))
            for index, parent in enumerate(event.parents):
                edges.append((event.daid, parent, relation(event, index, parent), event.position))
                named.setdefault(parent, event.position)
        await _insert_nodes(tx, nodes, known=True)
        external = [_external(daid, position) for daid, position in named.items()]
        await _insert_nodes(tx, [row for row in external if row is not None], known=False)
        if edges:
            children, parents, relations, positions = zip(*edges, strict=True)
            await tx.execute(
                "insert into lineage_edges (child, parent, relation, position)"
                " select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
                " on conflict do nothing",
                list(children),
                list(parents),
                list(relations),
                list(positions),
            )


_NODE_COLUMNS: Final = (
    "daid, known, position, stream_id, project_id, stream_version, event_type, entity_type,"
    " entity_id, agent_id, actor, activity, tool, details, recorded_at"
)


def _node(event: StoredEvent) -> tuple[Any, ...]:
    parsed = daid_module.parse(event.daid)
    tool = _tool(event)
    return (
        event.daid,
        True,
        event.position,
        event.stream_id,
        project_uuid(event.stream_id),
        event.stream_version,
        event.event_type,
        parsed.entity_type,
        parsed.entity_id,
        parsed.agent_id,
        str(event.metadata.get("actor", "")) or None,
        activity_of(event),
        json.dumps(tool) if tool is not None else None,
        json.dumps(_details(event)),
        event.recorded_at,
    )


def _external(daid: str, position: int) -> tuple[Any, ...] | None:
    try:
        parsed = daid_module.parse(daid)
    except DaidError:  # pragma: no cover - the store validates every parent
        return None
    return (
        daid,
        False,
        position,
        None,
        None,
        None,
        None,
        parsed.entity_type,
        parsed.entity_id,
        parsed.agent_id,
        None,
        "external",
        None,
        "{}",
        parsed.time,
    )


async def _insert_nodes(tx: Sql, rows: list[tuple[Any, ...]], *, known: bool) -> None:
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    # A DAID first seen as someone's parent and only later as an event becomes known;
    # a known node is never overwritten by a mere mention.
    conflict = (
        "on conflict (daid) do update set "
        + ", ".join(f"{c} = excluded.{c}" for c in _NODE_COLUMNS.replace(" ", "").split(","))
        + " where not lineage_nodes.known"
        if known
        else "on conflict (daid) do nothing"
    )
    await tx.execute(
        f"insert into lineage_nodes ({_NODE_COLUMNS})"
        " select * from unnest($1::text[], $2::boolean[], $3::bigint[], $4::text[],"
        " $5::uuid[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],"
        " $11::text[], $12::text[], $13::jsonb[], $14::jsonb[], $15::timestamptz[])"
        f" {conflict}",
        *(list(column) for column in columns),
    )
