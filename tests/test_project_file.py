"""The project file (``collab-project/1``): a version exported, imported into a new
project derived from the exported version's DAID, and exported again with the same
document; bad files refused and nothing stored."""

from __future__ import annotations

from typing import Any

import httpx

from tests.live import running_server
from tests.support import eventually
from tests.test_midi import project_count


async def test_export_import_export_keeps_the_document(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        created = await http.post("/api/projects", json={"name": "Fjord", "tempo": 84})
        project = created.json()["id"]
        operations: list[dict[str, Any]] = [
            {"op": "add_track", "track_id": "bass", "name": "Bass", "kind": "midi", "pan": -0.25},
            {"op": "add_track", "track_id": "kit", "name": "Kit", "kind": "drums"},
            {
                "op": "add_clip",
                "track_id": "bass",
                "clip_id": "c1",
                "name": "Ünïcödé riff",
                "start_beats": 4,
                "length_beats": 8,
            },
            {
                "op": "add_notes",
                "track_id": "bass",
                "clip_id": "c1",
                "notes": [{"pitch": 33, "start": 0.5, "duration": 1.25, "velocity": 90}],
            },
            {
                "op": "add_effect",
                "track_id": "kit",
                "effect_id": "comp",
                "type": "compressor",
                "params": {"ratio": 4, "knee": "soft"},
            },
            {
                "op": "set_automation",
                "track_id": "bass",
                "parameter": "volume_db",
                "points": [{"time": 0, "value": -3, "curve": "linear"}],
            },
        ]
        edited = await http.post(f"/api/projects/{project}/edits", json={"operations": operations})
        assert edited.status_code == 200, edited.text
        tag = await http.post(f"/api/projects/{project}/snapshots", json={"name": "demo"})
        assert tag.status_code == 201
        later = await http.post(
            f"/api/projects/{project}/edits",
            json={"operations": [{"op": "remove_track", "track_id": "kit"}]},
        )
        assert later.status_code == 200

        version = edited.json()["version"]
        exported = await http.get(
            f"/api/projects/{project}/export.json?version={version}&min_position="
            f"{tag.json()['position']}"
        )
        assert exported.status_code == 200, exported.text
        assert "Fjord-v" in exported.headers["content-disposition"]
        file = exported.json()
        assert file["format"] == "collab-project/1"
        assert file["project"] == {
            "id": project,
            "name": "Fjord",
            "version": version,
            "daid": edited.json()["daid"],
        }
        assert set(file["document"]["tracks"]) == {"bass", "kit"}  # that version's
        # the tag names the exported version (the document it tagged)
        assert file["snapshots"] == [{"name": "demo", "description": "", "version": version}]

        imported = await http.post("/api/imports/json", json=file)
        assert imported.status_code == 201, imported.text
        copy = imported.json()["id"]

        async def exported_again() -> dict[str, Any] | None:
            again = await http.get(f"/api/projects/{copy}/export.json")
            return again.json() if again.status_code == 200 else None

        await eventually(exported_again, 15, "the import cannot be exported")
        again = await exported_again()
        assert again is not None
        assert again["document"] == file["document"]
        assert again["project"]["name"] == "Fjord"

        lineage = f"/api/daids/{imported.json()['daid']}/lineage?direction=ancestors&depth=3"

        async def derived() -> bool:
            response = await http.get(lineage)
            if response.status_code != 200:
                return False
            edges = {(e["child"], e["parent"]) for e in response.json()["edges"]}
            return (imported.json()["daid"], file["project"]["daid"]) in edges

        await eventually(derived, 15, "the import does not derive from the exported version")


async def test_bad_project_files_are_refused_and_nothing_stored(database_url: str) -> None:
    good = {
        "format": "collab-project/1",
        "project": {"id": "x", "name": "X", "version": 1},
        "document": {"meta": {"name": "X"}},
    }
    bad = {
        "unknown format": {**good, "format": "collab-project/9"},
        "tracks not objects": {**good, "document": {"tracks": {"t": [1, 2]}}},
        "unknown field": {**good, "extra": True},
        "no project": {"format": "collab-project/1", "document": {}},
        "not a DAID": {**good, "project": {"id": "x", "name": "X", "version": 1, "daid": "x"}},
        "an int past floats": {**good, "document": {"meta": {"tempo": 10**400}}},
        "tempo in words": {**good, "document": {"meta": {"tempo": "fast"}}},
        "a pitch of 500": {
            **good,
            "document": {
                "tracks": {
                    "t": {"clips": {"c": {"notes": [{"pitch": 500, "start": 0, "duration": 1}]}}}
                }
            },
        },
    }
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        before = await project_count(database_url)
        for name, body in bad.items():
            response = await http.post("/api/imports/json", json=body)
            assert response.status_code == 422, (name, response.text)
            assert response.json()["message"], name
        outside = await http.post("/api/imports/json", json=bad["a pitch of 500"])
        assert "tracks.t.clips.c.notes.0.pitch: 500 is above 127" in outside.text
        nul = await http.post(
            "/api/imports/json",
            content=b'{"format": "collab-project/1", "project": {"id": "x", "name": "X",'
            b' "version": 1}, "document": {"meta": {"name": "a\\u0000b"}}}',
            headers={"Content-Type": "application/json"},
        )
        assert nul.status_code == 422, nul.text
        assert await project_count(database_url) == before
        ok = await http.post("/api/imports/json", json=good)
        assert ok.status_code == 201, ok.text
