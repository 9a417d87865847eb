"""The read side over HTTP against a real server and PostgreSQL: project list and view,
time travel, diff, snapshots, read-your-writes (history: tests/test_history_api.py)."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pycrdt

from collab.http.openapi import build
from collab.runtime.config import ReadSettings
from events import EventMetadata, NewEvent
from events.models import (
    DOCUMENT_EVENTS,
    AnalysisRecorded,
    DocUpdated,
    MemberGranted,
    ToolInfo,
    project_stream,
)
from events.postgres import PostgresEventStore
from events.store import ANY
from music import document
from music.diff import diff
from tests.documents import random_daw_edit
from tests.live import (
    YClient,
    create_project,
    log_doc,
    project_events,
    projections_running,
    running_server,
)
from tests.reading import TRACK, edit, every_page, history, http
from tests.support import eventually


async def _grant(database_url: str, project: str, user: str) -> None:
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    try:
        meta = EventMetadata(actor="ana")
        await store.append(
            project_stream(project),
            [
                NewEvent(MemberGranted(user=user, role="editor"), meta),
                NewEvent(
                    AnalysisRecorded(
                        analysis_type="audio_analysis",
                        target={"version": 2},
                        results={"tempo_bpm": 120},
                        tool=ToolInfo(agent_id="analyzer"),
                    ),
                    meta,
                ),
            ],
        )
    finally:
        await store.close()


async def test_project_list_filters_and_pages(database_url):
    async with running_server(database_url) as address, http(address) as client:
        names = ["Blue Monday", "Red Rain", "blue velvet", "Green Onions", "Deep Blue"]
        ids = {name: await create_project(address, name) for name in names}
        await _grant(database_url, ids["Red Rain"], "zoe")
        events = await project_events(database_url, ids["Red Rain"])
        position = events[-1].position
        body = (await client.get("/api/projects", params={"min_position": position})).json()
        assert [p["name"] for p in body["projects"]] == [
            "Red Rain",
            "Deep Blue",
            "Green Onions",
            "blue velvet",
            "Blue Monday",
        ]
        blue = (await client.get("/api/projects", params={"name": "blue"})).json()
        assert {p["name"] for p in blue["projects"]} == {"Blue Monday", "blue velvet", "Deep Blue"}
        zoe = (await client.get("/api/projects", params={"member": "zoe"})).json()
        assert [p["id"] for p in zoe["projects"]] == [ids["Red Rain"]]
        owner = (await client.get("/api/projects", params={"member": "api"})).json()
        assert len(owner["projects"]) == 5
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        later = (await client.get("/api/projects", params={"updated_since": future})).json()
        assert later["projects"] == []
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        recent = (await client.get("/api/projects", params={"updated_since": past})).json()
        assert len(recent["projects"]) == 5
        percent = (await client.get("/api/projects", params={"name": "%"})).json()
        assert percent["projects"] == []

        # pages of two, each project exactly once
        async def page(cursor: str | None) -> Any:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            return (await client.get("/api/projects", params=params)).json()

        pages = await every_page(page, most=len(names) + 1)
        seen = [p["name"] for body in pages for p in body["projects"]]
        assert seen == [p["name"] for p in body["projects"]]
        for params in (
            {"limit": 0},
            {"limit": "x"},
            {"updated_since": "yesterday"},
            {"updated_since": "2026-01-01T00:00:00"},
        ):
            bad = await client.get("/api/projects", params=params)
            assert bad.status_code == 422, params
            assert bad.json()["fields"]


async def test_project_view_shows_the_current_project(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address, "Mix")
        clip = {"track_id": "bass", "clip_id": "v1"}
        await edit(
            client,
            project,
            [
                TRACK,
                {
                    "op": "add_track",
                    "track_id": "drums",
                    "name": "Drums",
                    "kind": "drums",
                    "index": 0,
                },
                {
                    "op": "update_track",
                    "track_id": "bass",
                    "fields": {"volume_db": -4.5, "mute": True},
                },
                {"op": "add_clip", **clip, "name": "Verse", "start_beats": 0, "length_beats": 8},
                {
                    "op": "add_notes",
                    **clip,
                    "notes": [
                        {"pitch": 40, "start": 0, "duration": 1},
                        {"pitch": 43, "start": 1, "duration": 1},
                    ],
                },
                {
                    "op": "add_effect",
                    "track_id": "bass",
                    "effect_id": "eq",
                    "type": "eq",
                    "params": {"low": -2},
                },
            ],
        )
        await _grant(database_url, project, "zoe")
        position = (await project_events(database_url, project))[-1].position
        response = await client.get(f"/api/projects/{project}", params={"min_position": position})
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["name"] == "Mix"
        assert view["position"] == position
        assert view["meta"]["tempo"] == 120.0
        assert [t["id"] for t in view["tracks"]] == ["drums", "bass"]
        bass = view["tracks"][1]
        assert bass["mixer"] == {
            "volume_db": -4.5,
            "pan": 0.0,
            "mute": True,
            "solo": False,
            "armed": False,
        }
        assert bass["effects"] == [
            {"id": "eq", "type": "eq", "enabled": True, "params": {"low": -2.0}}
        ]
        assert bass["clips"] == [
            {
                "id": "v1",
                "name": "Verse",
                "start_beats": 0.0,
                "length_beats": 8.0,
                "source": None,
                "note_count": 2,
            }
        ]
        assert bass["note_count"] == 2
        assert {m["user"]: m["role"] for m in view["members"]} == {"api": "owner", "zoe": "editor"}
        assert view["analyses"] == {"audio_analysis": 1}
        assert view["snapshots"] == []
        assert (await client.get("/api/projects/not-a-uuid")).status_code == 404
        unknown = await client.get("/api/projects/8d0c5a44-0000-4000-8000-000000000000")
        assert unknown.status_code == 404


async def test_min_position_waits_then_gives_up_with_503(database_url):
    read = ReadSettings(projection_wait=0.3)
    async with running_server(database_url, read=read) as address, http(address) as client:
        await projections_running(address)
        project = await create_project(address)
        done = await edit(client, project, [TRACK])
        ok = await client.get(f"/api/projects/{project}", params={"min_position": done["position"]})
        assert ok.status_code == 200
        assert ok.json()["version"] >= done["version"]
        far = await client.get(f"/api/projects/{project}", params={"min_position": 10**9})
        assert far.status_code == 503
        assert "have not reached position 1000000000" in far.json()["message"]
        bad = await client.get(f"/api/projects/{project}", params={"min_position": -1})
        assert bad.status_code == 422


async def _log_json(database_url: str, project: str, version: int) -> dict[str, Any]:
    """Replay the log up to ``version`` into a fresh pycrdt document (the reference)."""
    doc = document.new_document()
    for event in await project_events(database_url, project):
        if event.stream_version > version:
            break
        if event.event_type in DOCUMENT_EVENTS and event.payload:
            doc.apply_update(event.payload)
    return document.to_json(doc)


async def test_time_travel_equals_replaying_the_log(database_url):
    # Stored states every 10 versions, so reads mix a state with replayed events.
    read = ReadSettings(state_every=10)
    async with running_server(database_url, read=read) as address, http(address) as client:
        project = await create_project(address)
        editor = await YClient(address, project).connect()
        await editor.wait_synced()
        rng = random.Random(7)
        for _ in range(60):
            random_daw_edit(rng, editor.doc)
            await asyncio.sleep(0.005)
        await editor.disconnect()

        async def stored() -> bool:  # the editor's last updates may still be on their way
            return len(await project_events(database_url, project)) >= 40

        await eventually(stored, 30, "the editor's updates did not reach the log", interval=0.1)
        events = await project_events(database_url, project)
        last = events[-1].stream_version
        picks = sorted({1, 2, last, *rng.sample(range(1, last + 1), 12)})
        for version in picks:
            response = await client.get(f"/api/projects/{project}/versions/{version}")
            assert response.status_code == 200, response.text
            assert response.json()["document"] == await _log_json(database_url, project, version)
        a, b = picks[2], picks[-2]
        response = await client.get(f"/api/projects/{project}/diff", params={"from": a, "to": b})
        assert response.status_code == 200
        body = response.json()
        expected = diff(
            await _log_json(database_url, project, a), await _log_json(database_url, project, b)
        )
        assert len(body["added"]) + len(body["removed"]) + len(body["changed"]) == len(expected)
        assert [c["path"] for c in body["changed"]] == [
            list(c.path) for c in expected if c.op == "changed"
        ]
        for version in (0, last + 1):
            missing = await client.get(f"/api/projects/{project}/versions/{version}")
            assert missing.status_code == 404
            assert "has no version" in missing.json()["message"]
        assert (
            await client.get(f"/api/projects/{project}/diff", params={"from": 1})
        ).status_code == 422
        assert (
            await client.get(f"/api/projects/{project}/diff", params={"from": 1, "to": last + 5})
        ).status_code == 404


async def test_snapshots_are_unique_per_project(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        other = await create_project(address)
        done = await edit(client, project, [TRACK])
        url = f"/api/projects/{project}/snapshots"
        created = await client.post(url, json={"name": "before mix", "description": "rough"})
        assert created.status_code == 201, created.text
        tag = created.json()
        assert tag["version"] == done["version"]
        assert tag["event_version"] == done["version"] + 1
        again = await client.post(url, json={"name": "before mix"})
        assert again.status_code == 409
        assert "already has a snapshot named 'before mix'" in again.json()["message"]
        # the same name in another project is fine
        elsewhere = await client.post(
            f"/api/projects/{other}/snapshots", json={"name": "before mix"}
        )
        assert elsewhere.status_code == 201
        listed = (await client.get(url, params={"min_position": tag["position"]})).json()
        assert [(s["name"], s["version"], s["description"]) for s in listed["snapshots"]] == [
            ("before mix", done["version"], "rough")
        ]
        for body in ({}, {"name": ""}, {"name": "x", "extra": 1}):
            bad = await client.post(url, json=body)
            assert bad.status_code == 422, body
        missing = "/api/projects/8d0c5a44-0000-4000-8000-000000000000/snapshots"
        assert (await client.post(missing, json={"name": "x"})).status_code == 404
        assert (await client.get(missing)).status_code == 404
        # Racing tags with one name: exactly one wins.
        results = await asyncio.gather(*(client.post(url, json={"name": "race"}) for _ in range(6)))
        assert sorted(r.status_code for r in results) == [201] + [409] * 5
        events = await project_events(database_url, project)
        assert sum(1 for e in events if e.event_type == "snapshot.tagged") == 2


async def test_openapi_describes_every_route(database_url):
    from collab.app import create_app  # noqa: PLC0415

    app = create_app(database_url)
    document_paths = build()["paths"]
    for route in app.routes:
        methods = getattr(route, "methods", None)
        if not methods:
            continue  # the WebSocket route
        path = route.path.replace(":int}", "}")
        for method in methods - {"HEAD"}:
            assert method.lower() in document_paths.get(path, {}), f"{method} {path}"
    async with running_server(database_url) as address, http(address) as client:
        served = (await client.get("/api/openapi.json")).json()
        assert served["openapi"].startswith("3.1")
        rollback = served["paths"]["/api/projects/{project_id}/rollback"]["post"]
        schema = rollback["requestBody"]["content"]["application/json"]["schema"]
        name = schema["$ref"].rsplit("/", 1)[-1]
        assert set(served["components"]["schemas"][name]["properties"]) == {"version", "snapshot"}
        json.dumps(served)


async def test_numbers_json_cannot_hold_do_not_stop_the_projection(database_url):
    """Yjs stores any double, and logs written before the live path refused NaN and
    infinity hold them; JSON has no such numbers, so the read models show them as null
    instead of failing on that event for good."""
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        doc = await log_doc(database_url, project)
        updates: list[bytes] = []
        doc.observe(lambda event: updates.append(event.update))
        meta = doc.get(document.META, type=pycrdt.Map)
        with doc.transaction():
            meta["tempo"] = float("nan")
            meta["key"] = "D minor"
        meta["sample_rate"] = float("inf")
        store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
        try:
            for update in updates:  # as an older server stored them
                await store.append(
                    project_stream(project),
                    [NewEvent(DocUpdated(update=update), EventMetadata(actor="old-log"))],
                    ANY,
                )
        finally:
            await store.close()
        events = await project_events(database_url, project)
        head = events[-1]
        body = await history(client, project, head.position)
        assert body["entries"][0]["version"] == head.stream_version
        view = (await client.get(f"/api/projects/{project}")).json()
        assert view["meta"]["tempo"] is None
        assert view["meta"]["key"] == "D minor"
        assert view["meta"]["sample_rate"] is None
        old = await client.get(f"/api/projects/{project}/versions/{head.stream_version - 1}")
        assert old.status_code == 200, old.text
        assert old.json()["document"]["meta"]["tempo"] is None
