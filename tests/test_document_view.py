"""The document's JSON view of what older logs hold: XML types and deep nesting."""

from __future__ import annotations

import json
from typing import Any

import pycrdt

from music import document


def test_an_xml_type_shows_as_its_text() -> None:
    # Updates carrying XML types are refused now; logs written before can hold them.
    doc = document.new_document()
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    tracks["t1"] = pycrdt.Map({"name": "Bass"})
    tracks["x"] = pycrdt.XmlFragment()
    view = document.to_json(doc)
    assert view["tracks"] == {"t1": {"name": "Bass"}, "x": ""}
    json.dumps(view)


def test_nesting_beyond_what_json_can_show_is_cut() -> None:
    # Each update may nest 64 levels; many updates nest deeper than Python's recursion.
    doc = document.new_document()
    level: pycrdt.Map[Any] = doc.get(document.META, type=pycrdt.Map)
    for _ in range(3_000):
        level["k"] = pycrdt.Map()
        level = level["k"]
    view = document.to_json(doc)
    depth, value = 0, view["meta"]
    while isinstance(value, dict):
        depth, value = depth + 1, value["k"]
    assert depth == document.MAX_SHOWN_DEPTH
    assert value is None
    json.dumps(view)


def test_an_ordinary_document_is_the_same_either_way() -> None:
    doc = document.new_document()
    doc.get(document.META, type=pycrdt.Map)["name"] = "Song"
    doc.get(document.TRACK_ORDER, type=pycrdt.Array).append("t1")
    doc.get(document.TRACKS, type=pycrdt.Map)["t1"] = pycrdt.Map(
        {"clips": pycrdt.Map({"c": pycrdt.Map({"notes": pycrdt.Array([pycrdt.Map({"p": 60})])})})}
    )
    fast = document.to_json(doc)
    slow = {
        name: document._tolerant(doc.get(name, type=kind))
        for name, kind in (
            (document.META, pycrdt.Map),
            (document.TRACKS, pycrdt.Map),
            (document.TRACK_ORDER, pycrdt.Array),
            (document.SECTIONS, pycrdt.Array),
        )
    }
    assert fast == slow
