import json
import random

import pytest

from events.canonical import _encode, canonical_json


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
        ({(1, 2): 3}, "value"),
    ],
)
def test_refuses_what_jsonb_cannot_hold(value, path):
    with pytest.raises(ValueError, match=path.replace("[", r"\[").replace("]", r"\]")):
        canonical_json(value)


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**63), 2**63)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e-7, 2.5, -1e21, 1e300, rng.uniform(-1e6, 1e6)])
    if kind == 3:
        return rng.choice(["", "é", "1e5", "-0.0", "tab\t", r"\u0000x", "🎵", '"q"'])
    if kind == 4:
        return rng.random() * 10 ** rng.randint(-12, 25)
    if kind in (5, 6):
        return {
            rng.choice(["a", "b", "é", "z", "1"]): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_fast_and_exact_paths_agree():
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_value(rng)
        exact: list[str] = []
        _encode(value, "", exact)
        assert canonical_json(value) == "".join(exact)
        # and the text reads back to the same canonical form
        assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)
