"""MIDI export (``music/midi.py``, ``GET /api/projects/{id}/export.mid``): read back
with mido and with @tonejs/midi (a parser written by others, in Node)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import mido
import pytest

from music import midi
from tests.live import running_server
from tests.support import timeout

DOCUMENT: dict[str, Any] = {
    "meta": {"name": "Night Drive", "tempo": 96.0, "time_signature": "6/8"},
    "track_order": ["keys", "drums", "pad"],
    "tracks": {
        "drums": {
            "name": "Drums",
            "kind": "drums",
            "volume_db": 0.0,
            "pan": 0.0,
            "clips": {
                "d1": {
                    "start_beats": 0.0,
                    "length_beats": 2.0,
                    "notes": [
                        {"pitch": 36.0, "start": 0.0, "duration": 0.25, "velocity": 110.0},
                        {"pitch": 38.0, "start": 1.0, "duration": 0.25, "velocity": 90.0},
                    ],
                }
            },
        },
        "keys": {
            "name": "Keys",
            "kind": "midi",
            "volume_db": -6.0,
            "pan": -0.5,
            "clips": {
                "k1": {
                    "start_beats": 4.0,
                    "length_beats": 2.0,
                    "notes": [
                        {"pitch": 60.0, "start": 0.5, "duration": 1.0, "velocity": 100.0},
                        # cut at the clip's end (beat 2 of the clip)
                        {"pitch": 64.0, "start": 1.5, "duration": 4.0, "velocity": 80.0},
                        # after the clip's end, out of range, not a number: left out
                        {"pitch": 67.0, "start": 3.0, "duration": 1.0, "velocity": 80.0},
                        {"pitch": 200.0, "start": 0.0, "duration": 1.0, "velocity": 80.0},
                        {"pitch": "C4", "start": 0.0, "duration": 1.0, "velocity": 80.0},
                    ],
                }
            },
        },
        "pad": {
            "name": "Pad",
            "kind": "midi",
            "mute": True,
            "clips": {
                "p1": {
                    "start_beats": 0.0,
                    "length_beats": 8.0,
                    "notes": [{"pitch": 48.0, "start": 0.0, "duration": 8.0, "velocity": 70.0}],
                }
            },
        },
    },
    "sections": [],
}


def _notes(track: mido.MidiTrack) -> list[tuple[int, int, int, int, int]]:
    """(channel, pitch, start tick, end tick, velocity) of every note, in order."""
    now = 0
    started: dict[int, tuple[int, int, int]] = {}
    notes = []
    for message in track:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            started[message.note] = (now, message.velocity, message.channel)
        elif message.type in ("note_off", "note_on"):
            begin, velocity, channel = started.pop(message.note)
            notes.append((channel, message.note, begin, now, velocity))
    return sorted(notes, key=lambda n: (n[2], n[1]))


def test_the_document_becomes_a_type_1_file_read_back_by_mido() -> None:
    exported = midi.export(DOCUMENT)
    read = mido.MidiFile(file=io.BytesIO(exported.data))
    assert (read.type, read.ticks_per_beat) == (1, 480)
    conductor = {m.type: m for m in read.tracks[0] if m.is_meta}
    assert conductor["track_name"].name == "Night Drive"
    assert mido.tempo2bpm(conductor["set_tempo"].tempo) == pytest.approx(96.0)
    ts = conductor["time_signature"]
    assert (ts.numerator, ts.denominator) == (6, 8)
    # display order, the muted pad left out
    assert [t.name for t in read.tracks[1:]] == ["Keys", "Drums"]
    assert exported.left_out == ("pad",)
    keys, drums = read.tracks[1:]
    assert _notes(keys) == [(0, 60, 2160, 2640, 100), (0, 64, 2640, 2880, 80)]
    assert _notes(drums) == [(9, 36, 0, 120, 110), (9, 38, 480, 600, 90)]
    controls = {m.control: m.value for m in keys if m.type == "control_change"}
    assert controls == {7: round(127 * 10 ** (-6 / 40)), 10: round(64 - 0.5 * 63.5)}
    assert exported.notes == 4


def test_silent_tracks_can_be_included_and_are_marked() -> None:
    exported = midi.export(DOCUMENT, include_silent=True)
    read = mido.MidiFile(file=io.BytesIO(exported.data))
    assert [t.name for t in read.tracks[1:]] == ["Keys", "Drums", "Pad"]
    pad = read.tracks[3]
    assert any(m.type == "text" and m.text == midi.MUTED_MARK for m in pad)
    assert _notes(pad) == [(1, 48, 0, 3840, 70)]
    soloed = json.loads(json.dumps(DOCUMENT))
    soloed["tracks"]["drums"]["solo"] = True
    heard = mido.MidiFile(file=io.BytesIO(midi.export(soloed).data))
    assert [t.name for t in heard.tracks[1:]] == ["Drums"]


def test_an_empty_or_odd_document_still_exports() -> None:
    for document in ({}, {"meta": {"tempo": float("nan"), "time_signature": "7/9"}}):
        read = mido.MidiFile(file=io.BytesIO(midi.export(document).data))
        conductor = {m.type: m for m in read.tracks[0] if m.is_meta}
        assert mido.tempo2bpm(conductor["set_tempo"].tempo) == pytest.approx(120.0)
        assert (conductor["time_signature"].numerator, conductor["time_signature"].denominator) == (
            4,
            4,
        )
        assert len(read.tracks) == 1


def _tonejs(node_client_script: Path, data: bytes, folder: Path) -> Any:
    path = folder / "export.mid"
    path.write_bytes(data)
    script = node_client_script.parent / "midi.mjs"
    result = subprocess.run(
        ["node", str(script), str(path)],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=True,
    )
    return json.loads(result.stdout)


async def test_a_version_exported_over_http_reads_the_same_in_tonejs_midi(
    database_url: str, node_client_script: Path, tmp_path: Path
) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        created = await http.post("/api/projects", json={"name": "Export", "tempo": 128})
        project = created.json()["id"]
        operations = [
            {"op": "add_track", "track_id": "bass", "name": "Bass", "kind": "midi"},
            {"op": "add_track", "track_id": "beat", "name": "Beat", "kind": "drums"},
            {
                "op": "add_clip",
                "track_id": "bass",
                "clip_id": "c1",
                "name": "Riff",
                "start_beats": 2,
                "length_beats": 4,
            },
            {
                "op": "add_notes",
                "track_id": "bass",
                "clip_id": "c1",
                "notes": [
                    {"pitch": 40, "start": 0, "duration": 1, "velocity": 100},
                    {"pitch": 43, "start": 1.5, "duration": 0.5, "velocity": 64},
                ],
            },
            {
                "op": "add_clip",
                "track_id": "beat",
                "clip_id": "b1",
                "name": "Kick",
                "start_beats": 0,
                "length_beats": 1,
            },
            {
                "op": "add_notes",
                "track_id": "beat",
                "clip_id": "b1",
                "notes": [{"pitch": 36, "start": 0, "duration": 0.25, "velocity": 120}],
            },
        ]
        first = await http.post(f"/api/projects/{project}/edits", json={"operations": operations})
        assert first.status_code == 200, first.text
        later = await http.post(
            f"/api/projects/{project}/edits",
            json={"operations": [{"op": "set_meta", "fields": {"tempo": 90}}]},
        )
        assert later.status_code == 200
        version = first.json()["version"]
        response = await http.get(f"/api/projects/{project}/export.mid?version={version}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/midi"
        assert f"Export-v{version}.mid" in response.headers["content-disposition"]
        read = _tonejs(node_client_script, response.content, tmp_path)
        assert read["ppq"] == 480
        assert [round(t["bpm"], 3) for t in read["tempos"]] == [128.0]  # that version's
        assert read["timeSignatures"][0]["value"] == [4, 4]
        # the conductor track is the header to @tonejs/midi: the tracks are the project's
        assert read["name"] == "Export"
        bass, beat = read["tracks"]
        assert (bass["name"], bass["channel"], beat["name"], beat["channel"]) == (
            "Bass",
            0,
            "Beat",
            9,
        )
        assert beat["notes"] == [{"midi": 36, "ticks": 0, "durationTicks": 120, "velocity": 120}]
        assert bass["notes"] == [
            {"midi": 40, "ticks": 960, "durationTicks": 480, "velocity": 100},
            {"midi": 43, "ticks": 1680, "durationTicks": 240, "velocity": 64},
        ]
        current = await http.get(f"/api/projects/{project}/export.mid")
        assert _tonejs(node_client_script, current.content, tmp_path)["tempos"][0][
            "bpm"
        ] == pytest.approx(90, abs=0.001)  # MIDI keeps whole microseconds per beat
        for query, status in (("version=99", 422), ("version=0", 422), ("silent=maybe", 422)):
            bad = await http.get(f"/api/projects/{project}/export.mid?{query}")
            assert bad.status_code == status, (query, bad.text)
            assert bad.json()["message"]
        unknown = await http.get("/api/projects/00000000-0000-4000-8000-000000000000/export.mid")
        assert unknown.status_code == 404
