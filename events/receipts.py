"""Inclusion receipts in the C2SP tlog-proof@v1 form (https://c2sp.org/tlog-proof). No I/O.

A receipt proves, offline, that one event is in the log::

    c2sp.org/tlog-proof@v1
    index <the event's leaf index: its log position - 1>
    <base64 sibling hash>          one line per hash of the RFC 6962 inclusion proof,
    ...                            from the leaf's sibling up
    <empty line>
    <the signed checkpoint note, verbatim (events/checkpoints.py)>

The leaf is SHA-256(0x00 || the event's 32-byte chain hash), which anyone holding the
event's record recomputes (docs/audit.md, "Every byte"). No ``extra`` line is written;
one given is skipped, as the format asks (it is not authenticated).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events import merkle
from events.checkpoints import Checkpoint, CheckpointError, parse_note

HEADER = "c2sp.org/tlog-proof@v1"
#: an ASCII decimal without leading zeros, within a 64-bit index
_INDEX = re.compile(r"0|[1-9][0-9]{0,18}")
MEDIA_TYPE = "text/plain; charset=utf-8"


class ReceiptError(ValueError):
    """A receipt that is malformed, or whose proof or checkpoint does not verify."""


@dataclass(frozen=True, slots=True)
class Verified:
    index: int
    checkpoint: Checkpoint


def receipt(index: int, proof: list[bytes], note: str) -> str:
    """The receipt of the leaf at ``index`` under the checkpoint ``note`` (signed note
    text), with ``proof`` its inclusion proof in that tree."""
    lines = [HEADER, f"index {index}", *(base64.b64encode(h).decode() for h in proof)]
    return "\n".join(lines) + "\n\n" + note


def verify(
    text: str, event_hash: bytes, public_key: Ed25519PublicKey, origin: str | None = None
) -> Verified:
    """Check that ``text`` proves the event whose chain hash is ``event_hash`` in a
    checkpoint signed by ``public_key`` (of the log ``origin``, when given); raises
    ReceiptError saying what fails."""
    head, separator, note = text.partition("\n\n")
    lines = head.split("\n")
    if not separator or not lines or lines[0] != HEADER:
        raise ReceiptError(f"not a {HEADER} receipt")
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise ReceiptError("the receipt has no index line")
    index_text = rest[0].removeprefix("index ")
    if _INDEX.fullmatch(index_text) is None:
        raise ReceiptError(f"malformed index {index_text[:40]!r}")
    try:
        proof = [base64.b64decode(line, validate=True) for line in rest[1:]]
    except ValueError as exc:
        raise ReceiptError(f"malformed proof hash: {exc}") from None
    if any(len(h) != 32 for h in proof):
        raise ReceiptError("a proof hash is not 32 bytes")
    try:
        checkpoint = parse_note(note, public_key, origin)
    except CheckpointError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from None
    index = int(index_text)
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(event_hash), index, checkpoint.tree_size, proof, checkpoint.root
        )
    except merkle.ProofError as exc:
        raise ReceiptError(
            f"the event is not proven at index {index} of the checkpoint of"
            f" {checkpoint.tree_size} events: {exc}"
        ) from None
    return Verified(index, checkpoint)
