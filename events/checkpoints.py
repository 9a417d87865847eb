"""Signed checkpoints of the Merkle log, and checking a log against them. No I/O.

A checkpoint says "the first ``tree_size`` events of this log have Merkle root
``root``", signed with the server's Ed25519 key. Auditors keep checkpoints; a log
rewritten or truncated afterwards no longer produces their roots, whoever holds the
database, because the key is not in it.

The signed statement is the canonical JSON of ``{"key_id", "log", "root",
"signed_at", "tree_size"}`` (root in hex, time in ISO-8601 UTC with microseconds).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from events import merkle
from events.canonical import canonical_bytes
from events.integrity import Break

LOG_NAME = "collab-audit-v1"


class CheckpointError(ValueError):
    """A checkpoint whose signature or key does not verify, or a malformed key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root: bytes
    signed_at: datetime
    key_id: str
    signature: bytes

    def statement(self) -> bytes:
        return statement(self.tree_size, self.root, self.signed_at, self.key_id)

    def to_json(self) -> dict[str, object]:
        return {
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "signed_at": _time_text(self.signed_at),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Checkpoint:
        try:
            return cls(
                tree_size=int(str(data["tree_size"])),
                root=bytes.fromhex(str(data["root"])),
                signed_at=datetime.fromisoformat(str(data["signed_at"])),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(str(data["signature"]), validate=True),
            )
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from None


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def statement(tree_size: int, root: bytes, signed_at: datetime, key_id: str) -> bytes:
    return canonical_bytes(
        {
            "key_id": key_id,
            "log": LOG_NAME,
            "root": root.hex(),
            "signed_at": _time_text(signed_at),
            "tree_size": tree_size,
        }
    )


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as auditors pass it around: base64 of the 32 raw bytes."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise CheckpointError(
            f"not an Ed25519 public key (base64 of 32 bytes expected): {exc}"
        ) from None


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, tree_size: int, root: bytes, moment: datetime | None = None) -> Checkpoint:
        signed_at = (moment or datetime.now(UTC)).astimezone(UTC)
        text = statement(tree_size, root, signed_at, self.key_id)
        return Checkpoint(tree_size, root, signed_at, self.key_id, self._key.sign(text))


def verify_signature(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    if checkpoint.key_id != key_id(public_key):
        raise CheckpointError(
            f"checkpoint of {checkpoint.tree_size} events was signed by key"
            f" {checkpoint.key_id}, not by the given key {key_id(public_key)}"
        )
    try:
        public_key.verify(checkpoint.signature, checkpoint.statement())
    except InvalidSignature:
        raise CheckpointError(
            f"checkpoint of {checkpoint.tree_size} events: signature does not verify"
        ) from None


@dataclass(slots=True)
class CheckpointVerifier:
    """Feed every event's chain hash in position order, then call :meth:`finish`.

    Recomputes the Merkle root at each checkpoint's size and compares; a checkpoint
    larger than the log means the log lost its tail after it was signed.
    """

    checkpoints: list[Checkpoint]
    checked: int = 0
    first_break: Break | None = None
    _builder: merkle.Builder = field(default_factory=merkle.Builder)
    _next: int = 0

    def __post_init__(self) -> None:
        self.checkpoints = sorted(self.checkpoints, key=lambda c: c.tree_size)

    def feed(self, position: int, event_hash: bytes) -> None:
        if self.first_break is not None:
            return
        if position != self._builder.size + 1:
            self.first_break = Break(
                "(merkle log)", position, "leaf order", str(self._builder.size + 1), str(position)
            )
            return
        self._builder.append(merkle.leaf_hash(event_hash))
        while (
            self._next < len(self.checkpoints)
            and self.checkpoints[self._next].tree_size == self._builder.size
        ):
            checkpoint = self.checkpoints[self._next]
            found = self._builder.root()
            if found != checkpoint.root:
                self.first_break = Break(
                    "(merkle log)",
                    position,
                    f"root of the first {checkpoint.tree_size} events (checkpoint signed"
                    f" {_time_text(checkpoint.signed_at)})",
                    checkpoint.root.hex(),
                    found.hex(),
                )
                return
            self.checked += 1
            self._next += 1

    def finish(self) -> Break | None:
        if self.first_break is None and self._next < len(self.checkpoints):
            checkpoint = self.checkpoints[self._next]
            self.first_break = Break(
                "(merkle log)",
                self._builder.size,
                f"log length (checkpoint signed {_time_text(checkpoint.signed_at)})",
                f"at least {checkpoint.tree_size} events",
                f"{self._builder.size} events: the log lost its tail",
            )
        return self.first_break


def verify_all(checkpoints: Iterable[Checkpoint], public_key: Ed25519PublicKey) -> int:
    """Check every checkpoint's signature; returns how many."""
    count = 0
    for checkpoint in checkpoints:
        verify_signature(checkpoint, public_key)
        count += 1
    return count
