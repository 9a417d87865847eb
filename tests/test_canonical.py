import json

import pytest

from events.canonical import canonical_json


def test_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": {"d": [1, "é"], "c": None}}) == (
        '{"a":{"c":null,"d":[1,"é"]},"b":1}'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (2.0, "2.0"),
        (1.5e-7, "0.00000015"),
        (-0.0, "0.0"),
        (1e21, "1" + "0" * 21 + ".0"),
    ],
)
def test_numbers_in_plain_notation(value, text):
    assert canonical_json(value) == text
    # what json.loads reads back encodes to the same text again
    assert canonical_json(json.loads(text)) == text


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, float("nan")]}, "a[1]"),
        ({"x": "a\x00b"}, "x"),
        ({"k": {1, 2}}, "k"),
        ({1: 2}, "value"),
    ],
)
def test_refuses_what_jsonb_cannot_hold(value, path):
    with pytest.raises(ValueError, match=path.replace("[", r"\[").replace("]", r"\]")):
        canonical_json(value)
