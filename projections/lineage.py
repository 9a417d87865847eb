"""The ``lineage`` projection: the DAID graph, one node per event, one edge per parent.

A parent DAID that no event of this log carries (minted by another system) becomes
an *external* node, described from what its DAID says (agent, entity, time), so that
lineage queries show it instead of a dangling reference.

Each edge gets a relation naming why the child derives from the parent:

=====================  ==========================================================
``previous_version``   a version (``project.created``, ``doc.updated``,
                       ``project.rolled_back``) and the version before it
``restores``           a rollback and the version it restores
``reverts``            a revert and each change of the actor it undid
``analysed``           an analysis and the project version it analysed
``input``              an analysis and one of its declared inputs
``tags``               a snapshot and the version it tags
``version``            a provenance record and the project version it came from
``derived_from``       any other declared parent (provenance ``derived_from``)
=====================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any, Final

from events import daid as daid_module
from events.errors import DaidError
from events.models import (
    VERSION_EVENTS,
    AnalysisRecorded,
    DocCorrected,
    DocUpdated,
    MemberGranted,
    MemberRevoked,
    ProjectCreated,
    ProjectReverted,
    ProjectRolledBack,
    ProvenanceRecorded,
    SnapshotTagged,
    project_uuid,
)
from events.pacing import Pacer
from events.records import StoredEvent
from events.sql import Sql
from projections import jsontext

NAME: Final = "lineage"

_ACTIVITIES: Final = {
    ProjectCreated.event_type: "create",
    DocUpdated.event_type: "edit",
    ProjectRolledBack.event_type: "rollback",
    ProjectReverted.event_type: "revert",
    DocCorrected.event_type: "correct",
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
    if kind == ProjectReverted.event_type:
        return {
            key: data.get(key)
            for key in ("actor", "agent", "from_version", "to_version", "changes")
        }
    if kind == ProjectCreated.event_type:
        return {"name": data.get("name"), "owner": data.get("owner")}
    if kind == DocCorrected.event_type:
        return {"reasons": data.get("reasons", [])}
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
        if kind == ProjectReverted.event_type:
            return "reverts"
        return "restores" if kind == ProjectRolledBack.event_type else "derived_from"
    return "derived_from"


class LineageProjection:
    name = NAME
    tables = ("lineage_nodes", "lineage_edges")

    def forget(self) -> None:
        """Nothing is kept in memory."""

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        in_batch = {event.daid for event in events}
        chains = await _Chains.load(tx, events, in_batch)
        nodes: list[tuple[Any, ...]] = []
        edges: list[tuple[str, str, str, int, bool]] = []
        named: dict[str, int] = {}
        pacer = Pacer()
        for event in events:
            await pacer.pause()
            relations = [
                relation(event, index, parent) for index, parent in enumerate(event.parents)
            ]
            head, seq, chained = chains.place(event, relations)
            parents: list[str] = []
            for index, (parent, why) in enumerate(zip(event.parents, relations, strict=True)):
                parents.append(f"{parent} {why}")
                edges.append((event.daid, parent, why, event.position, chained and index == 0))
                named.setdefault(parent, event.position)
            free = len(event.parents) > (1 if chained else 0)
            nodes.append((*_node(event), head, seq, "\n".join(parents), free))
        await _insert_nodes(tx, nodes, known=True)
        # Most parents are events of this batch (the previous version): known nodes now.
        external = [
            _external(daid, position) for daid, position in named.items() if daid not in in_batch
        ]
        await _insert_nodes(
            tx, [(*row, None, None, "", False) for row in external if row is not None], known=False
        )
        if edges:
            await tx.execute(
                "insert into lineage_edges (child, parent, relation, position, chained)"
                " select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[],"
                " $5::boolean[]) on conflict do nothing",
                *(list(column) for column in zip(*edges, strict=True)),
            )


class _Chains:
    """Numbers the version chains of one batch (see migration 0006).

    A version continues the chain of the version it names as previous, unless that one
    already has a successor; otherwise it starts a chain of its own.
    """

    def __init__(self, known: dict[str, tuple[str, int, bool]]) -> None:
        #: daid -> (chain head, place in the chain, has a successor)
        self._known = known

    @classmethod
    async def load(cls, tx: Sql, events: Sequence[StoredEvent], in_batch: set[str]) -> _Chains:
        wanted = sorted(
            {
                event.parents[0]
                for event in events
                if event.event_type in VERSION_EVENTS
                and event.parents
                and event.parents[0] not in in_batch
            }
        )
        if not wanted:
            return cls({})
        rows = await tx.fetch(
            "select n.daid, n.chain_head, n.chain_seq, exists("
            "   select 1 from lineage_nodes s"
            "    where s.chain_head = n.chain_head and s.chain_seq = n.chain_seq + 1) as followed"
            " from lineage_nodes n where n.daid = any($1::text[]) and n.chain_head is not null",
            wanted,
        )
        return cls(
            {row["daid"]: (row["chain_head"], row["chain_seq"], row["followed"]) for row in rows}
        )

    def place(
        self, event: StoredEvent, relations: list[str]
    ) -> tuple[str | None, int | None, bool]:
        """(chain head, place, whether the first parent edge continues the chain)."""
        if event.event_type not in VERSION_EVENTS:
            return None, None, False
        head, seq, chained = event.daid, 1, False
        if relations and relations[0] == "previous_version":
            previous = self._known.get(event.parents[0])
            if previous is not None and not previous[2]:
                head, seq, chained = previous[0], previous[1] + 1, True
                self._known[event.parents[0]] = (previous[0], previous[1], True)
        self._known[event.daid] = (head, seq, False)
        return head, seq, chained


_NODE_COLUMNS: Final = (
    "daid, known, position, stream_id, project_id, stream_version, event_type, entity_type,"
    " entity_id, agent_id, actor, activity, tool, details, recorded_at, chain_head, chain_seq,"
    " parents, free_parents"
)


# A node as the API shows it, made once when the node is written: a walk of a thousand
# nodes then returns stored text instead of building a thousand objects. Times are
# written in UTC with a fixed width, so that they also compare as strings. Made here
# rather than by json_build_object in the insert: that cost PostgreSQL about a third
# of the insert (~27 us a node).
def _doc(row: tuple[Any, ...]) -> str:
    (daid, known, position, stream_id, project_id, version, event_type, entity_type) = row[:8]
    entity_id, agent_id, actor, activity, tool, details, recorded_at = row[8:15]
    return jsontext.dumps(
        {
            "daid": daid,
            "known": known,
            "external": not known,
            "position": position,
            "project_id": project_id,
            "stream_id": stream_id,
            "version": version,
            "event_type": event_type,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "agent_id": agent_id,
            "actor": actor,
            "activity": activity,
            "tool": tool,
            "details": details,
            "time": recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        }
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
        tool,
        _details(event),
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
        {},
        parsed.time,
    )


async def _insert_nodes(tx: Sql, rows: list[tuple[Any, ...]], *, known: bool) -> None:
    if not rows:
        return
    columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
    docs = [_doc(row) for row in rows]
    # tool and details go into jsonb columns as JSON text
    tools, details = _COLUMN_NAMES.index("tool"), _COLUMN_NAMES.index("details")
    columns[tools] = [jsontext.dumps(tool) if tool is not None else None for tool in columns[tools]]
    columns[details] = [jsontext.dumps(value) for value in columns[details]]
    # A DAID first seen as someone's parent and only later as an event becomes known;
    # a known node is never overwritten by a mere mention.
    conflict = (
        "on conflict (daid) do update set "
        + ", ".join(f"{c} = excluded.{c}" for c in [*_COLUMN_NAMES, "doc"])
        + " where not lineage_nodes.known"
        if known
        else "on conflict (daid) do nothing"
    )
    await tx.execute(
        f"insert into lineage_nodes ({_NODE_COLUMNS}, doc)"
        f" select {_SELECTED}, u.doc"
        " from unnest($1::text[], $2::boolean[], $3::bigint[], $4::text[],"
        " $5::uuid[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],"
        " $11::text[], $12::text[], $13::jsonb[], $14::jsonb[], $15::timestamptz[],"
        " $16::text[], $17::integer[], $18::text[], $19::boolean[], $20::text[])"
        f" as u({_NODE_COLUMNS}, doc) {conflict}",
        *columns,
        docs,
    )


_COLUMN_NAMES: Final = [name.strip() for name in _NODE_COLUMNS.split(",")]
# Parents arrive as one text per node (arrays of arrays must be rectangular).
_SELECTED: Final = ", ".join(
    "string_to_array(u.parents, E'\\n')" if name == "parents" else f"u.{name}"
    for name in _COLUMN_NAMES
)
