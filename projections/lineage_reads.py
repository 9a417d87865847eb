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
from functools import cached_property
from typing import Any, Final, Literal

from events.sql import Row, Sql

Direction = Literal["ancestors", "descendants", "both"]

MAX_DEPTH: Final = 10_000
MAX_NODES: Final = 10_000
#: rows one walk may read before it stops and says it was truncated
ROW_BUDGET_FACTOR: Final = 10
MIN_ROW_BUDGET: Final = 10_000


@dataclass(frozen=True)
class Walk:
    #: daid -> depth (shortest number of edges from the start)
    depths: dict[str, int]
    #: each node as JSON text (with its depth), in the result's order: depth, position,
    #: DAID. The API splices these into its response without decoding them.
    texts: list[str]
    edges: list[dict[str, Any]]
    truncated: bool

    @cached_property
    def nodes(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.texts]

    def json(self, **fields: Any) -> str:
        """The API's answer: ``fields``, then nodes, edges and truncated, as JSON text."""
        head = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)[:-1]
        return (
            f'{head}{"," if fields else ""}"nodes":[{",".join(self.texts)}],'
            f'"edges":{json.dumps(self.edges, separators=(",", ":"))},'
            f'"truncated":{json.dumps(self.truncated)}}}'
        )


async def position_at(sql: Sql, moment: datetime) -> int:
    """The last position recorded at or before ``moment``."""
    value = await sql.fetchval(
        "select coalesce(max(position), 0) from lineage_nodes where known and recorded_at <= $1",
        moment,
    )
    return int(value)


async def node(sql: Sql, daid: str, *, as_of: int | None = None) -> dict[str, Any] | None:
    # The node as the API shows it was written by the projection (projections.lineage).
    text = await sql.fetchval("select doc from lineage_nodes where daid = $1", daid)
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
    found: dict[str, Row] = {}
    truncated = False
    for way in directions:
        reached = await sql.fetch(
            "select n.daid, n.depth, n.position, n.rows_read, n.doc, n.up"
            " from lineage_walk($1, $2, $3, $4, $5, $6) as n"
            " order by n.depth, n.position, n.daid",
            daid,
            depth,
            as_of,
            budget,
            max_nodes + 1,
            way == "ancestors",
        )
        if len(reached) > max_nodes or (reached and reached[0]["rows_read"] >= budget):
            truncated = True
            # The closest nodes, ties by DAID (as the walk chose them).
            kept = set(_closest(reached, max_nodes))
            reached = [row for row in reached if row["daid"] in kept]
        for row in reached:
            if row["daid"] not in found or row["depth"] < found[row["daid"]]["depth"]:
                found[row["daid"]] = row
    rows = list(found.values())
    if len(rows) > max_nodes:
        truncated = True
        kept = set(_closest(rows, max_nodes))
        rows = [row for row in rows if row["daid"] in kept]
    if len(directions) > 1:
        rows.sort(key=lambda row: (row["depth"], row["position"], row["daid"]))
    depths = {row["daid"]: row["depth"] for row in rows}
    # The edges between two nodes of the result (whichever way the walk went).
    edges = [
        {"child": row["daid"], "parent": parent, "relation": relation}
        for row in rows
        for parent, _, relation in (text.partition(" ") for text in row["up"])
        if parent in depths
    ]
    # The stored text starts with '{'; the depth goes first.
    texts = [f'{{"depth":{row["depth"]},{row["doc"][1:]}' for row in rows]
    return Walk(depths, texts, edges, truncated)


def _closest(rows: list[Row], count: int) -> list[str]:
    ordered = sorted(rows, key=lambda row: (row["depth"], row["daid"]))
    return [row["daid"] for row in ordered[:count]]
