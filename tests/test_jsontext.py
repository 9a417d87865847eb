"""The read models' JSON text: what jsonb accepts, whatever an editor put in a document."""

from __future__ import annotations

import json

from projections import jsontext


def test_numbers_and_values_json_has_no_form_for_become_null():
    text = jsontext.dumps({"tempo": float("nan"), "gain": float("-inf"), "blob": b"\x00"})
    assert json.loads(text) == {"tempo": None, "gain": None, "blob": None}


def test_integers_beyond_64_bits_are_kept_exactly():
    big = 2**70 + 1
    assert json.loads(jsontext.dumps({"n": big, "s": "é"})) == {"n": big, "s": "é"}
    assert "é" in jsontext.dumps("é")


def test_plain_values_round_trip():
    value = {"tracks": {"b": {"volume_db": -3.0, "mute": False, "notes": [1.0, None]}}}
    assert json.loads(jsontext.dumps(value)) == value
