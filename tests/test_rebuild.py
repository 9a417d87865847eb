"""Rebuild equals incremental: the read models folded live (across a server restart)
are row for row what ``collab projections rebuild`` makes from the log alone."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from typing import Any

import asyncpg
import httpx

from collab.runtime.config import ReadSettings
from music import document
from projections.audit_log import AuditLogProjection
from projections.lineage import LineageProjection
from projections.projects import TABLES
from tests.documents import random_daw_edit
from tests.live import create_project, running_server, server_document, synced_clients
from tests.support import eventually, run_collab

READ = ReadSettings(state_every=20)


async def _session(database_url: str, seed: int, projects: list[str]) -> None:
    """One server's lifetime of seeded edits: live, through the API, tags, rollbacks."""
    async with (
        running_server(database_url, read=READ) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client,
    ):
        if not projects:
            projects += [await create_project(address, f"Song {i}") for i in range(2)]
        rng = random.Random(seed)
        for project in projects:
            clients = await synced_clients(address, project, 2)
            for step in range(60):
                random_daw_edit(rng, clients[step % 2].doc)
                await asyncio.sleep(0.002)
            response = await client.post(
                f"/api/projects/{project}/edits",
                json={
                    "operations": [
                        {"op": "add_track", "name": f"API {seed}", "kind": "bus"},
                        {"op": "set_meta", "fields": {"tempo": 90 + seed}},
                    ]
                },
                headers={"X-Actor": "script"},
            )
            assert response.status_code == 200, response.text

            async def settled(project: str = project, clients: Any = clients) -> bool:
                server = await server_document(address, project)
                return all(c.json() == server for c in clients)

            await eventually(settled, 20, "clients did not converge")
            tag = await client.post(
                f"/api/projects/{project}/snapshots", json={"name": f"take {seed}"}
            )
            assert tag.status_code == 201, tag.text
            rollback = await client.post(
                f"/api/projects/{project}/rollback",
                json={"version": rng.randrange(2, tag.json()["version"])},
            )
            assert rollback.status_code == 200, rollback.text
            for c in clients:
                await c.disconnect()
        store_head = await _head(database_url)
        caught_up = await client.get("/api/projects", params={"min_position": store_head})
        assert caught_up.status_code == 200


async def _head(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("select last_position from event_log_head"))
    finally:
        await conn.close()


async def _dump(database_url: str) -> dict[str, list[Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        tables: dict[str, list[Any]] = {}
        for table in (*TABLES, *LineageProjection.tables, *AuditLogProjection.tables):
            if table == "project_states":
                continue
            rows = await conn.fetch(f"select to_jsonb(t)::text as r from {table} t order by r")
            tables[table] = [json.loads(row["r"]) for row in rows]
        # Stored states are compared by content: two encodings of one document may differ.
        states = []
        for row in await conn.fetch(
            "select project_id, version, position, state from project_states"
            " order by project_id, version"
        ):
            doc = document.new_document()
            doc.apply_update(row["state"])
            states.append(
                (str(row["project_id"]), row["version"], row["position"], document.to_json(doc))
            )
        tables["project_states"] = states
        tables["checkpoint"] = [
            await conn.fetchval("select position from projection_checkpoints where name = $1", name)
            for name in ("projects", "lineage", "audit_log")
        ]
        tables["checkpoint_names"] = sorted(
            await conn.fetchval("select array_agg(name) from projection_checkpoints")
        )
        return tables
    finally:
        await conn.close()


def _collab(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_collab(database_url, *args, COLLAB_STATE_EVERY=str(READ.state_every))


async def test_rebuild_gives_the_rows_the_live_fold_gave(database_url):
    projects: list[str] = []
    # Two server lifetimes: the second one's projection starts with an empty cache
    # and loads each project from its stored state plus the log.
    await _session(database_url, 1, projects)
    await _session(database_url, 2, projects)
    incremental = await _dump(database_url)
    assert len(incremental["projects"]) == 2
    assert len(incremental["project_history"]) == incremental["checkpoint"][0]
    assert incremental["project_snapshots"]
    assert incremental["project_states"]

    head = await _head(database_url)
    rebuilt = await asyncio.to_thread(_collab, database_url, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    for name in ("projects", "lineage", "audit_log"):
        assert f"rebuilt {name}: {head} events folded up to position {head}" in rebuilt.stdout
    after = await _dump(database_url)
    assert after == incremental, _first_difference(incremental, after)

    # The projects read model folded by two processes, each a share of the projects.
    parallel = await asyncio.to_thread(
        _collab, database_url, "projections", "rebuild", "projects", "--jobs", "2"
    )
    assert parallel.returncode == 0, parallel.stderr
    assert f"rebuilt projects: {head} events folded up to position {head}" in parallel.stdout
    assert "by 2 processes" in parallel.stdout
    after = await _dump(database_url)
    assert after == incremental, _first_difference(incremental, after)

    status = await asyncio.to_thread(_collab, database_url, "projections", "status")
    assert status.returncode == 0, status.stderr
    # (the server that folded them has stopped; the rebuild ran no projection)
    assert status.stdout.splitlines() == [
        f"{name}: position {head} of {head}, lag 0, stopped"
        for name in ("projects", "lineage", "audit_log")
    ] + ["lead: nobody (no process folds the projections now)"]
    unknown = await asyncio.to_thread(_collab, database_url, "projections", "rebuild", "nope")
    assert unknown.returncode == 2
    assert "no projection named 'nope'" in unknown.stderr


def _first_difference(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> str:
    for table, rows in a.items():
        for x, y in zip(rows, b[table], strict=False):
            if x != y:
                return f"{table}:\n{x}\n{y}"
        if len(rows) != len(b[table]):
            return f"{table}: {len(rows)} rows != {len(b[table])} rows"
    return ""
