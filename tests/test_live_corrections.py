"""Values outside the document schema written by a live editor: stored, corrected by
the server at once, converged everywhere, and told in the history (``music.schema``,
docs/document.md "The correction rule")."""

from __future__ import annotations

import io
from typing import Any

import httpx
import mido
import pycrdt

from music import document
from tests.live import YClient, log_document, project_events, running_server
from tests.support import eventually
from tests.test_auth import AUTH, bearer, token

ANA, BEN = token("ana"), token("ben")


def _write_outside_the_schema(doc: pycrdt.Doc[Any]) -> None:
    """What a pycrdt client once stored unchecked: a tempo in words and a pitch of 500."""
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    with doc.transaction():
        doc.get(document.META, type=pycrdt.Map)["tempo"] = "fast"
        tracks["keys"]["clips"]["c1"]["notes"].append(
            pycrdt.Map({"id": "n2", "pitch": 500.0, "start": 1.0, "duration": 1.0})
        )
        tracks["keys"]["future_field"] = {"kept": True}


async def test_a_live_editors_invalid_values_are_corrected_for_everyone(
    database_url: str,
) -> None:
    async with (
        running_server(database_url, auth=AUTH) as address,
        httpx.AsyncClient(base_url=f"http://{address}", headers=bearer(ANA)) as http,
    ):
        project = (await http.post("/api/projects", json={"name": "Song", "tempo": 96})).json()[
            "id"
        ]
        granted = await http.post(
            f"/api/projects/{project}/members", json={"member": "ben", "role": "editor"}
        )
        assert granted.status_code == 201, granted.text
        edited = await http.post(
            f"/api/projects/{project}/edits",
            json={
                "operations": [
                    {"op": "add_track", "track_id": "keys", "name": "Keys"},
                    {
                        "op": "add_clip",
                        "track_id": "keys",
                        "clip_id": "c1",
                        "name": "Verse",
                        "start_beats": 0,
                        "length_beats": 4,
                    },
                    {
                        "op": "add_notes",
                        "track_id": "keys",
                        "clip_id": "c1",
                        "notes": [{"id": "n1", "pitch": 60, "start": 0, "duration": 1}],
                    },
                ]
            },
        )
        assert edited.status_code == 200, edited.text
        writer, other = YClient(address, project, token=BEN), YClient(address, project, token=ANA)
        for client in (writer, other):
            await client.connect()
            await client.wait_synced()

        _write_outside_the_schema(writer.doc)

        async def corrected() -> bool:
            # the tempo was 96 before the write too, so wait for the correction itself
            events = await project_events(database_url, project)
            return events[-1].event_type == "doc.corrected"

        await eventually(corrected, 10, "the server did not correct the values")
        logged = await log_document(database_url, project)
        keys = logged["tracks"]["keys"]
        assert [note["id"] for note in keys["clips"]["c1"]["notes"]] == ["n1"]
        assert keys["future_field"] == {"kept": True}  # a key the schema does not name
        # the writer (who keeps what it wrote) and the other editor converge on it
        await eventually(lambda: writer.json() == logged, 10, "the writer kept its values")
        await eventually(lambda: other.json() == logged, 10, "the other editor differs")
        room = (await http.get(f"/api/projects/{project}/document")).json()
        assert room["document"] == logged

        events = await project_events(database_url, project)
        stored, correction = events[-2], events[-1]
        assert (stored.event_type, stored.metadata["actor"]) == ("doc.updated", "ben")
        assert correction.event_type == "doc.corrected"
        assert correction.metadata["actor"] == "collab-server"
        assert sorted(correction.data["reasons"]) == [
            "meta.tempo: 'fast' is not a number; restored 96",
            "tracks.keys.clips.c1.notes.1: pitch: 500 is above 127; removed",
        ]

        async def told() -> list[dict[str, Any]] | None:
            entries = (await http.get(f"/api/projects/{project}/history?limit=2")).json()["entries"]
            newest = entries[0] if entries else {}
            return entries if newest.get("version") == correction.stream_version else None

        await eventually(told, 15, "the history does not show the correction")
        newest, before = (await told()) or []
        assert newest["actor"] == "collab-server"
        assert newest["summary"][0].startswith("corrected 2 values outside the document schema")
        assert before["actor"] == "ben"

        exported = await http.get(f"/api/projects/{project}/export.mid")
        assert exported.status_code == 200, exported.text
        assert mido.MidiFile(file=io.BytesIO(exported.content)).length > 0
        await writer.disconnect()
        await other.disconnect()
