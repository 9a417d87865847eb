"""Signed checkpoints of the Merkle log, and checking a log against them. No I/O.

A checkpoint says "the first ``tree_size`` events of this log have Merkle root
``root``", signed with the server's Ed25519 key. Auditors keep checkpoints; a log
rewritten or truncated afterwards no longer produces their roots, whoever holds the
database, because the key is not in it.

Checkpoints are C2SP checkpoints (https://c2sp.org/tlog-checkpoint) in the C2SP
signed-note format (https://c2sp.org/signed-note), which verifiers written by others
check (Go's ``golang.org/x/mod/sumdb/note``; ``tests/go/verify.go``)::

    <origin>\n<tree size in decimal>\n<base64 root>\n
    \n
    \u2014 <origin> <base64(4-byte key id || Ed25519 signature of the three lines)>\n

The key's name is the origin, and its key id the first 4 bytes of SHA-256(name ||
0x0A || 0x01 || public key); :func:`verifier_key` writes the key as such verifiers
read it (``<name>+<hex key id>+<base64(0x01 || public key)>``). Checkpoints signed
before 2026-12-04 have no origin: their signed statement is the canonical JSON of
``{"key_id", "log", "root", "signed_at", "tree_size"}`` (root in hex, time in
ISO-8601 UTC with microseconds), and they verify as they were signed.

``key_id`` below is the server's own fingerprint of a key (16 hex digits of SHA-256
of the public key), which says which key signed a checkpoint whatever its format.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
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
#: the Ed25519 signature type byte of C2SP signed notes
_ED25519 = b"\x01"
_DASH = "\u2014"
#: a signature line: the dash, a key name, base64 of a key id and a signature
_SIGNATURE_LINE = re.compile("\u2014 ([^ +\n]+) ([A-Za-z0-9+/]+={0,2})")


class CheckpointError(ValueError):
    """A checkpoint whose signature or key does not verify, or a malformed key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root: bytes
    #: when it was sealed (not covered by a C2SP signature: the note has no time)
    signed_at: datetime
    key_id: str
    signature: bytes
    #: the log's origin line and key name; None for a checkpoint signed as JSON
    origin: str | None = None

    def statement(self) -> bytes:
        """The bytes the signature covers."""
        if self.origin is not None:
            return note_body(self.origin, self.tree_size, self.root)
        return statement(self.tree_size, self.root, self.signed_at, self.key_id)

    def note(self, public_key: Ed25519PublicKey) -> str:
        """The checkpoint as a C2SP signed note, with ``public_key`` the key that signed
        it (the signature line names the key by an id of that key); CheckpointError
        for a checkpoint signed before checkpoints were notes, or by another key."""
        if self.origin is None:
            raise CheckpointError(
                f"the checkpoint of {self.tree_size} events was signed before checkpoints"
                " were signed notes"
            )
        if self.key_id != key_id(public_key):
            raise CheckpointError(
                f"the checkpoint of {self.tree_size} events was signed with key"
                f" {self.key_id}, not with {key_id(public_key)}"
            )
        hint = note_key_id(self.origin, public_key)
        signature = base64.b64encode(hint + self.signature).decode()
        return f"{self.statement().decode()}\n{_DASH} {self.origin} {signature}\n"

    def note_if_any(self, public_key: Ed25519PublicKey) -> str | None:
        """:meth:`note`, or None where there is none to write."""
        try:
            return self.note(public_key)
        except CheckpointError:
            return None

    def to_json(self) -> dict[str, object]:
        return {
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "signed_at": _time_text(self.signed_at),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Checkpoint:
        try:
            origin = data.get("origin")
            return cls(
                tree_size=int(str(data["tree_size"])),
                root=bytes.fromhex(str(data["root"])),
                signed_at=datetime.fromisoformat(str(data["signed_at"])),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(str(data["signature"]), validate=True),
                origin=None if origin is None else str(origin),
            )
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from None


def note_body(origin: str, tree_size: int, root: bytes) -> bytes:
    """A C2SP checkpoint's body: origin, tree size and base64 root, a line each."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n".encode()


def check_origin(origin: str) -> str:
    """``origin`` if it can name a log and its key in a signed note (no spaces, no
    ``+``, printable); CheckpointError otherwise."""
    if not origin or "+" in origin or any(c.isspace() or not c.isprintable() for c in origin):
        raise CheckpointError(
            f"{origin!r} cannot be a log origin: it must be non-empty printable text without"
            " spaces or '+' (for example collab.example.com/audit)"
        )
    return origin


def default_origin(public_key: Ed25519PublicKey) -> str:
    """The origin of a deployment that names none: stable as long as its key."""
    return f"collab.audit/{key_id(public_key)}"


def note_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id of a signed-note Ed25519 key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The key as signed-note verifiers take it: ``name+hex key id+base64(0x01 || key)``."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    encoded = base64.b64encode(_ED25519 + raw).decode()
    return f"{name}+{note_key_id(name, public_key).hex()}+{encoded}"


def parse_note(text: str, public_key: Ed25519PublicKey, expected: str | None = None) -> Checkpoint:
    """The checkpoint a C2SP signed note holds, once its signature by ``public_key``
    verifies (the signature line named by the origin, with the right key id) and its
    origin is ``expected`` when given; raises CheckpointError otherwise. Like Go's
    ``note.Open``, every line after the blank one must be a signature line. The note
    carries no time: ``signed_at`` is the epoch."""
    body, separator, signatures = text.partition("\n\n")
    lines = body.split("\n")
    if not separator or len(lines) < 3 or not signatures.endswith("\n"):
        raise CheckpointError("not a signed checkpoint note (origin, size, root, signatures)")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    try:
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise CheckpointError(f"malformed checkpoint note: {exc}") from None
    if str(size) != size_text or size < 0 or len(root) != 32:
        raise CheckpointError("malformed checkpoint note: size or root")
    if expected is not None and origin != expected:
        raise CheckpointError(f"the note is of the log {origin!r}, not of {expected!r}")
    hint = note_key_id(origin, public_key)
    for name, signed in [_signature(line) for line in signatures[:-1].split("\n")]:
        if name != origin or signed[:4] != hint:
            continue
        checkpoint = Checkpoint(
            size, root, datetime.fromtimestamp(0, UTC), key_id(public_key), signed[4:], origin
        )
        if (body + "\n").encode() != checkpoint.statement():
            raise CheckpointError("checkpoint note has lines this verifier does not know")
        verify_signature(checkpoint, public_key)
        return checkpoint
    raise CheckpointError(f"the note has no signature of {origin} by the given key")


def _signature(line: str) -> tuple[str, bytes]:
    """A signature line's key name and its key id plus signature; CheckpointError for a
    line Go's note.Open would refuse (every line after the blank one is a signature)."""
    match = _SIGNATURE_LINE.fullmatch(line)
    problem = "the note has a line after its body that is not a signature"
    if match is None:
        raise CheckpointError(problem)
    name, encoded = match.group(1), match.group(2)
    try:
        check_origin(name)
        signed = base64.b64decode(encoded, validate=True)
    except (CheckpointError, ValueError):
        raise CheckpointError(problem) from None
    if len(signed) < 5:
        raise CheckpointError(problem)
    return name, signed


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
    """The public key as base64 of its 32 raw bytes (the JSON views and bundles)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def verifier_name(text: str) -> str | None:
    """The key name (the log's origin) of a verifier key; None for a raw base64 key."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        if len(base64.b64decode(text, validate=True)) == 32:
            return None
    parts = text.split("+", 2)
    if len(parts) == 3 and re.fullmatch(r"[0-9a-fA-F]{8}", parts[1]):
        return parts[0]
    return None


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A key given as base64 of its 32 raw bytes, or as a signed-note verifier key
    (:func:`verifier_key`, whose key id must match its name and key)."""
    text = text.strip()
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        pass
    name, _, rest = text.partition("+")
    hint, _, encoded = rest.partition("+")
    try:
        typed = base64.b64decode(encoded, validate=True)
        key = Ed25519PublicKey.from_public_bytes(typed[1:])
    except ValueError as exc:
        typed, problem = b"", str(exc)
    else:
        problem = "" if typed[:1] == _ED25519 else "not an Ed25519 key (type byte 0x01)"
    if problem:
        raise CheckpointError(
            "not an Ed25519 public key (base64 of 32 bytes, or a verifier key"
            f" name+keyid+base64, expected): {problem}"
        )
    if note_key_id(name, key).hex() != hint.lower():
        raise CheckpointError(f"verifier key {name}: its key id does not match its key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


class Signer:
    """Signs checkpoints as C2SP signed notes of ``origin`` (default:
    :func:`default_origin`)."""

    def __init__(self, private_key: Ed25519PrivateKey, origin: str | None = None) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        self.origin = check_origin(origin) if origin else default_origin(self.public_key)

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.public_key)

    def sign(self, tree_size: int, root: bytes, moment: datetime | None = None) -> Checkpoint:
        signed_at = (moment or datetime.now(UTC)).astimezone(UTC)
        text = note_body(self.origin, tree_size, root)
        return Checkpoint(
            tree_size, root, signed_at, self.key_id, self._key.sign(text), self.origin
        )


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
