"""Write the fixture of studio/test/verify.test.mjs with the repository's own code.

    .venv/bin/python studio/test/make_fixture.py

Events are prepared as the append path prepares them (``events.records.prepare``),
placed in a log of two interleaved project streams and chained (``chain_hash``); the
Merkle tree over the whole log is built with ``events.merkle``, a checkpoint is signed
with a fresh Ed25519 key, and one project's bundle is built with ``events.bundle.build``
and written as the HTTP API writes it (``projections.jsontext``). No server, no
database. The script asserts that ``events.bundle.verify`` accepts the bundle (also in
the form ``collab audit export`` prints), and rejects each tampering the JS tests make
with the check they expect.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from uuid import NAMESPACE_URL, uuid5

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import bundle, merkle
from events.checkpoints import Checkpoint, Signer, public_key_text, statement
from events.models import (
    AnalysisRecorded,
    DocUpdated,
    DomainEvent,
    EventMetadata,
    ProjectCreated,
    ProjectRolledBack,
    ProvenanceRecorded,
    SnapshotTagged,
    registry,
)
from events.records import GENESIS_HASH, NewEvent, StoredEvent, chain_hash, prepare
from projections import jsontext

HERE = Path(__file__).parent
PROJECT = str(uuid5(NAMESPACE_URL, "collab-studio-fixture/project"))
OTHER = str(uuid5(NAMESPACE_URL, "collab-studio-fixture/other"))
STREAM, OTHER_STREAM = f"project-{PROJECT}", f"project-{OTHER}"
START = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
EXTERNAL = "daid:v1.0:2025-07-20T21-26-48.785Z:beat-net:model:weights-7:0123456789abcdef"

# Values whose canonical JSON is easy to get wrong: Python float forms (plain decimal,
# never an exponent; "2.0"; no negative zero), integers beyond 2^53, escapes, non-ASCII
# text, and keys whose code-point order differs from their UTF-16 order.
TRICKY = {
    "floats": [
        0.1,
        2.0,
        126.0,
        1e16,
        1.5e300,
        1e-7,
        1.25e-5,
        5e-324,
        -0.0,
        -273.15,
        1.7976931348623157e308,
        123456789.125,
        0.30000000000000004,
    ],
    "ints": [0, -1, 2**53 + 1, 2**64 - 1, -(2**63)],
    "text": 'Björk — "Jóga" \\ \n\t\r\b\f \x01\x1f \x7f \u2028\u2029 🎵𝄞 日本語',
    "keys": {
        "\ue000": "private use",
        "😀": "astral",
        "z": 1,
        "é": 2,
        "": "empty",
        "__proto__": {"x": [1, [2.5, None, True, False]]},
    },
}


def metadata(actor: str, agent: str = "collab-server") -> EventMetadata:
    return EventMetadata(actor=actor, agent_id=agent, correlation_id="req-Ω-1", client_id=7)


def build_log() -> tuple[list[StoredEvent], list[StoredEvent]]:
    """The whole log (two projects interleaved) and the fixture project's events."""
    people = metadata("Zoë Ångström")
    agent = metadata("audio-agent", "audio-agent")
    last_version: dict[str, str] = {}
    log: list[StoredEvent] = []
    heads: dict[str, tuple[int, bytes]] = {}

    def append(
        stream: str,
        event: DomainEvent,
        meta: EventMetadata,
        *,
        version: bool,
        extra: tuple[str, ...] = (),
    ) -> str:
        parents = (*([last_version[stream]] if version and stream in last_version else []), *extra)
        new = NewEvent(
            event=event,
            metadata=meta,
            event_id=uuid5(NAMESPACE_URL, f"{stream}/{len(log)}"),
            parents=parents,
        )
        moment = START + timedelta(seconds=len(log) * 61, microseconds=len(log) * 7919)
        prepared = prepare(stream, new, moment=moment)
        data, _ = registry.to_record(event)
        position = len(log) + 1
        stream_version, prev = heads.get(stream, (0, GENESIS_HASH))
        recorded_at = moment + timedelta(microseconds=31)
        link = chain_hash(prev, prepared.content_hash, stream_version + 1, position, recorded_at)
        stored = StoredEvent(
            position=position,
            stream_id=stream,
            stream_version=stream_version + 1,
            event_id=prepared.event_id,
            event_type=prepared.event_type,
            schema_version=prepared.schema_version,
            data=data,  # as the model dumps it (-0.0 included); its canonical form is stored
            payload=prepared.payload,
            metadata=json.loads(prepared.metadata_json),
            daid=prepared.daid,
            parents=prepared.parents,
            recorded_at=recorded_at,
            content_hash=prepared.content_hash,
            prev_hash=prev,
            hash=link,
        )
        log.append(stored)
        heads[stream] = (stream_version + 1, link)
        if version:
            last_version[stream] = prepared.daid
        return prepared.daid

    append(
        STREAM,
        ProjectCreated(name="Chanson d'été ☀", owner="Zoë", metadata=TRICKY),
        people,
        version=True,
    )
    append(OTHER_STREAM, ProjectCreated(name="other", owner="bob"), metadata("bob"), version=True)
    append(STREAM, DocUpdated(update=b"\x00\x01yjs\xff\xfe", client_id=42), people, version=True)
    append(OTHER_STREAM, DocUpdated(update=b"\x01"), metadata("bob"), version=True)
    analysed = append(
        STREAM,
        AnalysisRecorded(
            analysis_type="audio_analysis",
            target={"version": 2},
            results={
                "tempo_bpm": 126,
                "key": "A minor",
                "features": {"loudness": [-14.2, -9.0], "mood": "mélancolique"},
            },
            tool={
                "agent_id": "audio-agent",
                "version": "2.1",
                "model": "beat-net-7",
                "ai_involved": True,
            },
        ),
        agent,
        version=False,
        extra=(last_version[STREAM], EXTERNAL),
    )
    append(
        STREAM,
        AnalysisRecorded(
            analysis_type="custom_scan",
            target={"version": 2},
            inputs=(EXTERNAL,),
            results={
                "nested": [{"deep": {"deeper": [1, 2.0, {"x": 1e-7}]}}],
                "ratio": 2 / 3,
                "note": "ß≠ss",
            },
            tool={"agent_id": "audio-agent"},
        ),
        agent,
        version=False,
        # unsorted: the DAID hash sorts the parents, the content hash does not
        extra=(EXTERNAL, last_version[STREAM]),
    )
    append(
        STREAM,
        SnapshotTagged(name="Première", description="naïve ☃ 日本語 🎼", version=2),
        people,
        version=False,
    )
    append(OTHER_STREAM, SnapshotTagged(name="v1", version=1), metadata("bob"), version=False)
    append(STREAM, ProjectRolledBack(target_version=1, update=b""), people, version=True)
    append(
        STREAM,
        ProvenanceRecorded(
            entity={"type": "master", "id": "song-master.wav", "content_hash": "ab" * 32},
            activity="render",
            tool={"agent_id": "renderer", "version": "1.0"},
            derived_from=(analysed,),
            attributes={
                "sample_rate": 48000,
                "gain_db": -0.5,
                "chain": ["EQ", {"q": 0.707}],
                "titre": "Été",
            },
        ),
        metadata("renderer", "renderer"),
        version=False,
        extra=(analysed,),
    )
    # after the checkpoint: chain-checked, not provable yet
    append(OTHER_STREAM, DocUpdated(update=b"\x02"), metadata("bob"), version=True)
    append(STREAM, DocUpdated(update=b"late"), people, version=True)
    return log, [e for e in log if e.stream_id == STREAM]


#: the tamperings of verify.test.mjs, and the check Python's verify must report first
EXPECTED = {
    "field": "content hash",
    "proof": "inclusion in the signed log",
    "order": "stream version",
    "root": "signature",
}


def fail(message: str) -> NoReturn:
    raise SystemExit(f"make_fixture: {message}")


def tampered(good: dict[str, Any], how: str) -> dict[str, Any]:
    """The same tamperings as verify.test.mjs makes."""
    b = copy.deepcopy(good)
    if how == "field":
        b["events"][0]["data"]["metadata"]["text"] += "!"
    elif how == "proof":
        b["events"][3]["inclusion_proof"].pop()
    elif how == "order":
        b["events"][1], b["events"][2] = b["events"][2], b["events"][1]
    elif how == "root":
        b["checkpoint"]["root"] = "00" * 32
    return b


def main() -> None:
    log, events = build_log()
    nodes: dict[tuple[int, int], bytes] = {}
    builder = merkle.Builder()
    for event in log:
        for level, index, value in builder.append(merkle.leaf_hash(event.hash)):
            nodes[(level, index)] = value
    size = len(log) - 2
    private = Ed25519PrivateKey.generate()
    signer = Signer(private, "collab.example/audit")
    checkpoint = signer.sign(size, merkle.root(size, nodes), START + timedelta(hours=1))
    proofs = {
        e.position: merkle.inclusion_proof(e.position - 1, size, nodes)
        for e in events
        if e.position <= size
    }
    key = public_key_text(signer.public_key)

    def build(sealed: Checkpoint, note: str | None) -> dict[str, Any]:
        return bundle.build(
            project_id=PROJECT,
            stream_id=STREAM,
            events=events,
            checkpoint=sealed,
            proofs=proofs,
            public_key=key,
            note=note,
        )

    data = build(checkpoint, checkpoint.note(signer.public_key))
    text = jsontext.dumps(data)  # the body of GET /api/projects/{id}/audit-bundle

    good = bundle.verify(json.loads(text), signer.public_key)
    if not (good.ok and good.events == len(events) == 8 and (good.proven, good.unproven) == (7, 1)):
        fail(f"the good bundle does not verify as expected: {good}")
    exported = json.dumps(data, indent=1, sort_keys=True)  # `collab audit export`: \u escapes
    if not bundle.verify(json.loads(exported), signer.public_key).ok:
        fail("the bundle as `collab audit export` writes it does not verify")
    for how, check in EXPECTED.items():
        report = bundle.verify(tampered(json.loads(text), how), signer.public_key)
        if report.first_break is None or report.first_break.check != check:
            fail(f"tampering {how!r}: expected a {check!r} break, got {report}")
    other = Signer(Ed25519PrivateKey.generate()).public_key
    wrong = bundle.verify(json.loads(text), other).first_break
    if wrong is None or "not by the given key" not in wrong.found:
        fail(f"another key: expected a key id break, got {wrong}")

    # A checkpoint signed as before checkpoints were signed notes (no origin: its
    # signature covers the JSON statement), with the same key.
    legacy_checkpoint = Checkpoint(
        size,
        checkpoint.root,
        checkpoint.signed_at,
        signer.key_id,
        private.sign(statement(size, checkpoint.root, checkpoint.signed_at, signer.key_id)),
    )
    legacy = jsontext.dumps(build(legacy_checkpoint, None))
    if not bundle.verify(json.loads(legacy), signer.public_key).ok:
        fail("the bundle with a checkpoint signed as JSON does not verify")

    (HERE / "fixtures").mkdir(exist_ok=True)
    (HERE / "fixtures" / "bundle.json").write_text(text + "\n", encoding="utf-8")
    (HERE / "fixtures" / "bundle_legacy.json").write_text(legacy + "\n", encoding="utf-8")
    # as `collab audit public-key > f` writes it: a signed-note verifier key
    (HERE / "fixtures" / "public_key.txt").write_text(signer.verifier_key + "\n", encoding="utf-8")
    sys.stdout.write(
        f"OK: {good.events} events, {good.proven} proven at tree size {good.tree_size},"
        f" key id {signer.key_id}; Python's verify agrees on the good and tampered bundles\n"
    )


if __name__ == "__main__":
    main()
