"""The lineage projection and its walks on generated graphs of real events.

The reference answers come from a breadth-first search in Python over the parents
each event was appended with; the walks under test run in PostgreSQL over the folded
read model.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

import pytest

from events import EventMetadata, NewEvent
from events.models import (
    DocUpdated,
    EntityRef,
    ProjectCreated,
    ProjectRolledBack,
    ProvenanceRecorded,
    ToolInfo,
)
from events.postgres import PostgresEventStore
from projections.fold import apply_batch, reset
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


async def generate_chains(store: PostgresEventStore, *, steps: int, seed: int) -> None:
    """Version chains of four projects woven together: edits that also derive from other
    nodes, rollbacks to earlier versions, and records derived from versions and records."""
    rng = random.Random(seed)
    streams = [f"project-00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    versions: dict[str, list[str]] = {}
    known: list[str] = []
    for stream in streams:
        result = await store.append(stream, [NewEvent(ProjectCreated(name="P", owner="o"), META)])
        versions[stream] = list(result.daids)
        known.extend(result.daids)
    for step in range(steps):
        roll = rng.random()
        stream = rng.choice(streams)
        if roll < 0.6:
            extra = (rng.choice(known),) if rng.random() < 0.15 else ()
            update = DocUpdated(update=bytes([1, step % 250 + 1]), client_id=1)
            result = await store.append(stream, [NewEvent(update, META, parents=extra)])
            versions[stream].extend(result.daids)
        elif roll < 0.7:
            target = rng.randrange(len(versions[stream]))
            rollback = ProjectRolledBack(target_version=target, update=b"")
            result = await store.append(
                stream, [NewEvent(rollback, META, parents=(versions[stream][target],))]
            )
            versions[stream].extend(result.daids)
        else:
            chosen = sorted(set(rng.sample(known, rng.randint(1, 2))))
            result = await store.append("provenance", [record(step, chosen)])
        known.extend(result.daids)


async def test_walks_along_version_chains_match_breadth_first_search(store):
    # Walks jump along version chains (migration 0006); the depths must still be those
    # of a breadth-first search over every edge, whatever enters or leaves a chain.
    await generate_chains(store, steps=1500, seed=23)
    await fold(store)
    stored = await store.read_all(0, 10_000)
    parents = {event.daid: list(event.parents) for event in stored}
    positions = {event.daid: event.position for event in stored}
    children = children_of(parents)
    chained = await store.queries.fetchval("select count(*) from lineage_edges where chained")
    assert chained > 1000  # the walks below do cross chains
    rng = random.Random(5)
    daids = list(parents)
    for start in [daids[-1], *rng.sample(daids, 12)]:
        for depth in (1, 3, 40, 10_000):
            for way, edges in (("ancestors", parents), ("descendants", children)):
                got = await walk(
                    store.queries,
                    start,
                    direction=way,
                    depth=depth,
                    max_nodes=10_000,
                    as_of=EVERYTHING,
                )
                expected = reference(start, edges, depth)
                assert got.depths == expected, (way, depth)
                assert {(e["child"], e["parent"]) for e in got.edges} == {
                    (c, p) for c in expected for p in parents.get(c, ()) if p in expected
                }
    as_of = sorted(positions.values())[700]
    allowed = {d for d, p in positions.items() if p <= as_of}
    for start in rng.sample([d for d in daids if d in allowed], 5):
        got = await walk(
            store.queries,
            start,
            direction="descendants",
            depth=10_000,
            max_nodes=10_000,
            as_of=as_of,
        )
        assert got.depths == reference(start, children, 10_000, allowed=allowed)


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


async def test_a_version_whose_previous_already_has_a_successor_starts_a_chain(store):
    # Only a log written before version lineage (migration 0004) can hold two versions
    # naming the same previous one: made here by rewriting what the projection reads.
    stream = "project-00000000-0000-4000-8000-00000000000a"
    await store.append(stream, [NewEvent(ProjectCreated(name="P", owner="o"), META)])
    for step in range(3):
        await store.append(stream, [NewEvent(DocUpdated(update=bytes([1, step + 1])), META)])
    first, second, third, fourth = await store.read_stream(stream)
    forked = replace(third, parents=(first.daid,))  # second's sibling, not its child
    after = replace(fourth, parents=(forked.daid,))
    projection = LineageProjection()
    await reset(store, projection)
    await apply_batch(store, projection, [first, second], 0)
    await apply_batch(store, projection, [forked, after], second.position)
    rows = await store.queries.fetch(
        "select daid, chain_head, chain_seq from lineage_nodes order by position"
    )
    assert [(r["chain_head"], r["chain_seq"]) for r in rows] == [
        (first.daid, 1),
        (first.daid, 2),
        (forked.daid, 1),
        (forked.daid, 2),
    ]
    down = await walk(
        store.queries,
        first.daid,
        direction="descendants",
        depth=10,
        max_nodes=100,
        as_of=EVERYTHING,
    )
    assert down.depths == {first.daid: 0, second.daid: 1, forked.daid: 1, after.daid: 2}
    up = await walk(
        store.queries,
        after.daid,
        direction="ancestors",
        depth=10,
        max_nodes=100,
        as_of=EVERYTHING,
    )
    assert up.depths == {after.daid: 0, forked.daid: 1, first.daid: 2}
