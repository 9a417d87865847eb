"""Analyses, provenance records and DAID lineage over HTTP, against a real server.

The scenario an auditor cares about: two people edit a project, the audio-analysis
agent (an AI model) analyses version N, the renderer renders a master from version N
using that analysis, and "who and what contributed to the master" is one query.

A little over 400 lines: one scenario per test, all on the same server and the same
edited project.
"""

from __future__ import annotations

from typing import Any

import httpx

from events import daid as daid_module
from tests.live import create_project, running_server
from tests.test_daid import ECOSYSTEM
from tests.test_read_api import TRACK, edit, http

AUDIO_AGENT = {
    "agent_id": "audio-agent",
    "version": "2.1",
    "model": "beat-net-7",
    "ai_involved": True,
}
RENDERER = {"agent_id": "renderer", "version": "1.0"}
SHA = "ab" * 32


async def post(client: httpx.AsyncClient, path: str, body: Any, status: int = 201) -> Any:
    response = await client.post(path, json=body, headers={"X-Actor": "svc"})
    assert response.status_code == status, response.text
    return response.json()


async def get(client: httpx.AsyncClient, path: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


async def _head(client: httpx.AsyncClient, project: str) -> int:
    return int((await get(client, f"/api/projects/{project}/document"))["position"])


async def _project_with_edits(client: httpx.AsyncClient, address: str) -> tuple[str, int]:
    project = await create_project(address)
    await edit(client, project, [TRACK], actor="alice")
    await edit(
        client,
        project,
        [
            {
                "op": "add_clip",
                "track_id": "bass",
                "clip_id": "v1",
                "name": "Verse",
                "start_beats": 0,
                "length_beats": 8,
            }
        ],
        actor="bob",
    )
    done = await edit(
        client, project, [{"op": "set_meta", "fields": {"tempo": 126}}], actor="alice"
    )
    return project, int(done["version"])


async def test_analysis_attaches_typed_results_to_a_version(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project, version = await _project_with_edits(client, address)
        path = f"/api/projects/{project}/analyses"
        made = await post(
            client,
            path,
            {
                "type": "audio_analysis",
                "target": {"version": version, "track_id": "bass"},
                "inputs": [ECOSYSTEM[0]],
                "results": {
                    "tempo_bpm": 126.0,
                    "key": "A minor",
                    "time_signature": "4/4",
                    "features": {"rms": 0.31},
                },
                "tool": AUDIO_AGENT,
            },
        )
        parsed = daid_module.parse(made["daid"])
        assert (parsed.agent_id, parsed.entity_type) == ("audio-agent", "audio_analysis")
        version_daid = made["target"]["daid"]
        assert made["parents"] == [version_daid, ECOSYSTEM[0]]
        await post(
            client,
            path,
            {
                "type": "performance_analysis",
                "results": {
                    "pitch_accuracy": 0.92,
                    "rhythm_accuracy": 0.85,
                    "dynamics_range_db": 18,
                    "overall_score": 88,
                    "feedback": ["rushes in bar 3"],
                },
                "tool": AUDIO_AGENT,
            },
        )
        notes = [{"start": 0.0, "end": 0.5, "pitch": 45, "velocity": 90, "confidence": 0.9}]
        last = await post(
            client,
            path,
            {
                "type": "transcription",
                "target": {"version": 2},
                "results": {"notes": notes},
                "tool": AUDIO_AGENT,
            },
        )
        last = await post(
            client, path, {"type": "loudness", "results": {"lufs": -9.5}, "tool": RENDERER}
        )
        listed = await get(client, path, min_position=last["position"])
        assert [a["type"] for a in listed["analyses"]] == [
            "loudness",
            "transcription",
            "performance_analysis",
            "audio_analysis",
        ]
        assert listed["analyses"][3]["results"]["tempo_bpm"] == 126.0
        assert listed["analyses"][3]["target"] == {
            "version": version,
            "daid": version_daid,
            "track_id": "bass",
            "clip_id": None,
        }
        assert listed["analyses"][2]["target"]["version"] == version + 1
        only = await get(client, path, type="transcription")
        assert [a["results"]["notes"] for a in only["analyses"]] == [notes]
        by_track = await get(client, path, track_id="bass")
        assert [a["type"] for a in by_track["analyses"]] == ["audio_analysis"]
        by_version = await get(client, path, version=2)
        assert [a["type"] for a in by_version["analyses"]] == ["transcription"]
        page = await get(client, path, limit=3)
        rest = await get(client, path, limit=3, cursor=page["next_cursor"])
        assert len(page["analyses"]) == 3
        assert [a["type"] for a in rest["analyses"]] == ["audio_analysis"]
        assert rest["next_cursor"] is None
        view = await get(client, f"/api/projects/{project}")
        assert view["analyses"] == {
            "audio_analysis": 1,
            "loudness": 1,
            "performance_analysis": 1,
            "transcription": 1,
        }


async def test_bad_analyses_and_provenance_are_refused_and_not_stored(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project, version = await _project_with_edits(client, address)
        head = await _head(client, project)
        path = f"/api/projects/{project}/analyses"
        good = {"type": "audio_analysis", "results": {"tempo_bpm": 120}, "tool": AUDIO_AGENT}
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (path, {**good, "results": {"tempo_bpm": -3}}, 422, "results.tempo_bpm"),
            (path, {**good, "results": {"tempo": 120}}, 422, "results.tempo"),
            (
                path,
                {
                    **good,
                    "type": "transcription",
                    "results": {"notes": [{"start": 1, "end": 0.5, "pitch": 60, "velocity": 1}]},
                },
                422,
                "results.notes.0",
            ),
            (
                path,
                {**good, "type": "performance_analysis", "results": {"pitch_accuracy": 1.5}},
                422,
                "results.pitch_accuracy",
            ),
            (
                path,
                {**good, "inputs": ["daid:v1.0:2025-07-20T21:24:45Z:a:b:c:XYZ"]},
                422,
                "inputs.0",
            ),
            (path, {**good, "target": {"version": version + 50}}, 422, "version"),
            (path, {**good, "target": {"track_id": "nope"}}, 422, "target.track_id"),
            (
                path,
                {**good, "target": {"track_id": "bass", "clip_id": "nope"}},
                422,
                "target.clip_id",
            ),
            (path, {**good, "tool": {}}, 422, "tool.agent_id"),
            ("/api/projects/00000000-0000-0000-0000-000000000000/analyses", good, 404, ""),
            (
                "/api/provenance",
                {
                    "entity": {"type": "master", "id": "m1", "content_hash": "abc"},
                    "activity": "render",
                    "tool": RENDERER,
                },
                422,
                "entity.content_hash",
            ),
            (
                "/api/provenance",
                {
                    "entity": {"type": "master", "id": "m1", "content_hash": SHA},
                    "activity": "render",
                    "tool": RENDERER,
                    "derived_from": ["daid:v2.0:x"],
                },
                422,
                "derived_from.0",
            ),
            (
                "/api/provenance",
                {
                    "project_id": "00000000-0000-0000-0000-000000000000",
                    "entity": {"type": "master", "id": "m1", "content_hash": SHA},
                    "activity": "render",
                    "tool": RENDERER,
                },
                404,
                "",
            ),
        ]
        for target, body, status, field in cases:
            response = await client.post(target, json=body)
            assert response.status_code == status, (body, response.text)
            error = response.json()
            assert error["error"] == status
            if field:
                assert field in [f["field"] for f in error["fields"]], error
        bad_daid = await client.post(
            path, json={**good, "inputs": ["daid:v1.0:2025-07-20T21:24:45Z:a:b:c:XYZ"]}
        )
        assert "hash16" in bad_daid.json()["message"]
        assert await _head(client, project) == head
        assert (await get(client, path))["analyses"] == []


async def test_who_contributed_to_a_master_is_one_query(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project, version = await _project_with_edits(client, address)
        analysis = await post(
            client,
            f"/api/projects/{project}/analyses",
            {
                "type": "audio_analysis",
                "target": {"version": version},
                "results": {"tempo_bpm": 126},
                "tool": AUDIO_AGENT,
            },
        )
        # Someone keeps editing after the render's version: not an ancestor of the master.
        await edit(client, project, [{"op": "set_meta", "fields": {"tempo": 90}}], actor="carol")
        master = await post(
            client,
            "/api/provenance",
            {
                "project_id": project,
                "version": version,
                "entity": {"type": "master", "id": "song-master.wav", "content_hash": SHA},
                "activity": "render",
                "tool": RENDERER,
                "derived_from": [analysis["daid"], ECOSYSTEM[2]],
                "attributes": {"format": "wav", "sample_rate": 48000},
            },
        )
        daid = master["daid"]
        wait = {"min_position": master["position"]}
        who = await get(client, f"/api/daids/{daid}/contributors", **wait)
        assert [p["name"] for p in who["people"]] == ["alice", "api", "bob", "svc"]
        assert [s["name"] for s in who["services"]] == [
            "audio-agent",
            "renderer",
            "schillinger-frontend",
        ]
        assert [m["name"] for m in who["ai_models"]] == ["beat-net-7"]
        assert who["truncated"] is False

        lineage = await get(client, f"/api/daids/{daid}/lineage", **wait)
        nodes = {n["daid"]: n for n in lineage["nodes"]}
        assert nodes[daid]["depth"] == 0
        external = nodes[ECOSYSTEM[2]]
        assert (external["known"], external["agent_id"], external["depth"]) == (
            False,
            "schillinger-frontend",
            1,
        )
        versions = sorted(
            n["version"]
            for n in nodes.values()
            if n["event_type"] in ("project.created", "doc.updated")
        )
        assert versions == list(range(1, version + 1))  # every version up to the rendered one
        relations = {(e["child"], e["parent"]): e["relation"] for e in lineage["edges"]}
        assert relations[(daid, analysis["daid"])] == "derived_from"
        assert relations[(daid, master["parents"][0])] == "version"
        assert relations[(analysis["daid"], analysis["target"]["daid"])] == "analysed"
        assert "previous_version" in relations.values()

        shallow = await get(client, f"/api/daids/{daid}/lineage", depth=1, **wait)
        assert {n["depth"] for n in shallow["nodes"]} == {0, 1}
        capped = await get(client, f"/api/daids/{daid}/lineage", max_nodes=3, **wait)
        assert len(capped["nodes"]) == 3
        assert capped["truncated"] is True

        first_version = next(n for n in nodes.values() if n["version"] == 1)
        down = await get(
            client,
            f"/api/daids/{first_version['daid']}/lineage",
            direction="descendants",
            depth=100,
            **wait,
        )
        assert daid in {n["daid"] for n in down["nodes"]}
        before = await get(
            client,
            f"/api/daids/{first_version['daid']}/lineage",
            direction="descendants",
            depth=100,
            as_of=analysis["position"],
            **wait,
        )
        assert daid not in {n["daid"] for n in before["nodes"]}
        assert analysis["daid"] in {n["daid"] for n in before["nodes"]}
        await get(client, f"/api/daids/{daid}", 404, as_of=analysis["position"])

        await _check_prov(client, daid, analysis["daid"], wait)
        await _check_node_and_errors(client, daid, master, wait)


async def _check_prov(
    client: httpx.AsyncClient, daid: str, analysis: str, wait: dict[str, Any]
) -> None:
    prov = await get(client, f"/api/daids/{daid}/prov", **wait)
    assert prov["entity"][daid]["prov:type"] == "collab:master"
    assert prov["entity"][daid]["collab:content_sha256"] == SHA
    assert prov["agent"]["person:alice"]["prov:type"] == "prov:Person"
    assert prov["agent"]["model:beat-net-7"]["prov:type"] == "prov:SoftwareAgent"
    generated = {(g["prov:entity"], g["prov:activity"]) for g in prov["wasGeneratedBy"].values()}
    activity = next(a for e, a in generated if e == daid)
    assert prov["activity"][activity]["prov:type"] == "collab:render"
    used = {(u["prov:activity"], u["prov:entity"]) for u in prov["used"].values()}
    assert (activity, analysis) in used
    derived = {
        (d["prov:generatedEntity"], d["prov:usedEntity"]) for d in prov["wasDerivedFrom"].values()
    }
    assert (daid, ECOSYSTEM[2]) in derived
    assert {(a["prov:activity"], a["prov:agent"]) for a in prov["wasAssociatedWith"].values()} >= {
        (activity, "service:renderer")
    }
    assert any(d["prov:delegate"] == "model:beat-net-7" for d in prov["actedOnBehalfOf"].values())


async def _check_node_and_errors(
    client: httpx.AsyncClient, daid: str, master: dict[str, Any], wait: dict[str, Any]
) -> None:
    one = await get(client, f"/api/daids/{daid}", **wait)
    assert one["integrity"]["daid_hash_ok"] is True
    assert one["integrity"]["content_hash_ok"] is True
    assert {p["daid"] for p in one["parents"]} == set(master["parents"])
    await get(client, f"/api/daids/{ECOSYSTEM[0].replace('test_123', 'nope')}", 404)
    bad = await client.get("/api/daids/daid:v1.0:2025-13-45T99:00:00Z:a:b:c:0123456789abcdef")
    assert bad.status_code == 422
    assert "timestamp" in bad.json()["message"]
    await get(client, f"/api/daids/{daid}/lineage", 422, direction="sideways")
    await get(client, f"/api/daids/{daid}/lineage", 422, as_of="yesterday")
    global_record = await post(
        client,
        "/api/provenance",
        {
            "entity": {"type": "preset", "id": "warm-pad", "content_hash": SHA},
            "activity": "import",
            "tool": RENDERER,
            "ai_involvement": "generated",
        },
    )
    assert global_record["stream_id"] == "provenance"
    assert global_record["parents"] == []


async def test_a_rollback_derives_from_the_current_and_the_target_version(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project, version = await _project_with_edits(client, address)
        response = await client.post(f"/api/projects/{project}/rollback", json={"version": 2})
        assert response.status_code == 200, response.text
        rolled = response.json()
        lineage = await get(
            client,
            f"/api/daids/{rolled['daid']}/lineage",
            depth=1,
            min_position=rolled["position"],
        )
        by_relation = {e["relation"]: e["parent"] for e in lineage["edges"]}
        versions = {n["daid"]: n["version"] for n in lineage["nodes"]}
        assert versions[by_relation["previous_version"]] == version
        assert versions[by_relation["restores"]] == 2
