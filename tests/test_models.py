import pytest

from events.errors import InvalidEvent, UnknownEventType
from events.models import (
    AnalysisRecorded,
    DocUpdated,
    DomainEvent,
    ProjectCreated,
    ProvenanceRecorded,
    Registry,
    registry,
)
from tests.test_daid import ECOSYSTEM


def test_every_catalogue_type_is_registered():
    assert registry.names() == sorted(
        [
            "project.created",
            "doc.updated",
            "snapshot.tagged",
            "project.rolled_back",
            "project.reverted",
            "doc.corrected",
            "member.granted",
            "member.revoked",
            "analysis.recorded",
            "provenance.recorded",
        ]
    )


def test_models_are_frozen():
    event = ProjectCreated(name="Song", owner="alice")
    with pytest.raises(ValueError, match="frozen"):
        event.name = "Other"  # type: ignore[misc]


def test_binary_update_travels_as_payload_not_json():
    data, payload = registry.to_record(DocUpdated(update=b"\x00\x01\xff", client_id=7))
    assert data == {"client_id": 7}
    assert payload == b"\x00\x01\xff"
    back = registry.from_record("doc.updated", 1, data, payload)
    assert back == DocUpdated(update=b"\x00\x01\xff", client_id=7)


def test_invalid_data_names_the_field():
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record("project.created", 1, {"name": "", "owner": "bob"})
    assert caught.value.fields == ["name"]
    assert "name" in str(caught.value)
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record("doc.updated", 1, {"client_id": 1}, b"")
    assert caught.value.fields == ["update"]
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record("project.created", 1, {"name": "x", "owner": "y", "extra": 1})
    assert caught.value.fields == ["extra"]


def test_malformed_parent_daid_names_the_part():
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record(
            "analysis.recorded",
            1,
            {
                "analysis_type": "audio_analysis",
                "target": {"version": 3},
                "inputs": [ECOSYSTEM[0], "daid:v1.0:2025-07-20T21:24:45Z:a:b:c:XYZ"],
                "results": {},
                "tool": {"agent_id": "audio-agent"},
            },
        )
    assert caught.value.fields == ["inputs.1"]
    assert "hash16" in str(caught.value)


def test_ecosystem_daids_accepted_as_inputs():
    event = AnalysisRecorded(
        analysis_type="audio_analysis",
        target={"version": 1},
        inputs=tuple(ECOSYSTEM),
        results={"tempo_bpm": 120.0},
        tool={"agent_id": "audio-agent", "ai_involved": True},
    )
    assert event.daid_entity() == "audio_analysis"


def test_typed_results_are_checked_by_the_event_model_too():
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record(
            "analysis.recorded",
            1,
            {
                "analysis_type": "performance_analysis",
                "target": {"version": 3},
                "results": {"pitch_accuracy": 2},
                "tool": {"agent_id": "audio-agent"},
            },
        )
    assert caught.value.fields == ["results"]
    assert "pitch_accuracy" in str(caught.value)
    free = registry.from_record(
        "analysis.recorded",
        1,
        {
            "analysis_type": "mood",
            "target": {"version": 3},
            "results": {"anything": [1, "x"]},
            "tool": {"agent_id": "a"},
        },
    )
    assert free.results == {"anything": [1, "x"]}


def test_provenance_content_hash_must_be_sha256():
    with pytest.raises(InvalidEvent) as caught:
        registry.from_record(
            "provenance.recorded",
            1,
            {
                "entity": {"type": "master", "id": "master.wav", "content_hash": "abc"},
                "activity": "render",
                "tool": {"agent_id": "renderer"},
            },
        )
    assert caught.value.fields == ["entity.content_hash"]
    ok = ProvenanceRecorded(
        entity={"type": "master", "id": "master.wav", "content_hash": "a" * 64},
        activity="render",
        tool={"agent_id": "renderer"},
    )
    assert ok.daid_entity() == "master"


def test_unknown_type():
    with pytest.raises(UnknownEventType):
        registry.from_record("nope.happened", 1, {})


def test_upcasting_old_versions():
    class Renamed(DomainEvent):
        event_type = "test.renamed"
        schema_version = 3
        title: str
        bpm: float

    local = Registry()
    local.register(Renamed)
    local.register_upcaster("test.renamed", 1, lambda d: {"title": d["name"], "tempo": d["tempo"]})
    local.register_upcaster("test.renamed", 2, lambda d: {"title": d["title"], "bpm": d["tempo"]})
    assert local.from_record("test.renamed", 1, {"name": "a", "tempo": 90}) == Renamed(
        title="a", bpm=90.0
    )
    assert local.from_record("test.renamed", 3, {"title": "b", "bpm": 1}).title == "b"
    with pytest.raises(InvalidEvent, match="newer"):
        local.from_record("test.renamed", 4, {})
    with pytest.raises(ValueError, match="twice"):
        local.register(Renamed)
