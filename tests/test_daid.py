from datetime import UTC, datetime

import pytest

from events import daid
from events.errors import DaidError

ECOSYSTEM = [
    "daid:v1.0:2025-07-20T21:24:45.145569Z:audio-agent:audio_analysis:test_123:9edf64546d81be8f",
    "daid:v1.0:2025-07-20T21:26:30.950399Z:schillinger-backend:composition:test_comp_456:87cfdebdf923c77c",
    "daid:v1.0:2025-07-20T21-26-48.785Z:schillinger-frontend:composition:test_comp_789:7cbbb369dbb28f91",
]


@pytest.mark.parametrize("text", ECOSYSTEM)
def test_ecosystem_examples_parse_and_round_trip(text):
    parsed = daid.parse(text)
    assert str(parsed) == text
    assert parsed.time.tzinfo is not None


def test_ecosystem_fields():
    first = daid.parse(ECOSYSTEM[0])
    assert (first.agent_id, first.entity_type, first.entity_id, first.hash16) == (
        "audio-agent",
        "audio_analysis",
        "test_123",
        "9edf64546d81be8f",
    )
    assert first.time == datetime(2025, 7, 20, 21, 24, 45, 145569, tzinfo=UTC)
    dashed = daid.parse(ECOSYSTEM[2])
    assert dashed.timestamp == "2025-07-20T21-26-48.785Z"
    assert dashed.time == datetime(2025, 7, 20, 21, 26, 48, 785000, tzinfo=UTC)


def test_generate_then_parse():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    made = daid.generate(
        agent_id="renderer",
        entity_type="master",
        entity_id="mix-7",
        content={"b": 1, "a": [1, 2]},
        parents=[ECOSYSTEM[0]],
        moment=moment,
    )
    assert str(made).startswith("daid:v1.0:2026-01-02T03:04:05.678901Z:renderer:master:mix-7:")
    assert daid.parse(str(made)) == made


def test_hash_covers_content_and_parents_but_not_their_order():
    one = daid.content_hash16({"x": 1}, [ECOSYSTEM[0], ECOSYSTEM[1]])
    assert one == daid.content_hash16({"x": 1}, [ECOSYSTEM[1], ECOSYSTEM[0]])
    assert one != daid.content_hash16({"x": 2}, [ECOSYSTEM[0], ECOSYSTEM[1]])
    assert one != daid.content_hash16({"x": 1}, [ECOSYSTEM[0]])
    assert len(one) == 16


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("dade:v1.0:2025-07-20T21:24:45Z:a:b:c:0123456789abcdef", "prefix"),
        ("daid:v2.0:2025-07-20T21:24:45Z:a:b:c:0123456789abcdef", "version"),
        ("daid:v1.0:2025-07-20T21:24:45Z:a:b:0123456789abcdef", "timestamp"),
        ("daid:v1.0:20250720:a:b:c:0123456789abcdef", "timestamp"),
        ("daid:v1.0:2025-13-40T21:24:45Z:a:b:c:0123456789abcdef", "timestamp"),
        ("daid:v1.0:2025-07-20T21:24-45Z:a:b:c:0123456789abcdef", "timestamp"),
        ("daid:v1.0:2025-07-20T21:24:45Z:a b:b:c:0123456789abcdef", "agent_id"),
        ("daid:v1.0:2025-07-20T21:24:45Z:a::c:0123456789abcdef", "entity_type"),
        ("daid:v1.0:2025-07-20T21:24:45Z:a:b:c:0123456789ABCDEF", "hash16"),
        ("daid:v1.0:2025-07-20T21:24:45Z:a:b:c:0123", "hash16"),
        ("daid:v1.0:", "format"),
    ],
)
def test_malformed_daids_name_the_part(text, part):
    with pytest.raises(DaidError) as caught:
        daid.parse(text)
    assert caught.value.part == part
    assert part in str(caught.value)


def test_generate_refuses_bad_components_and_parents():
    with pytest.raises(DaidError) as caught:
        daid.generate(agent_id="a:b", entity_type="t", entity_id="i", content={})
    assert caught.value.part == "agent_id"
    with pytest.raises(DaidError) as caught:
        daid.generate(
            agent_id="a", entity_type="t", entity_id="i", content={}, parents=["not-a-daid"]
        )
    assert caught.value.part == "prefix"
