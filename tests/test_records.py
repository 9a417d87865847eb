"""The append hot path's hashes equal the definitions verification recomputes."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime

import pytest
import rfc8785

from events import EventMetadata, NewEvent
from events import daid as daid_module
from events.canonical import canonical_bytes
from events.models import AnalysisRecorded, DocUpdated, ProjectCreated
from events.records import StoredEvent, daid_body, prepare, stored_content_hash
from tests.test_canonical import _random_value
from tests.test_daid import ECOSYSTEM


def _as_stored(prepared, stream_id: str) -> StoredEvent:
    return StoredEvent(
        position=1,
        stream_id=stream_id,
        stream_version=1,
        event_id=prepared.event_id,
        event_type=prepared.event_type,
        schema_version=prepared.schema_version,
        data=json.loads(prepared.data_json),
        payload=prepared.payload,
        metadata=json.loads(prepared.metadata_json),
        daid=prepared.daid,
        parents=prepared.parents,
        recorded_at=datetime.now(UTC),
        content_hash=prepared.content_hash,
        prev_hash=bytes(32),
        hash=bytes(32),
    )


def test_prepared_hashes_match_their_definitions():
    rng = random.Random(3)
    schemes: dict[str | None, int] = {}
    for index in range(300):
        metadata = EventMetadata(
            actor=rng.choice(["alice", "bøb", 'svc "q"']),
            agent_id="a-1",
            correlation_id=rng.choice([None, "r-1"]),
            client_id=rng.choice([None, 0, 99]),
        )
        parents = tuple(rng.sample(ECOSYSTEM, rng.randrange(4)))
        if index % 3 == 0:
            event = DocUpdated(update=rng.randbytes(rng.randint(1, 40)), client_id=index)
        elif index % 3 == 1:
            event = ProjectCreated(
                name="Sóng", owner="x", metadata={"v": _random_value(rng), "k": [1.5e-9]}
            )
        else:
            event = AnalysisRecorded(
                analysis_type="mood_analysis",
                target={"version": index},
                inputs=parents,
                results={"tempo": rng.random() * 200, "x": _random_value(rng)},
                tool={"agent_id": "audio-agent", "model": "m", "ai_involved": True},
            )
        stream_id = rng.choice(["project-1", "prøject-é", 'we"ird'])
        prepared = prepare(stream_id, NewEvent(event, metadata, uuid.uuid4(), parents))
        stored = _as_stored(prepared, stream_id)
        assert stored_content_hash(stored) == prepared.content_hash
        scheme = stored.metadata.get("hash_scheme")
        schemes[scheme] = schemes.get(scheme, 0) + 1
        encode = rfc8785.dumps if scheme == "rfc8785" else canonical_bytes
        expected16 = daid_module.content_hash16(daid_body(stored), parents, encode)
        assert daid_module.parse(prepared.daid).hash16 == expected16
        # the content hash by definition, with the rfc8785 package itself for JCS events
        document = {
            **daid_body(stored),
            "daid": stored.daid,
            "metadata": stored.metadata,
            "parents": list(stored.parents),
        }
        assert hashlib.sha256(encode(document)).digest() == prepared.content_hash
    # JCS wherever it can write the event; integers beyond 2^53 keep the older scheme
    assert set(schemes) == {"rfc8785", None}
    assert schemes["rfc8785"] > schemes[None]


def test_only_the_known_tip_skips_the_parents_check() -> None:
    """The appender names the stream's tip (a DAID it minted or read from the log) as
    ``known``; every other parent is still checked."""
    meta = EventMetadata(actor="a")
    tip = prepare("s", NewEvent(DocUpdated(update=b"\x00\x00"), meta)).daid
    child = prepare("s", NewEvent(DocUpdated(update=b"\x00\x00"), meta, parents=(tip,)), known=tip)
    assert child.parents == (tip,)
    alike = prepare("s", NewEvent(DocUpdated(update=b"\x00\x00"), meta, parents=(tip,)))
    assert alike.parents == child.parents  # naming it known changes no byte but the time
    forged = NewEvent(DocUpdated(update=b"\x00\x00"), meta, parents=(tip, "daid:v9:nonsense"))
    with pytest.raises(daid_module.DaidError):
        prepare("s", forged, known=tip)
