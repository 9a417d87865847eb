"""The document schema and its correcting updates (``music.schema``), without I/O."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest
from pydantic import BaseModel, ValidationError

from music import corrections, document, edits, schema

#: each schema record and the typed-edit model whose fields it must judge alike
_ALIKE: list[tuple[schema.Record, type[BaseModel]]] = [
    (schema.META, edits.MetaFields),
    (schema.TRACK, edits.TrackFields),
    (schema.CLIP, edits.ClipFields),
    (schema.NOTE, edits.NoteChange),
    (schema.POINT, edits.AutomationPoint),
]
#: values of every JSON kind a Yjs editor can write, around every bound of the models
_SAMPLES: list[Any] = [
    *(float(v) for v in (-1e8, -145, -144, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 7, 60)),
    *(float(v) for v in (126, 127, 128, 1000, 1000.5, 7999, 8000, 48000, 384000, 384001)),
    *(float(v) for v in (1e7, 1e7 + 1, 24, 24.5)),
    True,
    False,
    "",
    "x",
    "x" * 40,
    "x" * 41,
    "x" * 500,
    "x" * 501,
    "4/4",
    "7/8",
    "4/5",
    "#00ff00",
    "#00ff0",
    "red",
    "midi",
    "kazoo",
    "linear",
    "step",
    "exponential",
    10**400,  # JSON allows it; no float holds it
]


def _model_accepts(model: type[BaseModel], name: str, value: Any) -> bool:
    """Whether the typed edits take ``value`` for the field, judged strictly (no string
    read as a number) but with Yjs's numbers: a whole float is a whole number."""
    whole = "int" in str(model.model_fields[name].annotation)
    if whole and isinstance(value, float) and value.is_integer():
        value = int(value)
    fields: dict[str, Any] = {name: value}
    if model is edits.NoteChange and name != "id":
        fields["id"] = "n1"
    if model is edits.AutomationPoint and name != "time":
        fields.setdefault("time", 0.0)
    if model is edits.AutomationPoint and name != "value":
        fields.setdefault("value", 0.0)
    try:
        model.model_validate(fields, strict=True)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("record", "model"), _ALIKE, ids=lambda x: getattr(x, "__name__", ""))
def test_the_schema_judges_fields_as_the_typed_edits_do(
    record: schema.Record, model: type[BaseModel]
) -> None:
    judged = 0
    for name, spec in record.fields.items():
        if not isinstance(spec, schema.Leaf) or name not in model.model_fields:
            continue
        for value in _SAMPLES:
            expected = _model_accepts(model, name, value)
            assert (spec.check(value) is None) == expected, (name, value, spec.check(value))
            judged += 1
    assert judged > 100


def _two_documents() -> tuple[pycrdt.Doc[Any], pycrdt.Doc[Any]]:
    """An editor's document with one track, one clip and one note, and a server copy."""
    editor = document.new_document()
    tracks = editor.get(document.TRACKS, type=pycrdt.Map)
    with editor.transaction():
        note = {"id": "n1", "pitch": 60.0, "start": 0.0, "duration": 1.0, "velocity": 100.0}
        clip = {"name": "Verse", "start_beats": 0.0, "length_beats": 4.0}
        tracks["bass"] = pycrdt.Map(
            {
                "name": "Bass",
                "pan": 0.5,
                "clips": pycrdt.Map(
                    {"c1": pycrdt.Map({**clip, "notes": pycrdt.Array([pycrdt.Map(note)])})}
                ),
            }
        )
        editor.get(document.META, type=pycrdt.Map)["tempo"] = 120.0
    server = document.new_document()
    server.apply_update(editor.get_update())
    return editor, server


def _corrected(server: pycrdt.Doc[Any], update: bytes) -> tuple[list[str], bytes]:
    watcher = corrections.Watcher(server)
    watcher.watching = True
    server.apply_update(update)
    watcher.watching = False
    fixes = corrections.check(server, watcher.take())
    return [fix.reason for fix in fixes], corrections.correct(server, fixes) if fixes else b""


def _problems(doc: pycrdt.Doc[Any]) -> list[Any]:
    view = document.to_json(doc)
    return [p for root, spec in schema.DOCUMENT.items() for p in schema.problems(spec, view[root])]


def test_invalid_values_are_restored_or_removed_and_unknown_keys_kept() -> None:
    editor, server = _two_documents()
    before = editor.get_state()
    tracks = editor.get(document.TRACKS, type=pycrdt.Map)
    with editor.transaction():
        tracks["bass"]["pan"] = 5.0
        tracks["bass"]["future_field"] = "kept"
        tracks["bass"]["kind"] = "kazoo"
        notes = tracks["bass"]["clips"]["c1"]["notes"]
        notes[0]["velocity"] = 0.0
        notes.append(pycrdt.Map({"id": "n2", "pitch": 500.0, "start": 0.0, "duration": 1.0}))
        editor.get(document.META, type=pycrdt.Map)["tempo"] = "fast"
        editor.get(document.TRACK_ORDER, type=pycrdt.Array).append(7.0)
        editor.get(document.SECTIONS, type=pycrdt.Array).append({"name": 3.0})
    reasons, correction = _corrected(server, editor.get_update(before))
    assert sorted(reasons) == [
        "meta.tempo: 'fast' is not a number; restored 120",
        "sections.0: name: 3 is not a string; removed",
        "track_order.0: 7 is not a string; removed",
        "tracks.bass.clips.c1.notes.0.velocity: 0 is below 1; restored 100",
        "tracks.bass.clips.c1.notes.1: pitch: 500 is above 127; removed",
        "tracks.bass.kind: 'kazoo' is not one of audio, midi, drums, bus; removed",
        "tracks.bass.pan: 5 is above 1; restored 0.5",
    ]
    assert _problems(server) == []
    editor.apply_update(correction)
    assert document.to_json(editor) == document.to_json(server)
    bass = document.to_json(editor)["tracks"]["bass"]
    assert bass["future_field"] == "kept"
    assert [n["id"] for n in bass["clips"]["c1"]["notes"]] == ["n1"]
    assert document.to_json(editor)["meta"]["tempo"] == 120.0


def test_a_new_track_keeps_its_valid_fields_and_loses_the_others() -> None:
    editor, server = _two_documents()
    before = editor.get_state()
    tracks = editor.get(document.TRACKS, type=pycrdt.Map)
    tracks["drums"] = pycrdt.Map(
        {
            "name": "Drums",
            "color": "red",
            "volume_db": -6.0,
            "clips": pycrdt.Map({"c": "not a clip"}),
            "effects": pycrdt.Array([pycrdt.Map({"type": "eq", "params": {"gain": "loud"}})]),
        }
    )
    reasons, _ = _corrected(server, editor.get_update(before))
    assert sorted(reasons) == [
        "tracks.drums.clips.c: 'not a clip' is not a map; removed",
        "tracks.drums.color: 'red' is not of the form #[0-9a-fA-F]{6}; removed",
    ]
    drums = document.to_json(server)["tracks"]["drums"]
    assert drums == {
        "name": "Drums",
        "volume_db": -6.0,
        "clips": {},
        "effects": [{"type": "eq", "params": {"gain": "loud"}}],
    }


def test_an_effect_parameter_of_no_allowed_kind_is_removed() -> None:
    editor, server = _two_documents()
    tracks = editor.get(document.TRACKS, type=pycrdt.Map)
    tracks["bass"]["effects"] = pycrdt.Array([pycrdt.Map({"type": "eq", "params": pycrdt.Map()})])
    server.apply_update(editor.get_update())
    before = editor.get_state()
    tracks["bass"]["effects"][0]["params"]["gain"] = [1.0, 2.0]
    reasons, _ = _corrected(server, editor.get_update(before))
    assert reasons == ["tracks.bass.effects.0.params.gain: a list is not a number; removed"]


def test_valid_typed_edits_need_no_correction() -> None:
    editor, server = _two_documents()
    update = edits.apply(
        editor,
        edits.EditRequest.model_validate(
            {
                "operations": [
                    {"op": "set_meta", "fields": {"tempo": 90, "time_signature": "7/8"}},
                    {"op": "add_track", "track_id": "keys", "name": "Keys", "color": "#102030"},
                    {
                        "op": "add_clip",
                        "track_id": "keys",
                        "clip_id": "k",
                        "name": "K",
                        "start_beats": 0,
                        "length_beats": 8,
                    },
                    {
                        "op": "add_notes",
                        "track_id": "keys",
                        "clip_id": "k",
                        "notes": [{"pitch": 0, "start": 0, "duration": 0.25, "velocity": 127}],
                    },
                    {
                        "op": "set_automation",
                        "track_id": "keys",
                        "parameter": "pan",
                        "points": [{"time": 0, "value": -1, "curve": "step"}],
                    },
                ]
            }
        ).operations,
    )
    reasons, _ = _corrected(server, update)
    assert reasons == []


def test_a_value_replaced_twice_before_the_check_is_judged_as_it_is_now() -> None:
    editor, server = _two_documents()
    before = editor.get_state()
    meta = editor.get(document.META, type=pycrdt.Map)
    with editor.transaction():
        meta["tempo"] = "fast"
        meta["tempo"] = 90.0
    reasons, _ = _corrected(server, editor.get_update(before))
    assert reasons == []


def test_a_place_written_several_times_gets_the_newest_valid_value_back() -> None:
    editor, server = _two_documents()
    meta = editor.get(document.META, type=pycrdt.Map)
    watcher = corrections.Watcher(server)
    watcher.watching = True
    for tempo in (100.0, "fast", 3000.0):  # three updates, checked together
        before = editor.get_state()
        meta["tempo"] = tempo
        server.apply_update(editor.get_update(before))
    fixes = corrections.check(server, watcher.take())
    assert [fix.reason for fix in fixes] == ["meta.tempo: 3000 is above 1000; restored 100"]


def test_keys_outside_the_rules_are_removed_and_reasons_stay_short() -> None:
    editor, server = _two_documents()
    before = editor.get_state()
    tracks = editor.get(document.TRACKS, type=pycrdt.Map)
    with editor.transaction():
        tracks["k" * 1200] = pycrdt.Map({"volume_db": "loud"})
        tracks["bass"]["effects"] = pycrdt.Array([pycrdt.Map({"params": pycrdt.Map()})])
    server.apply_update(editor.get_update(before))
    before = editor.get_state()
    tracks["bass"]["effects"][0]["params"][""] = 2.0
    watcher = corrections.Watcher(server)
    watcher.watching = True
    server.apply_update(editor.get_update(before))
    fixes = corrections.check(server, watcher.take())
    assert [fix.reason for fix in fixes] == ["tracks.bass.effects.0.params.: key is empty; removed"]
    # a whole new entry under a key no id may have: removed, and said in few words
    editor2, server2 = _two_documents()
    before = editor2.get_state()
    editor2.get(document.TRACKS, type=pycrdt.Map)["k" * 1200] = pycrdt.Map({"pan": 9.0})
    reasons, _ = _corrected(server2, editor2.get_update(before))
    assert len(reasons) == 1
    assert reasons[0].endswith("key is longer than 200 characters; removed")
    assert len(reasons[0]) < 700
    assert "k" * 1200 not in document.to_json(server2)["tracks"]


def test_the_typed_edits_refuse_an_effect_parameter_the_schema_would_remove() -> None:
    too_long = {"op": "add_effect", "track_id": "t", "type": "eq", "params": {"p": "x" * 501}}
    with pytest.raises(ValidationError):
        edits.EditRequest.model_validate({"operations": [too_long]})
    assert schema.param_value("x" * 501) is not None
    assert schema.param_value("x" * 500) is None
