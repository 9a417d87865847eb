"""The HTTP API of the live path: projects, the document, typed edits, metrics."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.live import YClient, create_project, log_document, project_events, running_server
from tests.support import eventually


async def _edit(http: httpx.AsyncClient, project: str, *ops: dict[str, Any]) -> httpx.Response:
    return await http.post(f"/api/projects/{project}/edits", json={"operations": list(ops)})


async def test_create_project_and_read_its_document(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        response = await http.post(
            "/api/projects", json={"name": "Nocturne", "metadata": {"genre": "jazz"}, "tempo": 92}
        )
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/api/projects/{body['id']}"
        assert body["version"] == 2
        assert body["daid"].startswith("daid:v1.0:")
        document = (await http.get(f"/api/projects/{body['id']}/document")).json()
        assert document["version"] == 2
        assert document["document"] == {
            "meta": {
                "name": "Nocturne",
                "tempo": 92.0,
                "time_signature": "4/4",
                "sample_rate": 48000.0,
            },
            "tracks": {},
            "track_order": [],
            "sections": [],
        }


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 422, "name"),
        ({"name": ""}, 422, "name"),
        ({"name": "x", "tempo": -1}, 422, "tempo"),
        ({"name": "x", "extra": 1}, 422, "extra"),
    ],
)
async def test_create_project_validation(
    database_url: str, body: dict[str, Any], status: int, words: str
) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        response = await http.post("/api/projects", json=body)
        assert response.status_code == status
        assert words in response.json()["message"]
        bad_json = await http.post(
            "/api/projects", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 400
        assert "not JSON" in bad_json.json()["message"]


async def test_every_operation_kind_reaches_live_editors(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        project = await create_project(address)
        editor = await YClient(address, project).connect()
        await editor.wait_synced()
        ops: list[dict[str, Any]] = [
            {"op": "set_meta", "fields": {"tempo": 128, "key": "A minor"}},
            {
                "op": "add_track",
                "track_id": "bass",
                "name": "Bass",
                "kind": "midi",
                "volume_db": -3,
            },
            {"op": "add_track", "track_id": "drums", "name": "Drums", "kind": "drums"},
            {"op": "update_track", "track_id": "bass", "fields": {"volume_db": -6, "pan": 0.25}},
            {"op": "move_track", "track_id": "drums", "index": 0},
            {
                "op": "add_clip",
                "track_id": "bass",
                "clip_id": "v1",
                "name": "Verse 1",
                "start_beats": 0,
                "length_beats": 16,
            },
            {
                "op": "update_clip",
                "track_id": "bass",
                "clip_id": "v1",
                "fields": {"length_beats": 32},
            },
            {
                "op": "add_notes",
                "track_id": "bass",
                "clip_id": "v1",
                "notes": [
                    {"pitch": 40, "start": 0, "duration": 1, "velocity": 90},
                    {"pitch": 43, "start": 1, "duration": 1},
                    {"pitch": 45, "start": 2, "duration": 2},
                ],
            },
            {"op": "remove_notes", "track_id": "bass", "clip_id": "v1", "indices": [1]},
            {
                "op": "add_effect",
                "track_id": "bass",
                "effect_id": "eq",
                "type": "eq",
                "params": {"low_db": 2.0},
            },
            {"op": "add_effect", "track_id": "bass", "effect_id": "comp", "type": "compressor"},
            {
                "op": "update_effect",
                "track_id": "bass",
                "effect_id": "eq",
                "enabled": False,
                "params": {"high_db": -1.5},
                "remove_params": ["low_db"],
            },
            {"op": "remove_effect", "track_id": "bass", "effect_id": "comp"},
            {
                "op": "set_automation",
                "track_id": "bass",
                "parameter": "volume_db",
                "points": [
                    {"time": 0, "value": -6},
                    {"time": 8, "value": 0, "curve": "exponential"},
                ],
            },
            {
                "op": "add_clip",
                "track_id": "drums",
                "clip_id": "d1",
                "name": "Beat",
                "start_beats": 0,
                "length_beats": 4,
            },
            {"op": "remove_clip", "track_id": "drums", "clip_id": "d1"},
        ]
        response = await _edit(http, project, *ops)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["changed"] is True
        assert result["version"] == 3

        document = (await http.get(f"/api/projects/{project}/document")).json()["document"]
        assert document["meta"]["tempo"] == 128.0
        assert document["track_order"] == ["drums", "bass"]
        bass = document["tracks"]["bass"]
        assert (bass["volume_db"], bass["pan"]) == (-6.0, 0.25)
        clip = bass["clips"]["v1"]
        assert clip["length_beats"] == 32.0
        assert [n["pitch"] for n in clip["notes"]] == [40.0, 45.0]
        assert bass["effects"] == [
            {"id": "eq", "type": "eq", "enabled": False, "params": {"high_db": -1.5}}
        ]
        assert [p["value"] for p in bass["automation"]["volume_db"]] == [-6.0, 0.0]
        assert document["tracks"]["drums"]["clips"] == {}

        await eventually(lambda: editor.json() == document, 5, "live editor did not get the edit")
        assert await log_document(database_url, project) == document

        removed = await _edit(http, project, {"op": "remove_track", "track_id": "drums"})
        assert removed.status_code == 200
        await eventually(
            lambda: editor.json()["track_order"] == ["bass"], 5, "removal not broadcast"
        )
        await editor.disconnect()


@pytest.mark.parametrize(
    ("ops", "field", "words"),
    [
        ([{"op": "explode"}], "operations.0", "does not match any of the expected tags"),
        (
            [{"op": "update_track", "track_id": "bass", "fields": {"pan": 3}}],
            "operations.0.update_track.fields.pan",
            "less than or equal to 1",
        ),
        (
            [
                {
                    "op": "add_notes",
                    "track_id": "bass",
                    "clip_id": "v1",
                    "notes": [{"pitch": 200, "start": 0, "duration": 1}],
                }
            ],
            "operations.0.add_notes.notes.0.pitch",
            "less than or equal to 127",
        ),
        (
            [{"op": "set_meta", "fields": {"time_signature": "4-4"}}],
            "operations.0.set_meta.fields.time_signature",
            "should match pattern",
        ),
        ([], "operations", "at least 1 item"),
    ],
)
async def test_invalid_operations_are_422_naming_the_field_and_change_nothing(
    database_url: str, ops: list[dict[str, Any]], field: str, words: str
) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        project = await create_project(address)
        response = await _edit(http, project, *ops)
        assert response.status_code == 422
        body = response.json()
        assert body["fields"][0]["field"] == field
        assert words in body["fields"][0]["message"]
        assert await _stream_version(database_url, project) == 2


async def test_operations_that_do_not_fit_the_document_change_nothing(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        project = await create_project(address)
        response = await _edit(
            http,
            project,
            {"op": "add_track", "track_id": "bass", "name": "Bass"},
            {"op": "update_track", "track_id": "keys", "fields": {"mute": True}},
        )
        assert response.status_code == 422
        assert response.json()["message"] == "operations[1]: no track 'keys'"
        assert await _stream_version(database_url, project) == 2
        document = (await http.get(f"/api/projects/{project}/document")).json()["document"]
        assert document["tracks"] == {}


async def test_unknown_project_is_404(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        missing = uuid.uuid4()
        response = await http.get(f"/api/projects/{missing}/document")
        assert response.status_code == 404
        assert str(missing) in response.json()["message"]
        edit = await _edit(http, str(missing), {"op": "set_meta", "fields": {"key": "C"}})
        assert edit.status_code == 404


async def test_metrics_are_exported(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        project = await create_project(address)
        client = await YClient(address, project).connect()
        await client.wait_synced()
        await _edit(http, project, {"op": "set_meta", "fields": {"key": "C"}})
        text = (await http.get("/metrics")).text
        for name in (
            "collab_connections 1.0",
            "collab_rooms 1.0",
            "collab_updates_received_total 1.0",
            "collab_updates_committed_total 1.0",
            "collab_updates_broadcast_total 1.0",
        ):
            assert name in text, name
        # every append of the process goes through the one group commit: the project's
        # creation and the edit are (at least) two batches of one event each
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("collab_commit_")
        }
        assert values["collab_commit_batch_size_count"] >= 2, values
        assert values["collab_commit_batch_size_sum"] >= 2, values
        assert values["collab_commit_seconds_count"] == values["collab_commit_batch_size_count"]
        await client.disconnect()


async def _stream_version(database_url: str, project: str) -> int:
    return len(await project_events(database_url, project))
