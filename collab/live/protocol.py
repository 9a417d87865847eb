"""The y-websocket wire protocol, without I/O.

Frames are decoded into small frozen message objects and encoded back into bytes;
nothing here awaits, and the WebSocket handler only moves the bytes. Layout
(y-protocols ``PROTOCOL.md``): a frame is ``varUint(type)`` then its payload::

    0 sync       varUint(subtype) varUint8Array(payload)
                 subtype 0 step 1 (state vector), 1 step 2 (update), 2 update
    1 awareness  varUint8Array(varUint(n) n x (varUint client, varUint clock, varString json))
    2 auth       varUint(0 = permission denied) varString(reason)
    3 query awareness (no payload)

Errors (both trees close the sender with 4400; :data:`REFUSED` catches both)::

    ProtocolError                 a frame that breaks the protocol
     +-- TruncatedFrame           a varint or length runs past the end of the frame
     +-- UnknownMessageType       a type or sync subtype this protocol does not define
     +-- MalformedAwareness       awareness entries that are not valid JSON states
    music.updates.MalformedUpdate a Yjs update or state vector that does not decode
     +-- UnappliableUpdate        an update that decodes but cannot be applied to the room
     +-- UnsafeUpdateValue        an update writing a value the log or JSON cannot hold

The update errors belong to the document (``music.updates``), which the read models
check stored updates with too; they are named here as well for the transport's callers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from music.update_values import Extent
from music.updates import (
    MalformedUpdate,
    UnappliableUpdate,
    UnsafeUpdateValue,
    check_update,
    update_author,
)

__all__ = [
    "REFUSED",
    "MalformedUpdate",
    "UnappliableUpdate",
    "UnsafeUpdateValue",
    "check_update",
    "update_author",
]

#: largest integer a Yjs varUint carries (JavaScript's safe integers)
MAX_VAR_UINT: Final = 2**53 - 1


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


class ProtocolError(Exception):
    """A frame that breaks the protocol; the message says where."""


#: every error a frame can be refused with
REFUSED: Final = (ProtocolError, MalformedUpdate)


class TruncatedFrame(ProtocolError):
    pass


class UnknownMessageType(ProtocolError):
    pass


class MalformedAwareness(ProtocolError):
    pass


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes
    #: what the update carries and needs, as read when it was checked
    extent: Extent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Update:
    update: bytes
    #: what the update carries and needs, as read when it was checked
    extent: Extent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    #: the state as JSON text; ``"null"`` means the client left
    state_json: str

    @property
    def removed(self) -> bool:
        return self.state_json == "null"


@dataclass(frozen=True, slots=True)
class AwarenessUpdate:
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class AuthDenied:
    reason: str


Message = SyncStep1 | SyncStep2 | Update | AwarenessUpdate | QueryAwareness | AuthDenied


class _Reader:
    """Bounds-checked reads over one frame."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def var_uint(self, what: str) -> int:
        data, pos, value, shift = self._data, self._pos, 0, 0
        while True:
            if pos >= len(data):
                raise TruncatedFrame(f"{what}: varint runs past the end of the frame")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if value > MAX_VAR_UINT:
                raise ProtocolError(f"{what}: varint larger than 2^53")
            if byte < 0x80:
                break
            shift += 7
        self._pos = pos
        return value

    def var_bytes(self, what: str) -> bytes:
        length = self.var_uint(f"{what} length")
        end = self._pos + length
        if end > len(self._data):
            raise TruncatedFrame(
                f"{what}: length {length} runs past the end of the frame"
                f" ({len(self._data) - self._pos} bytes left)"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def var_string(self, what: str) -> str:
        raw = self.var_bytes(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what}: not UTF-8") from None

    def remaining(self) -> int:
        return len(self._data) - self._pos


def decode(frame: bytes) -> Message:
    """Decode one frame; Yjs updates and state vectors are checked to decode too."""
    reader = _Reader(frame)
    kind = reader.var_uint("message type")
    if kind == MessageType.SYNC:
        subtype = reader.var_uint("sync message type")
        payload = reader.var_bytes("sync payload")
        if subtype == SyncType.STEP1:
            check_state_vector(payload)
            return SyncStep1(payload)
        if subtype == SyncType.STEP2:
            return SyncStep2(payload, check_update(payload))
        if subtype == SyncType.UPDATE:
            return Update(payload, check_update(payload))
        raise UnknownMessageType(f"unknown sync message type {subtype}")
    if kind == MessageType.AWARENESS:
        return AwarenessUpdate(_decode_awareness(reader.var_bytes("awareness payload")))
    if kind == MessageType.AUTH:
        subtype = reader.var_uint("auth message type")
        if subtype != 0:
            raise UnknownMessageType(f"unknown auth message type {subtype}")
        return AuthDenied(reader.var_string("auth reason"))
    if kind == MessageType.QUERY_AWARENESS:
        return QueryAwareness()
    raise UnknownMessageType(f"unknown message type {kind}")


def _not_json(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON.parse in every editor refuses them.
    raise ValueError(f"{name} is not JSON")


def _decode_awareness(payload: bytes) -> tuple[AwarenessEntry, ...]:
    reader = _Reader(payload)
    count = reader.var_uint("awareness count")
    # Each entry takes at least three bytes; refuse counts the payload cannot hold
    # before looping over them.
    if count * 3 > reader.remaining():
        raise TruncatedFrame(f"awareness count {count} runs past the end of the frame")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint("awareness client id")
        clock = reader.var_uint("awareness clock")
        state = reader.var_string("awareness state")
        try:
            json.loads(state, parse_constant=_not_json)
        except (ValueError, RecursionError):
            raise MalformedAwareness(f"awareness state of client {client_id} is not JSON") from None
        entries.append(AwarenessEntry(client_id, clock, state))
    return tuple(entries)


def check_state_vector(state_vector: bytes) -> None:
    """Raise MalformedUpdate unless ``state_vector`` is varUint(n) n x (client, clock)."""
    reader = _Reader(state_vector)
    try:
        count = reader.var_uint("state vector length")
        if count * 2 > reader.remaining():
            raise TruncatedFrame(f"state vector of {count} entries runs past the end")
        for _ in range(count):
            reader.var_uint("state vector client")
            reader.var_uint("state vector clock")
    except ProtocolError as exc:
        raise MalformedUpdate(f"state vector does not decode: {exc}") from None


# -- encoding -------------------------------------------------------------------


def var_uint(value: int) -> bytes:
    if value < 0 or value > MAX_VAR_UINT:
        raise ValueError(f"varUint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _var_bytes(data: bytes) -> bytes:
    return var_uint(len(data)) + data


def encode_sync_step1(state_vector: bytes) -> bytes:
    return b"\x00\x00" + _var_bytes(state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    return b"\x00\x01" + _var_bytes(update)


def encode_update(update: bytes) -> bytes:
    return b"\x00\x02" + _var_bytes(update)


def encode_awareness(entries: tuple[AwarenessEntry, ...] | list[AwarenessEntry]) -> bytes:
    body = bytearray(var_uint(len(entries)))
    for entry in entries:
        body += var_uint(entry.client_id)
        body += var_uint(entry.clock)
        body += _var_bytes(entry.state_json.encode("utf-8"))
    return b"\x01" + _var_bytes(bytes(body))


def encode_query_awareness() -> bytes:
    return b"\x03"


def encode_auth_denied(reason: str) -> bytes:
    return b"\x02\x00" + _var_bytes(reason.encode("utf-8"))


def encode(message: Message) -> bytes:
    """Encode any message object (the inverse of :func:`decode`)."""
    match message:
        case SyncStep1(state_vector):
            return encode_sync_step1(state_vector)
        case SyncStep2(update):
            return encode_sync_step2(update)
        case Update(update):
            return encode_update(update)
        case AwarenessUpdate(entries):
            return encode_awareness(entries)
        case QueryAwareness():
            return encode_query_awareness()
        case AuthDenied(reason):
            return encode_auth_denied(reason)
    raise TypeError(f"not a protocol message: {message!r}")  # pragma: no cover
