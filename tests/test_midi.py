"""MIDI in and out (``music/midi.py``): the export (``GET .../export.mid``) read back with
mido and with @tonejs/midi (written by others, in Node); the import (``POST
/api/imports/midi``, ``POST /api/projects/{id}/imports/midi``) of files that
@tonejs/midi and mido wrote, with its provenance record, and bad files refused.

Over 400 lines because export and import are checked against each other (a file
written, read back, written again) with the same fixtures.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import mido
import pytest

from music import midi, midi_import
from tests.live import project_events, running_server
from tests.support import eventually, timeout

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


def _tonejs_write(node_client_script: Path, spec: dict[str, Any], folder: Path) -> bytes:
    """A MIDI file written by @tonejs/midi, not by this server's exporter."""
    spec_path, out = folder / "spec.json", folder / "tonejs.mid"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        ["node", str(node_client_script.parent / "midi.mjs"), "write", str(out), str(spec_path)],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=True,
    )
    return out.read_bytes()


WALTZ = {
    "bpm": 100,
    "timeSignature": [3, 4],
    "name": "Waltz",
    "tracks": [
        {
            "name": "Piano",
            "channel": 0,
            "notes": [
                {"midi": 60, "ticks": 0, "durationTicks": 480, "velocity": 100},
                {"midi": 64, "ticks": 480, "durationTicks": 240, "velocity": 90},
                {"midi": 67, "ticks": 1680, "durationTicks": 480, "velocity": 80},
            ],
        },
        {
            "name": "Kit",
            "channel": 9,
            "notes": [{"midi": 36, "ticks": 0, "durationTicks": 60, "velocity": 120}],
        },
    ],
}


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {doc["tracks"][t]["name"]: doc["tracks"][t] for t in doc["track_order"]}


def _notes_of(track: dict[str, Any]) -> list[tuple[float, float, float, float]]:
    (clip,) = track["clips"].values()
    return [(n["pitch"], n["start"], n["duration"], n["velocity"]) for n in clip["notes"]]


async def test_a_file_written_by_another_tool_becomes_a_project_with_its_provenance(
    database_url: str, node_client_script: Path, tmp_path: Path
) -> None:
    data = _tonejs_write(node_client_script, WALTZ, tmp_path)
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        body = {"file": base64.b64encode(data).decode(), "filename": "waltz.mid"}
        response = await http.post("/api/imports/midi", json=body)
        assert response.status_code == 201, response.text
        done = response.json()
        assert (done["created"], done["tracks"], done["notes"]) == (True, 2, 4)
        assert done["content_hash"] == hashlib.sha256(data).hexdigest()
        project = done["project_id"]
        doc = (await http.get(f"/api/projects/{project}/document")).json()["document"]
        assert (doc["meta"]["name"], doc["meta"]["tempo"], doc["meta"]["time_signature"]) == (
            "waltz",
            100.0,
            "3/4",
        )
        tracks = _by_name(doc)
        assert [tracks[n]["kind"] for n in ("Piano", "Kit")] == ["midi", "drums"]
        # the project and its tracks came in one append: no version without them
        kinds = [e.event_type for e in await project_events(database_url, project)]
        assert kinds[:2] == ["project.created", "doc.updated"]
        assert "doc.updated" not in kinds[2:]
        assert _notes_of(tracks["Piano"]) == [
            (60.0, 0.0, 1.0, 100.0),
            (64.0, 1.0, 0.5, 90.0),
            (67.0, 3.5, 1.0, 80.0),
        ]
        (clip,) = tracks["Piano"]["clips"].values()
        assert clip["length_beats"] == 6.0  # to the end of the bar after the last note
        assert _notes_of(tracks["Kit"]) == [(36.0, 0.0, 0.125, 120.0)]
        path = f"/api/daids/{done['provenance_daid']}"

        async def folded() -> bool:
            return (await http.get(path)).status_code == 200

        await eventually(folded, 15, "the provenance record never reached the lineage")
        record = (await http.get(path)).json()
        assert record["event_type"] == "provenance.recorded"
        assert record["details"]["entity"] == {
            "type": "midi_file",
            "id": "waltz.mid",
            "content_hash": done["content_hash"],
        }


async def test_a_type_0_file_adds_one_track_per_channel_to_a_project(database_url: str) -> None:
    # written with mido directly (type 0: one track, two channels), not by music.midi
    written = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="Jam", time=0))
    track.append(mido.Message("note_on", channel=2, note=50, velocity=70, time=0))
    track.append(mido.Message("note_on", channel=9, note=42, velocity=99, time=0))
    track.append(mido.Message("note_off", channel=9, note=42, velocity=0, time=24))
    track.append(mido.Message("note_on", channel=2, note=50, velocity=0, time=72))
    written.tracks.append(track)
    out = io.BytesIO()
    written.save(file=out)
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        created = await http.post("/api/projects", json={"name": "Existing"})
        project = created.json()["id"]
        await http.post(
            f"/api/projects/{project}/edits",
            json={"operations": [{"op": "add_track", "track_id": "vox", "name": "Vox"}]},
        )
        body = {"file": base64.b64encode(out.getvalue()).decode(), "filename": "jam.mid"}
        response = await http.post(f"/api/projects/{project}/imports/midi", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["created"] is False
        doc = (await http.get(f"/api/projects/{project}/document")).json()["document"]
        tracks = _by_name(doc)
        assert list(tracks) == ["Vox", "Jam (channel 3)", "Jam (channel 10)"]
        assert _notes_of(tracks["Jam (channel 3)"]) == [(50.0, 0.0, 1.0, 70.0)]
        assert _notes_of(tracks["Jam (channel 10)"]) == [(42.0, 0.0, 0.25, 99.0)]
        assert tracks["Jam (channel 10)"]["kind"] == "drums"
        assert doc["meta"]["name"] == "Existing"  # the project keeps its own meta


async def test_our_export_read_back_by_the_import_gives_the_same_notes(database_url: str) -> None:
    exported = midi.export(DOCUMENT)
    read = midi_import.read(exported.data)
    assert (read.tempo, read.time_signature) == (96.0, "6/8")
    assert [(t.name, t.kind) for t in read.tracks] == [("Keys", "midi"), ("Drums", "drums")]
    keys = [(n.pitch, n.start, n.duration, n.velocity) for n in read.tracks[0].notes]
    assert keys == [(60, 4.5, 1.0, 100), (64, 5.5, 0.5, 80)]
    assert read.tracks[0].volume_db == pytest.approx(-6.0, abs=0.1)
    assert read.tracks[0].pan == pytest.approx(-0.5, abs=0.01)


async def test_bad_files_are_refused_with_the_reason_and_nothing_stored(
    database_url: str, node_client_script: Path, tmp_path: Path
) -> None:
    good = _tonejs_write(node_client_script, WALTZ, tmp_path)
    silent = mido.MidiFile(type=1)
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Empty")]))
    empty = io.BytesIO()
    silent.save(file=empty)
    cases = {
        "not base64": ("@@@", "not base64"),
        "not MIDI": (base64.b64encode(b"RIFF....WAVEfmt ").decode(), "does not start with MThd"),
        "truncated": (base64.b64encode(good[:40]).decode(), "truncated"),
        # one byte over the reader's limit (and within the body's): its own check speaks
        "too large": (
            base64.b64encode(b"MThd" + bytes(midi_import.MAX_FILE_BYTES - 3)).decode(),
            f"at most {midi_import.MAX_FILE_BYTES} are taken",
        ),
        "no notes": (base64.b64encode(empty.getvalue()).decode(), "holds no notes"),
    }
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        before = await project_count(database_url)
        for name, (file, reason) in cases.items():
            response = await http.post("/api/imports/midi", json={"file": file})
            assert response.status_code == 422, (name, response.text)
            assert reason in response.json()["message"], (name, response.text)
        assert await project_count(database_url) == before


async def project_count(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "select count(*) from events where event_type = 'project.created'"
            )
        )
    finally:
        await connection.close()


def test_edges_of_the_document_do_not_break_the_export() -> None:
    odd = {
        "meta": {"tempo": 2.0},  # slower than a MIDI file can say
        "track_order": ["ドラム", "far"],
        "tracks": {
            "ドラム": {"name": "Drums", "kind": "drums", "mute": True},
            "far": {
                "name": "Far",
                "volume_db": 1e6,
                "clips": {
                    "c": {
                        "start_beats": 9_000_000.0,
                        "length_beats": 4.0,
                        "notes": [{"pitch": 60.0, "start": 0.0, "duration": 1.0}],
                    }
                },
            },
        },
    }
    exported = midi.export(odd)
    read = mido.MidiFile(file=io.BytesIO(exported.data))
    conductor = {m.type: m for m in read.tracks[0] if m.is_meta}
    assert mido.tempo2bpm(conductor["set_tempo"].tempo) == pytest.approx(120.0)
    assert exported.left_out == ("ドラム",)
    (far,) = read.tracks[1:]
    assert {m.control: m.value for m in far if m.type == "control_change"}[7] == 127
    assert _notes(far) == []  # past the last tick a file can hold: left out
    assert exported.notes == 0


def test_odd_files_read_without_errors() -> None:
    written = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="Lead\x00\x00", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=0, time=0))
    # the same pitch twice before either ends: paired first in, first out
    track.append(mido.Message("note_on", note=60, velocity=90, time=0))
    track.append(mido.Message("note_on", note=60, velocity=80, time=240))
    track.append(mido.Message("note_off", note=60, time=240))
    track.append(mido.Message("note_on", note=60, velocity=0, time=240))
    written.tracks.append(track)
    out = io.BytesIO()
    written.save(file=out)
    read = midi_import.read(out.getvalue())
    assert read.tempo == 120.0  # a zero tempo is no tempo
    (lead,) = read.tracks
    assert lead.name == "Lead"
    assert [(n.start, n.duration, n.velocity) for n in lead.notes] == [
        (0.0, 1.0, 90),
        (0.5, 1.0, 80),
    ]
