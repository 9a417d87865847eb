"""The pure parts of the read side: structural diff, change tracking, summaries, merging,
and rollback as a forward update. No database, no server."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pycrdt
import pytest

from music import document
from music.changes import DocumentTracker, apply_patch
from music.diff import MISSING, Change, diff
from music.rollback import restoring_update
from music.summaries import merge, summarize
from tests.documents import random_daw_edit


def _apply(value: Any, changes: list[Change]) -> Any:
    """Apply ``diff`` output to a copy of ``value``: an independent check of the diff."""
    result = copy.deepcopy(value)
    removals = [c for c in changes if c.op == "removed"]
    # List removals carry old indices: take them from the highest down.
    for change in sorted(
        removals, key=lambda c: c.path[-1] if isinstance(c.path[-1], int) else -1, reverse=True
    ):
        parent = _walk(result, change.path[:-1])
        del parent[change.path[-1]]
    for change in changes:
        if change.op == "removed":
            continue
        parent = _walk(result, change.path[:-1])
        key = change.path[-1]
        if change.op == "added" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(change.new))
        else:
            parent[key] = copy.deepcopy(change.new)
    return result


def _walk(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _random_history(seed: int, steps: int) -> list[bytes]:
    """Full-state updates of a document after each of ``steps`` random edits."""
    rng = random.Random(seed)
    doc = document.new_document()
    states = []
    for _ in range(steps):
        random_daw_edit(rng, doc)
        states.append(doc.get_update())
    return states


def _doc(state: bytes) -> pycrdt.Doc[Any]:
    doc = document.new_document()
    doc.apply_update(state)
    return doc


@pytest.mark.parametrize("seed", range(8))
def test_diff_turns_one_version_into_another(seed):
    states = _random_history(seed, 80)
    rng = random.Random(seed)
    for _ in range(20):
        old = document.to_json(_doc(rng.choice(states)))
        new = document.to_json(_doc(rng.choice(states)))
        changes = diff(old, new)
        assert _apply(old, changes) == new
        assert (changes == []) == (old == new)
        for change in changes:
            assert (change.old is MISSING) == (change.op == "added")
            assert (change.new is MISSING) == (change.op == "removed")


def test_diff_reports_paths_and_values():
    old = {"meta": {"tempo": 120.0}, "notes": [1, 2, 3], "gone": True}
    new = {"meta": {"tempo": 128.0, "key": "A minor"}, "notes": [1, 2, 9, 3]}
    assert diff(old, new) == [
        Change("removed", ("gone",), True, MISSING),
        Change("added", ("meta", "key"), MISSING, "A minor"),
        Change("changed", ("meta", "tempo"), 120.0, 128.0),
        Change("added", ("notes", 2), MISSING, 9),
    ]
    # Yjs keeps numbers as doubles: 3 and 3.0 are equal; a boolean is not a number.
    assert diff({"a": 3}, {"a": 3.0}) == []
    assert diff({"a": 1}, {"a": True}) == [Change("changed", ("a",), 1, True)]


@pytest.mark.parametrize("seed", range(6))
def test_the_tracked_view_always_equals_the_document(seed):
    """The JSON view is patched only where updates touched it; it must never drift."""
    rng = random.Random(seed)
    source = document.new_document()
    tracker = DocumentTracker()
    for step in range(150):
        before = source.get_state()
        random_daw_edit(rng, source)
        old_view = copy.deepcopy(tracker.view)
        changes = tracker.apply(source.get_update(before))
        assert tracker.view == document.to_json(source), f"step {step}"
        assert _apply(old_view, changes) == tracker.view, f"step {step}"
        # what time travel replays: the patch, through JSON as it is stored
        apply_patch(old_view, json.loads(json.dumps(tracker.patch)))
        assert old_view == tracker.view, f"step {step}"


def _tracked(edit):
    """Apply ``edit`` to a fresh project and return the summary of the last step."""
    source = document.new_document()
    tracker = DocumentTracker()
    steps = edit(source)
    lines = []
    for step in steps:
        before = source.get_state()
        with source.transaction():
            step()
        lines = summarize(tracker.records(tracker.apply(source.get_update(before))))
    return lines


def _track(doc, track_id="b", name="Bass"):
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    tracks[track_id] = pycrdt.Map(
        {"name": name, "volume_db": -3.0, "clips": pycrdt.Map(), "effects": pycrdt.Array()}
    )
    doc.get(document.TRACK_ORDER, type=pycrdt.Array).append(track_id)


def test_summaries_name_what_changed():
    def tracks(doc):
        return doc.get(document.TRACKS, type=pycrdt.Map)

    def notes(doc):
        return tracks(doc)["b"]["clips"]["c"]["notes"]

    def with_clip(doc):
        return [
            lambda: _track(doc),
            lambda: tracks(doc)["b"]["clips"].__setitem__(
                "c", pycrdt.Map({"name": "Verse 1", "notes": pycrdt.Array()})
            ),
        ]

    assert _tracked(lambda d: [lambda: _track(d, "d", "Drums")]) == ["added track Drums"]
    assert _tracked(
        lambda d: [lambda: _track(d), lambda: tracks(d)["b"].__setitem__("volume_db", -6.0)]
    ) == ["Bass: volume_db -3.0 → -6.0"]
    assert _tracked(
        lambda d: [
            *with_clip(d),
            lambda: notes(d).extend([pycrdt.Map({"pitch": 60.0 + i}) for i in range(3)]),
        ]
    ) == ["3 notes added to clip Verse 1"]
    assert _tracked(lambda d: [lambda: _track(d), lambda: tracks(d).__delitem__("b")])[0] == (
        "removed track Bass"
    )
    assert _tracked(
        lambda d: [lambda: d.get(document.META, type=pycrdt.Map).__setitem__("tempo", 96.0)]
    ) == ["set tempo to 96.0"]


def test_merge_folds_a_fader_drag_into_one_change():
    source = document.new_document()
    tracker = DocumentTracker()
    groups = []
    for value in (None, -4.0, -5.0, -9.0):
        before = source.get_state()
        with source.transaction():
            if value is None:
                _track(source)
            else:
                source.get(document.TRACKS, type=pycrdt.Map)["b"]["volume_db"] = value
        groups.append(tracker.records(tracker.apply(source.get_update(before))))
    assert summarize(merge(groups[1:])) == ["Bass: volume_db -3.0 → -9.0"]
    # Added then changed is still an addition; moved back to where it was is nothing.
    assert summarize(merge(groups)) == ["added track Bass"]
    back = [
        [{"op": "changed", "path": ["meta", "tempo"], "old": 120.0, "new": 121.0, "where": {}}],
        [{"op": "changed", "path": ["meta", "tempo"], "old": 121.0, "new": 120.0, "where": {}}],
    ]
    assert merge(back) == []


@pytest.mark.parametrize("seed", range(10))
def test_rollback_update_restores_the_target_and_can_be_rolled_back(seed):
    states = _random_history(seed, 100)
    rng = random.Random(seed)
    current = _doc(states[-1])
    target = _doc(states[rng.randrange(len(states))])
    update = restoring_update(current, target)
    rolled = document.copy_of(current)
    rolled.apply_update(update)
    assert document.to_json(rolled) == document.to_json(target)
    # Rolling back the rollback is one more forward update.
    rolled.apply_update(restoring_update(rolled, current))
    assert document.to_json(rolled) == document.to_json(current)


def test_an_edit_made_during_a_rollback_merges_like_any_other():
    base = document.new_document()
    _track(base)
    target = document.copy_of(base)
    base.get(document.META, type=pycrdt.Map)["tempo"] = 140.0
    rollback = restoring_update(base, target)
    # Meanwhile an editor who has not seen the rollback adds a track.
    editor = document.copy_of(base)
    before = editor.get_state()
    with editor.transaction():
        _track(editor, "k", "Keys")
    concurrent = editor.get_update(before)
    for order in ((rollback, concurrent), (concurrent, rollback)):
        doc = document.copy_of(base)
        for update in order:
            doc.apply_update(update)
        view = document.to_json(doc)
        assert "tempo" not in view["meta"]
        assert set(view["tracks"]) == {"b", "k"}
        assert view["track_order"] == ["b", "k"]


def test_rolling_back_to_the_same_state_changes_nothing():
    doc = document.new_document()
    _track(doc)
    assert restoring_update(doc, document.copy_of(doc)) == b"\x00\x00"


def test_an_edit_carries_only_its_own_changes():
    """Not the document's whole delete set: that grows with every overwrite, and made
    each edit of a long-edited project kilobytes large and slow to apply."""
    from music import edits  # noqa: PLC0415

    doc = document.new_document()
    doc.apply_update(edits.apply(doc, [edits.AddTrack(op="add_track", track_id="b", name="B")]))
    for value in range(2000):
        fields = edits.TrackFields(volume_db=-(value % 60))
        doc.apply_update(
            edits.apply(doc, [edits.UpdateTrack(op="update_track", track_id="b", fields=fields)])
        )
    before = doc.get_state()
    update = edits.apply(
        doc, [edits.UpdateTrack(op="update_track", track_id="b", fields=edits.TrackFields(pan=0.5))]
    )
    assert len(update) < 100
    whole_delete_set = document.copy_of(doc)
    whole_delete_set.get(document.TRACKS, type=pycrdt.Map)["b"]["pan"] = 0.5
    assert len(whole_delete_set.get_update(before)) > 1000
    doc.apply_update(update)
    assert document.to_json(doc)["tracks"]["b"]["pan"] == 0.5
