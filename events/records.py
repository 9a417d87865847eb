"""Events as they go into the store and as they come out of it.

The hashes defined here are the integrity contract shared by the append path and
``collab audit verify``:

* ``content_hash`` = SHA-256 of the canonical JSON of everything the writer chose:
  stream, event id, type, schema version, data, SHA-256 of the payload, metadata,
  DAID and parent DAIDs. Computed before the append.
* The canonical JSON is RFC 8785's (JCS) for events whose metadata says
  ``"hash_scheme": "rfc8785"``: every event appended since 2026-12-04 whose values JCS
  can write exactly (no integer beyond ±(2^53 - 1)). Events without it were hashed over
  ``events.canonical.canonical_json``, and verify as such. The DAID's hash16 uses the
  same scheme as its event.
* ``hash`` (the chain link) = SHA-256(``prev_hash`` ‖ ``content_hash`` ‖
  be64(stream version) ‖ be64(global position) ‖ be64(recorded_at in µs since the
  epoch)). Computed by the database inside the append, where version, position and
  time are assigned. ``prev_hash`` is the ``hash`` of the previous event of the same
  stream (32 zero bytes for the first), so changing, removing or reordering any event
  breaks a link.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid4

from events import daid as daid_module
from events.canonical import (
    JCS,
    SCHEME_KEY,
    canonical_json,
    hashing_bytes,
    jcs_bytes,
    sha256_hex,
)
from events.models import DomainEvent, EventMetadata, Json, registry

GENESIS_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a caller wants to append."""

    event: DomainEvent
    metadata: EventMetadata
    event_id: UUID = field(default_factory=uuid4)
    #: DAIDs this record derives from (may be minted elsewhere)
    parents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A new event reduced to the column values the writer chooses, hashes included."""

    event_id: UUID
    stream_id: str
    event_type: str
    schema_version: int
    data_json: str
    payload: bytes | None
    metadata_json: str
    daid: str
    parents: tuple[str, ...]
    parents_json: str
    content_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log, as read back."""

    position: int
    stream_id: str
    stream_version: int
    event_id: UUID
    event_type: str
    schema_version: int
    data: Json
    payload: bytes | None
    metadata: Json
    daid: str
    parents: tuple[str, ...]
    recorded_at: datetime
    content_hash: bytes
    prev_hash: bytes
    hash: bytes

    def to_domain(self) -> DomainEvent:
        """The event as its (upcast) domain model."""
        return registry.from_record(self.event_type, self.schema_version, self.data, self.payload)


def prepare(
    stream_id: str, new: NewEvent, *, moment: datetime | None = None, known: str | None = None
) -> PreparedEvent:
    """Compute everything about ``new`` that does not depend on its place in the log.

    This is the append hot path: data and metadata are encoded once, and the two hash
    documents are assembled from those pieces. They are byte for byte the canonical
    JSON of :func:`daid_body` and :func:`stored_content_hash`, which verification recomputes
    from the stored rows (``tests/test_records.py`` checks that they agree).
    """
    event = new.event
    data, payload = registry.to_record(event)
    # Round-trip through the model: whatever is stored must decode again, even if the
    # event object was built without validation (model_construct).
    registry.from_record(event.event_type, event.schema_version, data, payload)
    parents = tuple(dict.fromkeys(new.parents))
    for parent in parents:
        # ``known``: a parent the caller took from the log or minted itself (a stream's
        # version tip), valid already; parsing it again cost a tenth of this function.
        if parent != known:
            daid_module.parse(parent)
    data_json = canonical_json(data)
    metadata = _metadata(new.metadata)
    data_jcs = _jcs(data, data_json) if metadata.jcs is not None else None
    # The hash documents are built from the same pieces in either scheme: their keys
    # are ASCII (sorted alike by code point and by UTF-16 unit), and UUIDs, hex digests
    # and validated DAIDs need no escaping.
    if data_jcs is not None and metadata.jcs is not None:
        metadata_json, hashed_data, hashed_metadata = metadata.stored_jcs, data_jcs, metadata.jcs
        quoted = _jcs_string
    else:
        metadata_json = hashed_metadata = metadata.plain
        hashed_data, quoted = data_json, _json_string
    digest = f'"{sha256_hex(payload)}"' if payload is not None else "null"
    event_id = f'"{new.event_id}"'
    stream = quoted(stream_id)
    event_type = quoted(event.event_type)
    body = (
        f'{{"data":{hashed_data},"event_id":{event_id},"payload_sha256":{digest},'
        f'"schema_version":{event.schema_version},"stream_id":{stream},"type":{event_type}}}'
    )
    sorted_parents = _string_list(sorted(set(parents)))
    hash16 = hashlib.sha256(
        f'{{"content":{body},"parents":{sorted_parents}}}'.encode()
    ).hexdigest()[:16]
    daid = str(
        daid_module.make(
            agent_id=new.metadata.agent_id,
            entity_type=event.daid_entity(),
            entity_id=str(new.event_id),
            hash16=hash16,
            moment=moment,
        )
    )
    parents_json = _string_list(parents)
    document = (
        f'{{"daid":"{daid}","data":{hashed_data},"event_id":{event_id},'
        f'"metadata":{hashed_metadata},"parents":{parents_json},'
        f'"payload_sha256":{digest},"schema_version":{event.schema_version},'
        f'"stream_id":{stream},"type":{event_type}}}'
    )
    return PreparedEvent(
        event_id=new.event_id,
        stream_id=stream_id,
        event_type=event.event_type,
        schema_version=event.schema_version,
        data_json=data_json,
        payload=payload,
        metadata_json=metadata_json,
        daid=daid,
        parents=parents,
        parents_json=parents_json,
        content_hash=hashlib.sha256(document.encode()).digest(),
    )


@dataclass(frozen=True, slots=True)
class _Metadata:
    #: as stored without a scheme (canonical_json), which is also what it is hashed as
    plain: str
    #: as stored with the scheme named, and its RFC 8785 form (None: JCS cannot write it)
    stored_jcs: str
    jcs: str | None


@lru_cache(maxsize=1024)
def _metadata(metadata: EventMetadata) -> _Metadata:
    # Callers reuse one metadata object for many events (a batch, a connection).
    fields = metadata.model_dump(mode="json")
    named = {**fields, SCHEME_KEY: JCS}
    stored = canonical_json(named)
    return _Metadata(canonical_json(fields), stored, _jcs(named, stored))


#: canonical JSON that may differ from RFC 8785's: a float (a digit then "." or an
#: exponent), or an integer of 16 digits or more (2^53 has 16)
_NOT_JCS_ALIKE = re.compile(r"[0-9][.eE]|[0-9]{16}")


def _jcs(value: Any, canonical: str) -> str | None:
    """RFC 8785 text of ``value`` (None when it has none), given its canonical JSON.

    The two agree on ASCII text without floats or large integers (same escapes, same
    integers, and ASCII keys sort alike by code point and by UTF-16 unit): most live
    updates' data, which is then not encoded twice.
    """
    if canonical.isascii() and _NOT_JCS_ALIKE.search(canonical) is None:
        return canonical
    try:
        return jcs_bytes(value).decode()
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _jcs_string(text: str) -> str:
    return jcs_bytes(text).decode()


@lru_cache(maxsize=1024)
def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _string_list(items: Sequence[str]) -> str:
    # Only DAIDs come here: validated, so nothing needs escaping.
    return "[" + ",".join(f'"{item}"' for item in items) + "]"


def daid_body(event: StoredEvent) -> dict[str, Any]:
    """What a DAID's hash16 covers besides the parents: the event's content, no metadata."""
    return {
        "data": event.data,
        "event_id": str(event.event_id),
        "payload_sha256": sha256_hex(event.payload) if event.payload is not None else None,
        "schema_version": event.schema_version,
        "stream_id": event.stream_id,
        "type": event.event_type,
    }


def hashing(event: StoredEvent) -> Callable[[Any], bytes]:
    """The canonical form the event's hashes were taken over, by the scheme its metadata
    names; raises ``events.canonical.UnknownScheme`` for one this code does not know."""
    return hashing_bytes(event.metadata.get(SCHEME_KEY))


def stored_content_hash(event: StoredEvent) -> bytes:
    """The content hash of a stored row, by definition (see the module docstring).
    Raises ValueError when the row cannot be written in its scheme."""
    document = {
        **daid_body(event),
        "daid": event.daid,
        "metadata": event.metadata,
        "parents": list(event.parents),
    }
    return hashlib.sha256(hashing(event)(document)).digest()


def microseconds(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def chain_hash(
    prev_hash: bytes, content: bytes, stream_version: int, position: int, recorded_at: datetime
) -> bytes:
    """The link the database computes at append time (see the module docstring)."""
    tail = struct.pack(">qqq", stream_version, position, microseconds(recorded_at))
    return hashlib.sha256(prev_hash + content + tail).digest()
