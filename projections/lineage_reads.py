"""Queries of the lineage graph: one DAID, its ancestors or descendants, PROV-JSON,
contributors.

A walk is one recursive query. Its rows carry the depth at which a node was reached,
so a node reached by several paths appears several times; every path stops at the
depth limit, and the query stops after a row budget, which together bound the work
whatever the graph (cycles included: edges only point to earlier events, but an
external DAID could be named in ways we do not control). Rows come out level by
level, so a node's first row has its shortest depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from events.sql import Row, Sql

Direction = Literal["ancestors", "descendants", "both"]

MAX_DEPTH: Final = 10_000
MAX_NODES: Final = 10_000
#: rows one walk may read before it stops and says it was truncated
ROW_BUDGET_FACTOR: Final = 10
MIN_ROW_BUDGET: Final = 10_000

_NODE_SELECT: Final = (
    "select daid, known, position, stream_id, project_id, stream_version, event_type,"
    " entity_type, entity_id, agent_id, actor, activity, tool, details, recorded_at"
    " from lineage_nodes"
)

# The walk, written once per direction: ``near`` is the column the walk stands on,
# ``far`` where it goes next.
_WALK: Final = """
with recursive walk(daid, depth) as (
    select $1::text, 0
    union
    select e.{far}, w.depth + 1
      from walk w join lineage_edges e on e.{near} = w.daid
     where w.depth < $2 and e.position <= $3
)
select daid, min(depth) as depth, sum(count(*)) over () as rows_read
  from (select daid, depth from walk limit $4) as reached
 group by daid
 order by depth, daid
 limit $5
"""


@dataclass(frozen=True, slots=True)
class Walk:
    #: daid -> depth (shortest number of edges from the start)
    depths: dict[str, int]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    truncated: bool


async def position_at(sql: Sql, moment: datetime) -> int:
    """The last position recorded at or before ``moment``."""
    value = await sql.fetchval(
        "select coalesce(max(position), 0) from lineage_nodes where known and recorded_at <= $1",
        moment,
    )
    return int(value)


async def node(sql: Sql, daid: str, *, as_of: int | None = None) -> dict[str, Any] | None:
    rows = await sql.fetch(_NODE_SELECT + " where daid = $1", daid)
    if not rows or (as_of is not None and rows[0]["position"] > as_of):
        return None
    return node_json(rows[0])


async def neighbours(sql: Sql, daid: str, *, as_of: int) -> dict[str, list[dict[str, Any]]]:
    """The parents and children of one node (one edge away)."""
    parents = await sql.fetch(
        "select e.parent as daid, e.relation, n.known from lineage_edges e"
        " join lineage_nodes n on n.daid = e.parent"
        " where e.child = $1 and e.position <= $2 order by e.parent",
        daid,
        as_of,
    )
    children = await sql.fetch(
        "select child as daid, relation from lineage_edges"
        " where parent = $1 and position <= $2 order by position limit 1000",
        daid,
        as_of,
    )
    return {"parents": parents, "children": children}


async def walk(
    sql: Sql,
    daid: str,
    *,
    direction: Direction,
    depth: int,
    max_nodes: int,
    as_of: int,
) -> Walk:
    directions = ("ancestors", "descendants") if direction == "both" else (direction,)
    budget = max(MIN_ROW_BUDGET, ROW_BUDGET_FACTOR * max_nodes)
    depths: dict[str, int] = {}
    truncated = False
    for way in directions:
        near, far = ("child", "parent") if way == "ancestors" else ("parent", "child")
        query = _WALK.format(near=near, far=far)
        rows = await sql.fetch(query, daid, depth, as_of, budget, max_nodes + 1)
        if len(rows) > max_nodes or (rows and rows[0]["rows_read"] >= budget):
            truncated = True
            rows = rows[:max_nodes]
        for row in rows:
            depths[row["daid"]] = min(row["depth"], depths.get(row["daid"], row["depth"]))
    if len(depths) > max_nodes:
        truncated = True
        kept = sorted(depths.items(), key=lambda item: (item[1], item[0]))[:max_nodes]
        depths = dict(kept)
    names = list(depths)
    node_rows = await sql.fetch(_NODE_SELECT + " where daid = any($1::text[])", names)
    nodes = sorted(
        ({**node_json(row), "depth": depths[row["daid"]]} for row in node_rows),
        key=lambda n: (n["depth"], n["position"], n["daid"]),
    )
    edge_rows = await sql.fetch(
        "select child, parent, relation from lineage_edges"
        " where child = any($1::text[]) and parent = any($1::text[]) and position <= $2"
        " order by position, parent",
        names,
        as_of,
    )
    return Walk(depths, nodes, edge_rows, truncated)


def node_json(row: Row) -> dict[str, Any]:
    tool = row["tool"]
    return {
        "daid": row["daid"],
        "known": row["known"],
        "external": not row["known"],
        "position": row["position"],
        "project_id": str(row["project_id"]) if row["project_id"] is not None else None,
        "stream_id": row["stream_id"],
        "version": row["stream_version"],
        "event_type": row["event_type"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "agent_id": row["agent_id"],
        "actor": row["actor"],
        "activity": row["activity"],
        "tool": json.loads(tool) if tool is not None else None,
        "details": json.loads(row["details"]),
        "time": row["recorded_at"].isoformat(),
    }
