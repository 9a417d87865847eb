"""Signed checkpoint notes and receipts read strictly (``events.checkpoints``,
``events.receipts``), without I/O: what Go's note.Open refuses is refused here too,
and a verifier key pins its log's origin."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import merkle, receipts
from events.checkpoints import (
    CheckpointError,
    Signer,
    parse_note,
    parse_public_key,
    public_key_text,
    verifier_name,
)

ORIGIN = "collab.test/audit"


def _signed(origin: str = ORIGIN) -> tuple[Signer, str, list[bytes]]:
    """A signer, the note of a tree of five events, and their chain hashes."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    signer = Signer(key, origin)
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    builder = merkle.Builder()
    for event_hash in hashes:
        builder.append(merkle.leaf_hash(event_hash))
    return signer, signer.sign(5, builder.root()).note(signer.public_key), hashes


def test_a_note_reads_back_and_its_lines_are_exact() -> None:
    signer, note, _ = _signed()
    body, signature = note.split("\n\n")
    assert body.split("\n")[:2] == [ORIGIN, "5"]
    assert signature.startswith(f"\u2014 {ORIGIN} ")
    assert parse_note(note, signer.public_key, ORIGIN).tree_size == 5


@pytest.mark.parametrize(
    "change",
    [
        lambda n: n + "not a signature\n",
        lambda n: n.replace("\n\n", "\nextra line\n\n"),
        lambda n: n.replace("\n5\n", "\n05\n"),
        lambda n: n.rstrip("\n"),
        lambda n: n + "\u2014 other AAAAA\n",
        lambda n: n + "\u2014 other AAAA\n",
        lambda n: n + "\u2014 oth\u00a0er AAAAAAAA\n",
    ],
    ids=[
        "junk after the signatures",
        "a fourth body line",
        "a padded size",
        "no last newline",
        "a signature that is not base64",
        "a signature under 5 bytes",
        "a key name with a no-break space",
    ],
)
def test_notes_go_would_refuse_are_refused(change: object) -> None:
    signer, note, _ = _signed()
    assert callable(change)
    with pytest.raises(CheckpointError):
        parse_note(change(note), signer.public_key)


def test_a_verifier_key_pins_its_logs_origin() -> None:
    signer, other_log, _ = _signed("collab.test/another-log")
    # the same key signed another log's checkpoint: valid, but not this log's
    parse_note(other_log, signer.public_key)
    with pytest.raises(CheckpointError, match=r"not of 'collab\.test/audit'"):
        parse_note(other_log, signer.public_key, ORIGIN)
    assert verifier_name(Signer(Ed25519PrivateKey.generate(), ORIGIN).verifier_key) == ORIGIN
    assert verifier_name(public_key_text(signer.public_key)) is None


def test_a_receipt_with_a_malformed_index_is_refused_not_crashed() -> None:
    signer, note, hashes = _signed()
    good = receipts.receipt(2, _proof(hashes, 2), note)
    assert receipts.verify(good, hashes[2], signer.public_key, ORIGIN).index == 2
    for index in ["\u00b2", "1" * 5000, "-1", "02", ""]:
        bad = good.replace("index 2\n", f"index {index}\n")
        with pytest.raises(receipts.ReceiptError):
            receipts.verify(bad, hashes[2], signer.public_key)
    with pytest.raises(receipts.ReceiptError, match="not of"):
        receipts.verify(good, hashes[2], signer.public_key, "collab.test/elsewhere")
    assert parse_public_key(signer.verifier_key).public_bytes_raw() == (
        signer.public_key.public_bytes_raw()
    )


def _proof(hashes: list[bytes], index: int) -> list[bytes]:
    nodes: dict[tuple[int, int], bytes] = {}
    builder = merkle.Builder()
    for event_hash in hashes:
        for level, at, value in builder.append(merkle.leaf_hash(event_hash)):
            nodes[(level, at)] = value
    return merkle.inclusion_proof(index, len(hashes), nodes)
