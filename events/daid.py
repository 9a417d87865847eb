"""DAIDs: the ecosystem's provenance identifiers.

``daid:v1.0:{timestamp}:{agent_id}:{entity_type}:{entity_id}:{hash16}``

``hash16`` is the first 16 hex digits of a SHA-256 over the canonical content,
parent DAIDs included. Timestamps are ISO-8601 UTC and contain colons
(``2025-07-20T21:24:45.145569Z``); one producer writes the time with dashes
(``2025-07-20T21-26-48.785Z``). Both parse; the original text is kept so that a
parsed DAID prints back byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from events.canonical import JsonValue, canonical_bytes
from events.errors import DaidError

PREFIX = "daid"
VERSION = "v1.0"
_HEAD = f"{PREFIX}:{VERSION}:"
# agent ids, entity types and entity ids are free text in the ecosystem but never
# contain the separator; we also keep them printable and bounded.
_COMPONENT = re.compile(r"^[A-Za-z0-9._\-/@+=]{1,200}$")
_HASH16 = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2})(?P<sep>[:-])(?P<m>\d{2})(?P=sep)(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?Z$"
)


@dataclass(frozen=True, slots=True)
class Daid:
    timestamp: str
    agent_id: str
    entity_type: str
    entity_id: str
    hash16: str

    def __str__(self) -> str:
        return ":".join(
            (
                PREFIX,
                VERSION,
                self.timestamp,
                self.agent_id,
                self.entity_type,
                self.entity_id,
                self.hash16,
            )
        )

    @property
    def time(self) -> datetime:
        return parse_timestamp(self.timestamp)


def parse_timestamp(text: str) -> datetime:
    match = _TIMESTAMP.match(text)
    if match is None:
        raise DaidError(
            "timestamp",
            f"{text!r} is not YYYY-MM-DDTHH:MM:SS[.fff]Z (or with dashes in the time)",
        )
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    try:
        return datetime.fromisoformat(
            f"{match['date']}T{match['h']}:{match['m']}:{match['s']}.{frac}+00:00"
        )
    except ValueError as exc:
        raise DaidError("timestamp", f"{text!r}: {exc}") from exc


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise DaidError("timestamp", "a DAID timestamp must be timezone-aware")
    # isoformat is several times faster than strftime on the append path
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse(text: str) -> Daid:
    """Parse a DAID string; :class:`DaidError` names the part that is wrong."""
    if not isinstance(text, str):
        raise DaidError("format", f"expected a string, got {type(text).__name__}")
    if not text.startswith(f"{PREFIX}:"):
        raise DaidError("prefix", f"{text[:40]!r} does not start with 'daid:'")
    if not text.startswith(_HEAD):
        version = text.split(":", 2)[1] if text.count(":") >= 1 else ""
        raise DaidError("version", f"unsupported version {version!r}, expected {VERSION!r}")
    rest = text[len(_HEAD) :]
    # The timestamp may itself contain colons, so the fixed fields are taken from the right.
    parts = rest.rsplit(":", 4)
    if len(parts) != 5:
        raise DaidError("format", f"expected 7 ':'-separated parts in {text!r}")
    timestamp, agent_id, entity_type, entity_id, hash16 = parts
    parse_timestamp(timestamp)
    _check_fields(agent_id, entity_type, entity_id, hash16)
    return Daid(timestamp, agent_id, entity_type, entity_id, hash16)


def _check_fields(agent_id: str, entity_type: str, entity_id: str, hash16: str) -> None:
    for name, value in (
        ("agent_id", agent_id),
        ("entity_type", entity_type),
        ("entity_id", entity_id),
    ):
        _check_component(name, value)
    if not _HASH16.match(hash16):
        raise DaidError("hash16", f"{hash16!r} is not 16 lowercase hex digits")


def _check_component(name: str, value: str) -> None:
    if not _COMPONENT.match(value):
        raise DaidError(name, f"{value!r} must be 1-200 characters of letters, digits and ._-/@+=")


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except DaidError:
        return False
    return True


def content_hash16(
    content: JsonValue,
    parents: Iterable[str],
    encode: Callable[[JsonValue], bytes] = canonical_bytes,
) -> str:
    """First 16 hex digits of SHA-256 over the canonical content and sorted parent DAIDs
    (``encode``: the event's hashing scheme, ``events.canonical.hashing_bytes``)."""
    body = {"content": content, "parents": sorted(set(parents))}
    return hashlib.sha256(encode(body)).hexdigest()[:16]


def generate(
    *,
    agent_id: str,
    entity_type: str,
    entity_id: str,
    content: JsonValue,
    parents: Iterable[str] = (),
    moment: datetime | None = None,
) -> Daid:
    parent_list = list(parents)
    for parent in parent_list:
        parse(parent)
    return make(
        agent_id=agent_id,
        entity_type=entity_type,
        entity_id=entity_id,
        hash16=content_hash16(content, parent_list),
        moment=moment,
    )


def make(
    *,
    agent_id: str,
    entity_type: str,
    entity_id: str,
    hash16: str,
    moment: datetime | None = None,
) -> Daid:
    """A DAID from an already computed ``hash16`` (see :func:`content_hash16`)."""
    _check_fields(agent_id, entity_type, entity_id, hash16)
    timestamp = format_timestamp(moment or datetime.now(UTC))
    return Daid(timestamp, agent_id, entity_type, entity_id, hash16)
