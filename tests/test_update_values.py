"""The walk over an update's values: real pycrdt updates in, NUL and non-finite numbers refused."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pycrdt
import pytest

from music.update_values import MAX_DEPTH, Unreadable, UnsafeValue, check_values

Edit = Callable[[pycrdt.Doc[Any]], None]


def _updates(edit: Edit) -> list[bytes]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    edit(doc)
    assert updates
    return updates


def _meta(doc: pycrdt.Doc[Any]) -> pycrdt.Map[Any]:
    return doc.get("meta", type=pycrdt.Map)


def _every_kind_of_value(doc: pycrdt.Doc[Any]) -> None:
    _meta(doc).update(
        {
            "name": "Song",
            "tempo": 120.5,
            "bars": 3,
            "big": 2**40,
            "negative": -5,
            "huge": 1.5e300,
            "list": [1, {"a": None, "b": True}, "x"],
            "bytes": b"\x00\x01",
        }
    )


def _nested_types(doc: pycrdt.Doc[Any]) -> None:
    doc.get("tracks", type=pycrdt.Map)["t1"] = pycrdt.Map(
        {"clips": pycrdt.Map({"c": pycrdt.Map({"notes": pycrdt.Array([pycrdt.Map({"p": 60})])})})}
    )


def _text(doc: pycrdt.Doc[Any]) -> None:
    doc.get("text", type=pycrdt.Text).insert(0, "héllo wörld ♪")


def _deletes(doc: pycrdt.Doc[Any]) -> None:
    meta = _meta(doc)
    meta["a"] = 1
    del meta["a"]
    array = doc.get("array", type=pycrdt.Array)
    array.extend([1, 2, 3])
    del array[1]


@pytest.mark.parametrize("edit", [_every_kind_of_value, _nested_types, _text, _deletes])
def test_ordinary_updates_pass(edit: Edit) -> None:
    for update in _updates(edit):
        check_values(update)


def test_xml_types_are_refused() -> None:
    # The document has no XML, and its JSON view (the read models) no form for it.
    def xml_in_a_track(doc: pycrdt.Doc[Any]) -> None:
        doc.get("tracks", type=pycrdt.Map)["t1"] = pycrdt.XmlFragment()

    def xml_root(doc: pycrdt.Doc[Any]) -> None:
        fragment = doc.get("xml", type=pycrdt.XmlFragment)
        fragment.children.append(pycrdt.XmlElement("p", {"a": "b"}, [pycrdt.XmlText("hi")]))

    for edit in (xml_in_a_track, xml_root):
        with pytest.raises(UnsafeValue, match="XML"):
            check_values(_updates(edit)[-1])


def _set(key: str, value: Any) -> Edit:
    return lambda doc: _meta(doc).__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_set("tempo", math.nan), "NaN or infinite"),
        (_set("tempo", math.inf), "NaN or infinite"),
        (_set("tempo", -math.inf), "NaN or infinite"),
        (_set("list", [1, [{"k": math.inf}]]), "NaN or infinite"),
        (_set("name", "a\x00b"), "a string contains a NUL"),
        (_set("na\x00me", "ab"), "a map key contains a NUL"),
        (_set("list", [1, [{"k\x00": 1}]]), "an object key contains a NUL"),
        (lambda doc: doc.get("me\x00ta", type=pycrdt.Map).__setitem__("a", 1), "root type"),
        (lambda doc: doc.get("text", type=pycrdt.Text).insert(0, "a\x00"), "a text contains"),
    ],
)
def test_values_the_log_cannot_hold_are_refused(edit: Edit, words: str) -> None:
    (update,) = _updates(edit)
    with pytest.raises(UnsafeValue, match=words):
        check_values(update)


def test_values_nested_too_deep_are_refused() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    (update,) = _updates(_set("deep", value))
    with pytest.raises(UnsafeValue, match="nests deeper"):
        check_values(update)


def test_random_damage_raises_only_our_errors() -> None:
    (update,) = _updates(_nested_types)
    rng = random.Random(3)
    refused = 0
    for _ in range(5000):
        damaged = bytearray(update)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            check_values(bytes(damaged))
        except (UnsafeValue, Unreadable):
            refused += 1
    # Damage lands in lengths and tags often enough that some are refused, and in
    # plain values often enough that some pass: both paths ran.
    assert 0 < refused < 5000


def _nested_maps(depth: int) -> Edit:
    def edit(doc: pycrdt.Doc[Any]) -> None:
        inner: pycrdt.Map[Any] = pycrdt.Map({"leaf": 1})
        for _ in range(depth - 1):
            inner = pycrdt.Map({"child": inner})
        doc.get("tracks", type=pycrdt.Map)["deep"] = inner

    return edit


def _notes_in_a_clip(doc: pycrdt.Doc[Any]) -> None:
    clip = pycrdt.Map({"notes": pycrdt.Array([pycrdt.Map({"pitch": p}) for p in range(3)])})
    doc.get("tracks", type=pycrdt.Map)["t1"] = pycrdt.Map({"clips": pycrdt.Map({"c1": clip})})
    notes = clip["notes"]
    notes.insert(1, pycrdt.Map({"pitch": 70, "tags": pycrdt.Array([pycrdt.Map({"x": 1})])}))
    notes.append(pycrdt.Map({"pitch": 71}))


def test_shared_types_nested_within_bounds_pass() -> None:
    for update in _updates(_nested_maps(MAX_DEPTH)) + _updates(_notes_in_a_clip):
        check_values(update)


def test_shared_types_one_update_nests_too_deep_are_refused() -> None:
    # Built from the leaf up, then inserted: one update holds the whole chain.
    (update,) = _updates(_nested_maps(MAX_DEPTH + 1))
    with pytest.raises(UnsafeValue, match="shared types nest deeper"):
        check_values(update)
    (update,) = _updates(_nested_maps(200))
    with pytest.raises(UnsafeValue, match="shared types nest deeper"):
        check_values(update)
