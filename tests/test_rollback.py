"""Rollback through the live path, with a pycrdt editor and a stock Node yjs +
y-websocket editor connected to a real server."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pycrdt

from music import document
from tests.documents import random_daw_edit
from tests.live import (
    NodeClient,
    YClient,
    create_project,
    log_document,
    running_server,
    server_document,
)
from tests.support import eventually


def http(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", timeout=30)


async def _edit_python(client: YClient, rng: random.Random, count: int) -> None:
    for _ in range(count):
        random_daw_edit(rng, client.doc)
        await asyncio.sleep(0.003)


async def _converged(address: str, project: str, py: YClient, node: NodeClient) -> dict[str, Any]:
    """Wait until the server, the pycrdt editor and the Node editor hold one document."""
    state: dict[str, Any] = {}

    async def same() -> bool:
        state["server"] = await server_document(address, project)
        return state["server"] == py.json() == await node.dump()

    await eventually(same, 30, "editors and server did not converge")
    return dict(state["server"])


async def _version_document(client: httpx.AsyncClient, project: str, version: int) -> Any:
    response = await client.get(f"/api/projects/{project}/versions/{version}")
    assert response.status_code == 200, response.text
    return response.json()["document"]


async def test_rollback_reaches_every_live_editor(database_url, node_client_script):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        py = await YClient(address, project).connect()
        await py.wait_synced()
        node = await NodeClient.start(node_client_script, address, project)
        try:
            await node.wait_synced()
            rng = random.Random(11)
            await _edit_python(py, rng, 25)
            await node.edit(15, seed=5)
            before_mix = await _converged(address, project, py, node)

            tag = await client.post(
                f"/api/projects/{project}/snapshots", json={"name": "before mix"}
            )
            assert tag.status_code == 201, tag.text
            tagged_version = tag.json()["version"]
            assert await _version_document(client, project, tagged_version) == before_mix

            await _edit_python(py, rng, 25)
            await node.edit(15, seed=9)
            mixed = await _converged(address, project, py, node)
            assert mixed != before_mix

            response = await client.post(
                f"/api/projects/{project}/rollback",
                json={"snapshot": "before mix"},
                headers={"X-Actor": "producer"},
            )
            assert response.status_code == 200, response.text
            rolled = response.json()
            assert rolled["changed"] is True
            assert rolled["target_version"] == tagged_version
            # Both editors receive it live, as an ordinary update.
            assert await _converged(address, project, py, node) == before_mix
            assert await log_document(database_url, project) == before_mix

            entries = (
                await client.get(
                    f"/api/projects/{project}/history", params={"min_position": rolled["position"]}
                )
            ).json()
            newest = entries["entries"][0]
            assert newest["event_type"] == "project.rolled_back"
            assert newest["actor"] == "producer"
            assert newest["summary"][0] == (
                f'rolled back to snapshot "before mix" (version {tagged_version})'
            )

            # Rolling back the rollback restores what was there before it.
            undo = await client.post(
                f"/api/projects/{project}/rollback", json={"version": rolled["version"] - 1}
            )
            assert undo.status_code == 200, undo.text
            assert await _converged(address, project, py, node) == mixed
            assert await log_document(database_url, project) == mixed
        finally:
            await node.stop()
            await py.disconnect()


async def test_an_edit_made_offline_during_a_rollback_merges_into_it(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        editor = await YClient(address, project).connect()
        await editor.wait_synced()
        await _edit_python(editor, random.Random(3), 20)

        async def stored() -> bool:
            return await server_document(address, project) == editor.json()

        await eventually(stored, 10, "edits not stored")
        target = (await client.get(f"/api/projects/{project}/document")).json()["version"]
        await _edit_python(editor, random.Random(4), 20)
        await eventually(stored, 10, "edits not stored")
        # This editor goes offline and keeps editing: its edit is concurrent with the
        # rollback below, which cannot have seen it.
        await editor.disconnect()
        tracks = editor.doc.get(document.TRACKS, type=pycrdt.Map)
        with editor.doc.transaction():
            tracks["late"] = pycrdt.Map({"name": "Late idea", "volume_db": 0.0})
            editor.doc.get(document.TRACK_ORDER, type=pycrdt.Array).append("late")
        response = await client.post(f"/api/projects/{project}/rollback", json={"version": target})
        assert response.status_code == 200, response.text
        target_document = await _version_document(client, project, target)
        assert await server_document(address, project) == target_document

        await editor.connect()
        await editor.wait_synced()
        expected = {
            **target_document,
            "tracks": {
                **target_document["tracks"],
                "late": {"name": "Late idea", "volume_db": 0.0},
            },
        }

        async def merged() -> bool:
            return await server_document(address, project) == editor.json()

        await eventually(merged, 10, "the offline edit did not merge")
        final = editor.json()
        assert final["tracks"] == expected["tracks"]
        assert final["meta"] == target_document["meta"]
        assert final["track_order"][-1] == "late"
        assert await log_document(database_url, project) == final
        await editor.disconnect()


async def test_rollback_refuses_what_does_not_exist(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        url = f"/api/projects/{project}/rollback"
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"version": 99}, 404, "has no version 99"),
            ({"snapshot": "nope"}, 404, "has no snapshot named 'nope'"),
            ({}, 422, "exactly one of version or snapshot"),
            ({"version": 1, "snapshot": "x"}, 422, "exactly one of version or snapshot"),
            ({"version": 0}, 422, "version"),
        ]
        for body, status, message in cases:
            response = await client.post(url, json=body)
            assert response.status_code == status, (body, response.text)
            assert message in response.json()["message"], (body, response.text)
        unknown = await client.post(
            "/api/projects/8d0c5a44-0000-4000-8000-000000000000/rollback", json={"version": 1}
        )
        assert unknown.status_code == 404
        # Nothing was appended by any refusal.
        document_now = (await client.get(f"/api/projects/{project}/document")).json()
        assert document_now["version"] == 2
        # Rolling back to the current state is recorded, and changes nothing.
        same = await client.post(url, json={"version": 2})
        assert same.status_code == 200
        assert same.json()["changed"] is False
