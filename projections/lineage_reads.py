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

from events.sql import Sql

Direction = Literal["ancestors", "descendants", "both"]

MAX_DEPTH: Final = 10_000
MAX_NODES: Final = 10_000
#: rows one walk may read before it stops and says it was truncated
ROW_BUDGET_FACTOR: Final = 10
MIN_ROW_BUDGET: Final = 10_000

# A node as the API shows it, built by PostgreSQL: a walk of a thousand nodes then
# costs one JSON parse instead of a thousand rows decoded and rebuilt in Python.
_NODE_JSON: Final = (
    "json_build_object('daid', n.daid, 'known', n.known, 'external', not n.known,"
    " 'position', n.position, 'project_id', n.project_id, 'stream_id', n.stream_id,"
    " 'version', n.stream_version, 'event_type', n.event_type, 'entity_type', n.entity_type,"
    " 'entity_id', n.entity_id, 'agent_id', n.agent_id, 'actor', n.actor,"
    " 'activity', n.activity, 'tool', n.tool, 'details', n.details, 'time', n.recorded_at"
)


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
    text = await sql.fetchval(
        f"select {_NODE_JSON})::text from lineage_nodes n where n.daid = $1", daid
    )
    if text is None:
        return None
    found: dict[str, Any] = json.loads(text)
    return found if as_of is None or found["position"] <= as_of else None


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
    found: dict[str, dict[str, Any]] = {}
    truncated = False
    for way in directions:
        text = await sql.fetchval(
            f"select coalesce(json_agg({_NODE_JSON}, 'depth', n.depth, 'rows_read',"
            " n.rows_read, 'up', n.up)), '[]')::text"
            " from lineage_walk($1, $2, $3, $4, $5, $6) as n",
            daid,
            depth,
            as_of,
            budget,
            max_nodes + 1,
            way == "ancestors",
        )
        reached: list[dict[str, Any]] = json.loads(text)
        reached.sort(key=lambda n: (n["depth"], n["daid"]))
        if len(reached) > max_nodes or (reached and reached[0]["rows_read"] >= budget):
            truncated = True
            reached = reached[:max_nodes]
        for item in reached:
            if item["daid"] not in found or item["depth"] < found[item["daid"]]["depth"]:
                found[item["daid"]] = item
    if len(found) > max_nodes:
        truncated = True
        found = dict(sorted(found.items(), key=lambda kv: (kv[1]["depth"], kv[0]))[:max_nodes])
    depths = {name: item["depth"] for name, item in found.items()}
    # The edges between two nodes of the result (whichever way the walk went).
    edges = [
        {"child": name, "parent": parent, "relation": relation}
        for name, item in found.items()
        for parent, _, relation in (text.partition(" ") for text in item.pop("up"))
        if parent in depths
    ]
    for item in found.values():
        del item["rows_read"]
    nodes = sorted(found.values(), key=lambda n: (n["depth"], n["position"], n["daid"]))
    return Walk(depths, nodes, edges, truncated)
