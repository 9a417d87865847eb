"""The suites' own reader of Yjs updates finds every value an update stores."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pycrdt
import pytest

from tests.fuzz_frames import item_update, var_uint
from tests.yjs_values import TooDeep, bad_values, state_vector, stored_values


def _updates(change: Callable[[pycrdt.Doc[Any]], None]) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=42)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    with doc.transaction():
        change(doc)
    return updates[-1]


def _clean(doc: pycrdt.Doc[Any]) -> None:
    tracks = doc.get("tracks", type=pycrdt.Map)
    tracks["t1"] = pycrdt.Map(
        {"name": "Bass", "volume_db": -3.5, "notes": pycrdt.Array([pycrdt.Map({"pitch": 60})])}
    )
    doc.get("meta", type=pycrdt.Map)["tags"] = ["a", {"b": [1.5, True, None]}]
    doc.get("meta", type=pycrdt.Map)["text"] = pycrdt.Text("hello")


def test_a_clean_update_yields_its_keys_strings_and_numbers() -> None:
    values = list(stored_values(_updates(_clean)))
    for expected in ("tracks", "t1", "name", "Bass", -3.5, "pitch", 60.0, "b", 1.5, "hello"):
        assert expected in values
    assert bad_values(_updates(_clean)) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda doc: doc.get("meta", type=pycrdt.Map).__setitem__("name", "a\x00b"), "NUL"),
        (lambda doc: doc.get("meta", type=pycrdt.Map).__setitem__("k\x00", 1.0), "NUL"),
        (lambda doc: doc.get("meta", type=pycrdt.Map).__setitem__("t", math.nan), "non-finite"),
        (
            lambda doc: doc.get("meta", type=pycrdt.Map).__setitem__("t", [[-math.inf]]),
            "non-finite",
        ),
        (lambda doc: doc.get("meta", type=pycrdt.Map).__setitem__("t", pycrdt.Text("\x00")), "NUL"),
    ],
)
def test_nul_characters_and_non_finite_numbers_are_found_anywhere(
    change: Callable[[pycrdt.Doc[Any]], None], problem: str
) -> None:
    found = bad_values(_updates(change))
    assert len(found) == 1
    assert problem in found[0]


def test_values_nested_too_deep_are_not_read() -> None:
    deep = var_uint(1) + b"\x75\x01" * 5_000 + b"\x7d\x01"
    with pytest.raises(TooDeep):
        bad_values(item_update(7, "k", 8, deep))


def test_bytes_that_are_no_update_are_reported() -> None:
    assert "not readable" in bad_values(b"\x01\x01\x07\x00\x28")[0]


def test_state_vectors_compare_whatever_their_encoded_order() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=5)
    doc.get("meta", type=pycrdt.Map)["a"] = 1.0
    other: pycrdt.Doc[Any] = pycrdt.Doc(client_id=9)
    other.apply_update(doc.get_update())
    other.get("meta", type=pycrdt.Map)["b"] = 2.0
    assert state_vector(other.get_state()) == {5: 1, 9: 1}
