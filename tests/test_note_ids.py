"""Notes carry ids (``music/edits.py``): given on add, used by ``update_notes`` and
``remove_notes``, given to older notes at their clip's next notes edit, and named by the
history's sentences and the diff."""

from __future__ import annotations

from typing import Any

import httpx
import pycrdt
import pytest

from music import document, edits
from music.diff import diff, note_of
from tests.live import running_server


def _apply(doc: pycrdt.Doc[Any], *operations: dict[str, Any]) -> None:
    request = edits.EditRequest.model_validate({"operations": list(operations)})
    doc.apply_update(edits.apply(doc, list(request.operations)))


def _notes(doc: pycrdt.Doc[Any]) -> list[dict[str, Any]]:
    return list(document.to_json(doc)["tracks"]["b"]["clips"]["c"]["notes"])


CLIP = {"track_id": "b", "clip_id": "c"}


def _clip_with_old_notes() -> pycrdt.Doc[Any]:
    """A clip whose notes were written before notes had ids."""
    doc = document.new_document()
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    with doc.transaction():
        tracks["b"] = pycrdt.Map(
            {
                "name": "Bass",
                "clips": pycrdt.Map(
                    {
                        "c": pycrdt.Map(
                            {
                                "name": "Verse",
                                "notes": pycrdt.Array(
                                    [
                                        pycrdt.Map({"pitch": 40.0 + i, "start": float(i)})
                                        for i in range(2)
                                    ]
                                ),
                            }
                        )
                    }
                ),
            }
        )
    return doc


def test_older_notes_get_ids_at_the_next_edit_and_ids_address_notes() -> None:
    doc = _clip_with_old_notes()
    assert all("id" not in n for n in _notes(doc))
    _apply(
        doc,
        {"op": "add_notes", **CLIP, "notes": [{"id": "x", "pitch": 60, "start": 0, "duration": 1}]},
    )
    notes = _notes(doc)
    assert [n["pitch"] for n in notes] == [40.0, 41.0, 60.0]
    ids = [n["id"] for n in notes]
    assert ids[2] == "x"
    assert len(set(ids)) == 3
    assert all(isinstance(i, str) and i for i in ids)
    _apply(doc, {"op": "update_notes", **CLIP, "notes": [{"id": ids[0], "velocity": 20}]})
    assert _notes(doc)[0]["velocity"] == 20.0
    _apply(doc, {"op": "remove_notes", **CLIP, "ids": [ids[1], "x"]})
    assert [n["id"] for n in _notes(doc)] == [ids[0]]


def test_ids_that_do_not_fit_are_refused() -> None:
    doc = _clip_with_old_notes()
    _apply(
        doc,
        {"op": "add_notes", **CLIP, "notes": [{"id": "x", "pitch": 60, "start": 0, "duration": 1}]},
    )
    for operation, reason in (
        (
            {
                "op": "add_notes",
                **CLIP,
                "notes": [{"id": "x", "pitch": 61, "start": 0, "duration": 1}],
            },
            "exists",
        ),
        ({"op": "update_notes", **CLIP, "notes": [{"id": "nope", "pitch": 1}]}, "no note 'nope'"),
        ({"op": "remove_notes", **CLIP, "ids": ["nope"]}, "no note 'nope'"),
    ):
        with pytest.raises(edits.EditConflict, match=reason):
            _apply(doc, operation)
    with pytest.raises(ValueError, match="exactly one of ids or indices"):
        edits.EditRequest.model_validate({"operations": [{"op": "remove_notes", **CLIP}]})


def test_the_diff_names_the_note() -> None:
    before = {"tracks": {"b": {"clips": {"c": {"notes": [{"id": "n1", "velocity": 90.0}]}}}}}
    after = {"tracks": {"b": {"clips": {"c": {"notes": [{"id": "n1", "velocity": 64.0}]}}}}}
    (change,) = diff(before, after)
    assert note_of(change, before, after) == "n1"


async def test_the_http_diff_and_history_speak_of_notes_by_id(database_url: str) -> None:
    async with (
        running_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        project = (await http.post("/api/projects", json={"name": "Ids"})).json()["id"]
        edit = f"/api/projects/{project}/edits"
        setup = [
            {"op": "add_track", "track_id": "b", "name": "Bass"},
            {"op": "add_clip", **CLIP, "name": "Verse", "start_beats": 0, "length_beats": 4},
            {
                "op": "add_notes",
                **CLIP,
                "notes": [{"id": "k1", "pitch": 40, "start": 0, "duration": 1}],
            },
        ]
        first = (await http.post(edit, json={"operations": setup})).json()
        change = [{"op": "update_notes", **CLIP, "notes": [{"id": "k1", "pitch": 43}]}]
        second = (await http.post(edit, json={"operations": change})).json()
        compared = await http.get(
            f"/api/projects/{project}/diff?from={first['version']}&to={second['version']}"
            f"&min_position={second['position']}"
        )
        assert compared.status_code == 200, compared.text
        (changed,) = compared.json()["changed"]
        assert (changed["note"], changed["old"], changed["new"]) == ("k1", 40.0, 43.0)
        history = await http.get(
            f"/api/projects/{project}/history?limit=1&min_position={second['position']}"
        )
        assert history.json()["entries"][0]["summary"] == ["note k1 changed in clip Verse"]
