"""The lineage projection and its walks on generated graphs of real events.

The reference answers come from a breadth-first search in Python over the parents
each event was appended with; the walks under test run in PostgreSQL over the folded
read model.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from events import EventMetadata, NewEvent
from events.models import DocUpdated, EntityRef, ProvenanceRecorded, ToolInfo
from events.postgres import PostgresEventStore
from projections.lineage import LineageProjection
from projections.lineage_reads import walk
from projections.runner import rebuild
from tests.test_daid import ECOSYSTEM

META = EventMetadata(actor="gen", agent_id="generator")
SHA = "cd" * 32
EVERYTHING = 2**62


def record(n: int, parents: list[str]) -> NewEvent:
    event = ProvenanceRecorded(
        entity=EntityRef(type="stem", id=f"stem-{n}", content_hash=SHA),
        activity="generate",
        tool=ToolInfo(agent_id="generator"),
        derived_from=tuple(parents),
    )
    return NewEvent(event, META, parents=tuple(parents))


async def fold(store: PostgresEventStore) -> None:
    await rebuild(store, LineageProjection(), 5000)


async def generate_graph(
    store: PostgresEventStore, *, batches: int, size: int, seed: int
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """A DAG: each event derives from 1-3 events of earlier batches (externals first)."""
    rng = random.Random(seed)
    parents: dict[str, list[str]] = {}
    positions: dict[str, int] = {}
    known: list[str] = list(ECOSYSTEM)
    for batch in range(batches):
        chosen = [
            sorted(set(rng.sample(known, min(len(known), rng.randint(1, 3))))) for _ in range(size)
        ]
        result = await store.append(
            "provenance", [record(batch * size + i, p) for i, p in enumerate(chosen)]
        )
        for daid, position, p in zip(result.daids, result.positions, chosen, strict=True):
            parents[daid] = p
            positions[daid] = position
        known.extend(result.daids)
    return parents, positions


def reference(
    start: str, edges: dict[str, list[str]], depth: int, allowed: set[str] | None = None
) -> dict[str, int]:
    seen = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if seen[node] == depth:
            continue
        for nxt in edges.get(node, ()):
            if nxt not in seen and (allowed is None or nxt in allowed):
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
    return seen


def children_of(parents: dict[str, list[str]]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for parent in ps:
            children.setdefault(parent, []).append(child)
    return children


@pytest.fixture
async def graph(store: PostgresEventStore) -> tuple[dict[str, list[str]], dict[str, int]]:
    parents, positions = await generate_graph(store, batches=50, size=205, seed=11)
    await fold(store)
    return parents, positions


async def test_walks_match_breadth_first_search_on_10000_nodes(store, graph):
    parents, _positions = graph
    assert len(parents) >= 10_000
    nodes = await store.queries.fetchval("select count(*) from lineage_nodes")
    assert nodes == len(parents) + len(ECOSYSTEM)  # the externals are nodes too
    children = children_of(parents)
    rng = random.Random(3)
    daids = list(parents)
    for start, depth in [(daids[-1], 2), (daids[-7], 6), (daids[5000], 10_000), (daids[9000], 4)]:
        expected = reference(start, parents, depth)
        got = await walk(
            store.queries,
            start,
            direction="ancestors",
            depth=depth,
            max_nodes=10_000,
            as_of=EVERYTHING,
        )
        assert got.depths == expected
        assert got.truncated is False
        assert {n["daid"] for n in got.nodes} == set(expected)
    for start in rng.sample(daids[:2000], 3):
        expected = reference(start, children, 3)
        got = await walk(
            store.queries,
            start,
            direction="descendants",
            depth=3,
            max_nodes=10_000,
            as_of=EVERYTHING,
        )
        assert got.depths == expected
        assert {(e["child"], e["parent"]) for e in got.edges} == {
            (c, p) for c in expected for p in parents.get(c, ()) if p in expected
        }


async def test_max_nodes_keeps_the_closest_and_says_truncated(store, graph):
    parents, _positions = graph
    start = next(iter(parents))
    full = reference(start, children_of(parents), 10_000)
    assert len(full) > 500
    got = await walk(
        store.queries,
        start,
        direction="descendants",
        depth=10_000,
        max_nodes=100,
        as_of=EVERYTHING,
    )
    assert got.truncated is True
    assert len(got.depths) == len(got.nodes) == 100
    cutoff = max(got.depths.values())
    assert all(full[d] == depth for d, depth in got.depths.items())
    assert {d for d, depth in full.items() if depth < cutoff} <= set(got.depths)
    untruncated = await walk(
        store.queries,
        start,
        direction="descendants",
        depth=10_000,
        max_nodes=len(full),
        as_of=EVERYTHING,
    )
    assert untruncated.truncated is False
    assert untruncated.depths == full


async def test_as_of_answers_with_what_was_known_then(store, graph):
    parents, positions = graph
    children = children_of(parents)
    start = list(parents)[10]
    as_of = sorted(positions.values())[6000]
    known_then = {d for d, p in positions.items() if p <= as_of} | set(ECOSYSTEM)
    expected = reference(start, children, 10_000, allowed=known_then)
    got = await walk(
        store.queries,
        start,
        direction="descendants",
        depth=10_000,
        max_nodes=10_000,
        as_of=as_of,
    )
    assert got.depths == expected
    assert max(n["position"] for n in got.nodes) <= as_of
    both = await walk(
        store.queries, start, direction="both", depth=10_000, max_nodes=10_000, as_of=EVERYTHING
    )
    assert set(both.depths) == set(reference(start, children, 10_000)) | set(
        reference(start, parents, 10_000)
    )


async def test_a_chain_is_cut_exactly_at_the_depth_asked(store):
    # Each version derives from the one before it: 1,200 versions are a chain.
    stream = "project-chain"
    for batch in range(12):
        updates = [bytes([1, (batch * 100 + i) % 250 + 1]) for i in range(100)]
        await store.append(
            stream, [NewEvent(DocUpdated(update=u, client_id=1), META) for u in updates]
        )
    await fold(store)
    last = (await store.read_stream(stream, backward=True, limit=1))[0].daid
    got = await walk(
        store.queries,
        last,
        direction="ancestors",
        depth=1000,
        max_nodes=10_000,
        as_of=EVERYTHING,
    )
    assert len(got.depths) == 1001
    assert sorted(got.depths.values()) == list(range(1001))
    everything = await walk(
        store.queries,
        last,
        direction="ancestors",
        depth=10_000,
        max_nodes=10_000,
        as_of=EVERYTHING,
    )
    assert len(everything.depths) == 1200


async def test_a_cycle_in_the_graph_cannot_hang_a_walk(store, graph):
    parents, _positions = graph
    # The log cannot make a cycle (a parent exists before its child); a read model
    # edited by hand, or relations claimed about external DAIDs, could.
    a, b, c = list(parents)[100:103]
    for child, parent in ((a, b), (b, c), (c, a)):
        await store.queries.execute(
            "insert into lineage_edges (child, parent, relation, position)"
            " values ($1, $2, 'derived_from', 1) on conflict do nothing",
            child,
            parent,
        )
    got = await walk(
        store.queries,
        a,
        direction="ancestors",
        depth=10_000,
        max_nodes=10_000,
        as_of=EVERYTHING,
    )
    assert {a, b, c} <= set(got.depths)
    assert got.depths[a] == 0
    both = await walk(
        store.queries, a, direction="both", depth=10_000, max_nodes=10_000, as_of=EVERYTHING
    )
    assert {a, b, c} <= set(both.depths)
