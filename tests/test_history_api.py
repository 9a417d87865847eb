"""Project history over HTTP against a real server and PostgreSQL: a summary for every
kind of edit, groups of consecutive edits, pages with a cursor."""

from __future__ import annotations

from typing import Any

from tests.live import create_project, running_server
from tests.reading import TRACK, edit, every_page, history, http


async def test_history_summarizes_every_kind_of_edit(database_url):
    clip = {"track_id": "bass", "clip_id": "v1"}
    effect = {"track_id": "bass", "effect_id": "rv"}
    steps: list[tuple[list[dict[str, Any]], list[str]]] = [
        (
            [{"op": "set_meta", "fields": {"tempo": 128, "key": "A minor"}}],
            ["tempo 120.0 → 128.0", 'set key to "A minor"'],
        ),
        ([TRACK], ["added track Bass"]),
        (
            [{"op": "update_track", "track_id": "bass", "fields": {"volume_db": -6}}],
            ["Bass: volume_db 0.0 → -6.0"],
        ),
        (
            [{"op": "update_track", "track_id": "bass", "fields": {"name": "Low end"}}],
            ['renamed track "Bass" → "Low end"'],
        ),
        ([{"op": "add_track", "track_id": "drums", "name": "Drums"}], ["added track Drums"]),
        ([{"op": "move_track", "track_id": "drums", "index": 0}], ["reordered tracks"]),
        (
            [{"op": "add_clip", **clip, "name": "Verse 1", "start_beats": 0, "length_beats": 16}],
            ["added clip Verse 1 to Low end"],
        ),
        (
            [{"op": "update_clip", **clip, "fields": {"start_beats": 4}}],
            ["Low end / Verse 1: start_beats 0.0 → 4.0"],
        ),
        (
            [
                {
                    "op": "add_notes",
                    **clip,
                    "notes": [
                        {"id": name, "pitch": 60 + i, "start": i, "duration": 1}
                        for i, name in enumerate("abc")
                    ],
                }
            ],
            ["notes a, b, c added to clip Verse 1"],
        ),
        (
            [{"op": "update_notes", **clip, "notes": [{"id": "b", "velocity": 64}]}],
            ["note b changed in clip Verse 1"],
        ),
        ([{"op": "remove_notes", **clip, "ids": ["a"]}], ["note a removed from clip Verse 1"]),
        ([{"op": "remove_notes", **clip, "indices": [1]}], ["note c removed from clip Verse 1"]),
        (
            [{"op": "add_effect", **effect, "type": "reverb", "params": {"mix": 0.2}}],
            ["added effect reverb to Low end"],
        ),
        (
            [{"op": "update_effect", **effect, "params": {"mix": 0.3}}],
            ["Low end / reverb: params.mix 0.2 → 0.3"],
        ),
        (
            [{"op": "update_effect", **effect, "enabled": False}],
            ["Low end / reverb: enabled on → off"],
        ),
        (
            [
                {
                    "op": "set_automation",
                    "track_id": "bass",
                    "parameter": "volume_db",
                    "points": [{"time": 0, "value": -6}, {"time": 8, "value": 0}],
                }
            ],
            ["Low end: automation volume_db changed"],
        ),
        ([{"op": "remove_effect", **effect}], ["removed effect reverb from Low end"]),
        ([{"op": "remove_clip", **clip}], ["removed clip Verse 1 from Low end"]),
        ([{"op": "remove_track", "track_id": "drums"}], ["removed track Drums"]),
    ]
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address, "Summaries")
        expected: dict[int, list[str]] = {}
        position = 0
        for ops, lines in steps:
            done = await edit(client, project, ops)
            expected[done["version"]] = lines
            position = done["position"]
        body = await history(client, project, position, limit=100)
        entries = body["entries"]
        assert [e["version"] for e in entries] == sorted(
            (e["version"] for e in entries), reverse=True
        )
        got = {e["version"]: e["summary"] for e in entries}
        for version, lines in expected.items():
            assert sorted(got[version]) == sorted(lines), f"version {version}"
        oldest = entries[-1]
        assert oldest["event_type"] == "project.created"
        assert oldest["summary"] == ['created project "Summaries"']
        # (a Yjs map does not keep insertion order)
        assert sorted(entries[-2]["summary"]) == [
            'set name to "Summaries"',
            "set sample_rate to 48000.0",
            "set tempo to 120.0",
            'set time_signature to "4/4"',
        ]
        newest = entries[0]
        assert newest["actor"] == "ana"
        assert newest["daid"].startswith("daid:v1.0:")
        assert newest["position"] == position


async def test_history_groups_consecutive_edits_of_one_actor(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        await edit(client, project, [TRACK], actor="ana")
        # A fader drag: five moves by ana, then one edit by ben, then ana again.
        for value in (-1, -2, -3, -4, -5):
            await edit(
                client,
                project,
                [{"op": "update_track", "track_id": "bass", "fields": {"volume_db": value}}],
            )
        await edit(client, project, [{"op": "set_meta", "fields": {"tempo": 99}}], actor="ben")
        done = await edit(
            client, project, [{"op": "update_track", "track_id": "bass", "fields": {"pan": 0.5}}]
        )
        grouped = (await history(client, project, done["position"], group="actor", window="60s"))[
            "entries"
        ]
        summaries = [e["summary"] for e in grouped]
        assert summaries[:3] == [
            ["Bass: pan 0.0 → 0.5"],
            ["tempo 120.0 → 99.0"],
            # the track's creation and the drag are one group: the drag is inside it
            ["added track Bass"],
        ]
        drag = grouped[2]
        assert drag["grouped"]["count"] == 6
        assert drag["actor"] == "ana"
        assert drag["version"] - drag["grouped"]["from_version"] == 5
        # A window shorter than any gap groups nothing.
        plain = (await history(client, project, done["position"]))["entries"]
        tiny = (await history(client, project, done["position"], group="actor", window="0ms"))[
            "entries"
        ]
        assert [e["summary"] for e in tiny] == [e["summary"] for e in plain]

        # Grouped pages: one group per page, every version exactly once overall.
        async def grouped(cursor: str | None) -> Any:
            params = {"group": "actor", "window": "60s", "limit": 1}
            cursor_param = {"cursor": cursor} if cursor else {}
            return await history(client, project, done["position"], **params, **cursor_param)

        pages = await every_page(grouped, most=done["version"] + 1)
        seen: list[int] = []
        for entry in (e for body in pages for e in body["entries"]):
            first = entry.get("grouped", {}).get("from_version", entry["version"])
            seen.extend(range(first, entry["version"] + 1))
        assert sorted(seen) == list(range(1, done["version"] + 1))
        assert len(pages) == len(
            (
                await history(
                    client, project, done["position"], group="actor", window="60s", limit=500
                )
            )["entries"]
        )
        bad = await client.get(f"/api/projects/{project}/history", params={"group": "day"})
        assert bad.status_code == 422
        assert bad.json()["fields"][0]["field"] == "group"
        bad = await client.get(
            f"/api/projects/{project}/history", params={"group": "actor", "window": "soon"}
        )
        assert bad.status_code == 422
        bad = await client.get(f"/api/projects/{project}/history", params={"cursor": "nope"})
        assert bad.status_code == 400


async def test_history_pages_with_a_cursor(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        done = None
        for tempo in range(60, 72):
            done = await edit(client, project, [{"op": "set_meta", "fields": {"tempo": tempo}}])
        assert done is not None

        async def page(cursor: str | None) -> Any:
            cursor_param = {"cursor": cursor} if cursor else {}
            return await history(client, project, done["position"], limit=5, **cursor_param)

        pages = await every_page(page, most=done["version"] + 1)
        assert all(len(body["entries"]) <= 5 for body in pages)
        versions = [e["version"] for body in pages for e in body["entries"]]
        assert versions == list(range(done["version"], 0, -1))
        missing = await client.get("/api/projects/8d0c5a44-0000-4000-8000-000000000000/history")
        assert missing.status_code == 404
