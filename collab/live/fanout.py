"""How the nodes of a cluster tell each other what happened in their rooms: the port,
its messages and their bytes (no I/O here; :mod:`collab.live.redis_fanout` carries them
through Redis).

PostgreSQL stays the truth: a message lost on the way costs latency, never an edit. A
node applies a received update only after checking its stream version against the
room's; what it missed it reads from the log (``Rooms.fill_gaps``), and the rooms'
follower reads the log anyway every ``COLLAB_FOLLOW_SECONDS`` (:mod:`collab.live.rooms`).

Messages on a project's channel: a committed update (stream version, global position,
the update), an awareness frame, a request for everyone's awareness. On the cluster's
channel: access changes, node heartbeats and farewells. On a node's own channel: an
update another node forwards to it because it is the project's home (the one node that
appends the project's updates, :mod:`collab.live.forwarding`), and the outcome the home
sends back. Every message names the node that sent it, so a node ignores its own.

Why this module is a little over 400 lines: the messages, their bytes and the port are
one contract between nodes of one version, read together when one of them changes.
"""

from __future__ import annotations

import functools
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import ValidationError

from collab.access.members import PROJECT_ROLES, ProjectRole
from events.errors import EventStoreError
from events.models import EventMetadata, registry
from events.records import NewEvent

#: seconds between two heartbeats of a node
HEARTBEAT_SECONDS: Final = 1.0
#: a node not heard of for this long is gone: its clients' presence is dropped
NODE_TIMEOUT_SECONDS: Final = 5.0

_UPDATE, _AWARENESS, _QUERY, _ACCESS, _HEARTBEAT, _BYE = b"UAQXHB"
_FORWARD, _OUTCOME, _FORWARDED_UPDATE = b"FOW"
_BUNDLE = ord("M")
_COMMITTED, _DECLINED = b"CD"
_NODE = 16  # a node id is a UUID's 16 bytes
_POSITIONS = struct.Struct(">QQ")
_LENGTH = struct.Struct(">I")
_SHORT = struct.Struct(">H")


class BadMessage(ValueError):
    """Bytes on a fan-out channel that are not a message of this version (logged and
    dropped; the log still has every update)."""


@dataclass(frozen=True, slots=True)
class CommittedUpdate:
    project_id: str
    version: int
    position: int
    update: bytes
    #: set when the home appended it for another node: that node's event, and its DAID
    #: (the forwarding node takes this message as the outcome; no other one comes)
    event_id: uuid.UUID | None = None
    daid: str = ""


@dataclass(frozen=True, slots=True)
class Awareness:
    project_id: str
    #: a y-protocols awareness frame, as clients exchange it
    frame: bytes


@dataclass(frozen=True, slots=True)
class AwarenessQuery:
    """A node that just loaded the room asks the others for their clients' presence."""

    project_id: str


@dataclass(frozen=True, slots=True)
class AccessChange:
    project_id: str
    member: str
    role: ProjectRole | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Farewell:
    """The node is stopping: its clients' presence goes now, not at the timeout."""


@dataclass(frozen=True, slots=True)
class Forward:
    """An event for ``home``, the node that appends ``project_id``'s updates, to append
    on the sender's behalf (sent to ``home``'s own channel)."""

    project_id: str
    home: str
    stream_id: str
    event: NewEvent


@dataclass(frozen=True, slots=True)
class ForwardOutcome:
    """What became of a forwarded event, for ``origin``, the node that forwarded it:
    committed (``version``, ``position``, ``daid``), or declined with ``detail`` (the
    origin then appends it itself)."""

    origin: str
    event_id: uuid.UUID
    version: int = 0
    position: int = 0
    daid: str = ""
    detail: str | None = None

    @property
    def committed(self) -> bool:
        return self.detail is None


RoomMessage = CommittedUpdate | Awareness | AwarenessQuery
ClusterMessage = AccessChange | Heartbeat | Farewell
NodeMessage = Forward | ForwardOutcome
Message = RoomMessage | ClusterMessage | NodeMessage


@dataclass(frozen=True, slots=True)
class Envelope:
    node: str
    message: Message


def new_node_id() -> str:
    return str(uuid.uuid4())


@functools.lru_cache(maxsize=65_536)
def _uuid_bytes(text: str) -> bytes:
    # Node and project ids repeat in every message: parsed once each.
    return uuid.UUID(text).bytes


@functools.lru_cache(maxsize=65_536)
def _uuid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def encode(node: str, message: Message) -> bytes:
    head = _uuid_bytes(node)
    match message:
        case CommittedUpdate(project_id, version, position, update, event_id, daid):
            positions = _POSITIONS.pack(version, position)
            if event_id is None:
                return bytes((_UPDATE,)) + head + _uuid_bytes(project_id) + positions + update
            return (
                bytes((_FORWARDED_UPDATE,))
                + head
                + _uuid_bytes(project_id)
                + event_id.bytes
                + positions
                + _SHORT.pack(len(daid_bytes := daid.encode()))
                + daid_bytes
                + update
            )
        case Awareness(project_id, frame):
            return bytes((_AWARENESS,)) + head + _uuid_bytes(project_id) + frame
        case AwarenessQuery(project_id):
            return bytes((_QUERY,)) + head + _uuid_bytes(project_id)
        case AccessChange(project_id, member, role):
            body = json.dumps({"project": project_id, "member": member, "role": role})
            return bytes((_ACCESS,)) + head + body.encode()
        case Heartbeat():
            return bytes((_HEARTBEAT,)) + head
        case Farewell():
            return bytes((_BYE,)) + head
        case Forward(project_id, home, stream_id, new):
            return (
                bytes((_FORWARD,))
                + head
                + _uuid_bytes(home)
                + _uuid_bytes(project_id)
                + _forwarded(stream_id, new)
            )
        case ForwardOutcome(origin, event_id, version, position, daid, detail):
            to = bytes((_OUTCOME,)) + head + _uuid_bytes(origin) + event_id.bytes
            if detail is None:
                positions = _POSITIONS.pack(version, position)
                return to + bytes((_COMMITTED,)) + positions + daid.encode()
            return to + bytes((_DECLINED,)) + detail.encode()


def _forwarded(stream_id: str, new: NewEvent) -> bytes:
    """A new event as the home reads it back: a JSON head, then the payload's bytes."""
    data, payload = registry.to_record(new.event)
    head = json.dumps(
        {
            "id": str(new.event_id),
            "stream": stream_id,
            "type": new.event.event_type,
            "schema": new.event.schema_version,
            "data": data,
            "payload": payload is not None,
            "metadata": new.metadata.model_dump(mode="json", exclude_none=True),
            "parents": list(new.parents),
        },
        separators=(",", ":"),
    ).encode()
    return _LENGTH.pack(len(head)) + head + (payload or b"")


def _forwarded_update(project_id: str, rest: bytes) -> CommittedUpdate:
    fixed = _NODE + _POSITIONS.size + _SHORT.size
    if len(rest) < fixed:
        raise BadMessage("forwarded update without its event id, version and DAID")
    event_id = uuid.UUID(bytes=rest[:_NODE])
    version, position = _POSITIONS.unpack_from(rest, _NODE)
    (size,) = _SHORT.unpack_from(rest, _NODE + _POSITIONS.size)
    if len(rest) < fixed + size:
        raise BadMessage("forwarded update cut short")
    try:
        daid = rest[fixed : fixed + size].decode()
    except UnicodeDecodeError as exc:
        raise BadMessage(f"forwarded update: {exc}") from None
    return CommittedUpdate(project_id, version, position, rest[fixed + size :], event_id, daid)


def _forward(home: str, project_id: str, body: bytes) -> Forward:
    if len(body) < _LENGTH.size:
        raise BadMessage("forwarded event without its head")
    (size,) = _LENGTH.unpack_from(body)
    end = _LENGTH.size + size
    try:
        head: dict[str, Any] = json.loads(body[_LENGTH.size : end])
        event = registry.from_record(
            str(head["type"]),
            int(head["schema"]),
            head["data"],
            body[end:] if head["payload"] else None,
        )
        new = NewEvent(
            event,
            EventMetadata.model_validate(head["metadata"]),
            event_id=uuid.UUID(head["id"]),
            parents=tuple(str(parent) for parent in head["parents"]),
        )
        stream_id = str(head["stream"])
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        ValidationError,
        EventStoreError,
    ) as exc:
        raise BadMessage(f"forwarded event: {exc!r}") from None
    return Forward(project_id, home, stream_id, new)


def _outcome(origin: str, rest: bytes) -> ForwardOutcome:
    if len(rest) < _NODE + 1:
        raise BadMessage("forward outcome without its event id")
    event_id, kind, rest = uuid.UUID(bytes=rest[:_NODE]), rest[_NODE], rest[_NODE + 1 :]
    try:
        if kind == _COMMITTED:
            version, position = _POSITIONS.unpack_from(rest)
            daid = rest[_POSITIONS.size :].decode()
            return ForwardOutcome(origin, event_id, version, position, daid)
        if kind == _DECLINED:
            return ForwardOutcome(origin, event_id, detail=rest.decode())
    except (struct.error, UnicodeDecodeError) as exc:
        raise BadMessage(f"forward outcome: {exc}") from None
    raise BadMessage(f"forward outcome of unknown kind {kind!r}")


def bundle(frames: list[bytes]) -> bytes:
    """Several encoded messages for one channel as one (a Redis message costs a node
    more to publish and to receive than its bytes do)."""
    if len(frames) == 1:
        return frames[0]
    return bytes((_BUNDLE,)) + b"".join(_LENGTH.pack(len(frame)) + frame for frame in frames)


def unbundle(data: bytes) -> list[bytes]:
    """The encoded messages in what one channel carried; raises BadMessage when a
    bundle's framing is broken (the whole bundle is dropped: the log has its updates)."""
    if not data or data[0] != _BUNDLE:
        return [data]
    frames, at = [], 1
    while at < len(data):
        if at + _LENGTH.size > len(data):
            raise BadMessage("bundle cut short")
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            raise BadMessage("bundle cut short")
        frames.append(data[at : at + size])
        at += size
    return frames


def decode(data: bytes) -> Envelope:
    """The message in ``data``; raises BadMessage for anything else."""
    if len(data) < 1 + _NODE:
        raise BadMessage(f"{len(data)} bytes: too short for a message")
    kind, node, rest = data[0], _uuid_text(data[1 : 1 + _NODE]), data[1 + _NODE :]
    message: Message
    if kind in (_UPDATE, _FORWARDED_UPDATE, _AWARENESS, _QUERY):
        if len(rest) < _NODE:
            raise BadMessage("no project id")
        project_id, rest = _uuid_text(rest[:_NODE]), rest[_NODE:]
        if kind == _UPDATE:
            if len(rest) < _POSITIONS.size:
                raise BadMessage("update without its version and position")
            version, position = _POSITIONS.unpack_from(rest)
            message = CommittedUpdate(project_id, version, position, rest[_POSITIONS.size :])
        elif kind == _FORWARDED_UPDATE:
            message = _forwarded_update(project_id, rest)
        elif kind == _AWARENESS:
            message = Awareness(project_id, rest)
        else:
            message = AwarenessQuery(project_id)
    elif kind == _ACCESS:
        message = _access(rest)
    elif kind == _HEARTBEAT:
        message = Heartbeat()
    elif kind == _BYE:
        message = Farewell()
    elif kind in (_FORWARD, _OUTCOME):
        if len(rest) < _NODE:
            raise BadMessage("no node to send to")
        to, rest = _uuid_text(rest[:_NODE]), rest[_NODE:]
        if kind == _OUTCOME:
            message = _outcome(to, rest)
        elif len(rest) < _NODE:
            raise BadMessage("no project id")
        else:
            message = _forward(to, _uuid_text(rest[:_NODE]), rest[_NODE:])
    else:
        raise BadMessage(f"unknown message kind {kind!r}")
    return Envelope(node, message)


def _access(body: bytes) -> AccessChange:
    try:
        fields = json.loads(body)
        project, member, role = str(fields["project"]), str(fields["member"]), fields["role"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadMessage(f"access change: {exc}") from None
    if role is not None and role not in PROJECT_ROLES:
        raise BadMessage(f"access change: unknown role {role!r}")
    return AccessChange(project, member, role)


class Receiver(Protocol):
    """What a node does with what the others send (``Live`` in the server)."""

    def received(self, envelope: Envelope) -> None: ...

    def node_lost(self, node: str) -> None:
        """``node`` stopped or has not been heard of for ``NODE_TIMEOUT_SECONDS``."""

    def node_joined(self, node: str) -> None:
        """``node`` is heard for the first time, or again after it was lost."""

    def fast_path_resumed(self) -> None:
        """The fan-out is back after an outage: read what it may have missed."""

    def fast_path_lost(self) -> None:
        """The fan-out stopped working: nothing sent now is sure to arrive."""


class FanOut(Protocol):
    """The port: publish this node's news, hear the others' for the rooms it hosts.

    ``publish`` never waits and never raises: a message that cannot go out is dropped
    and counted (the log has the update; the others' followers find it).
    """

    node: str

    def publish(self, message: Message) -> None: ...

    def watch(self, project_id: str) -> None:
        """Receive the messages of ``project_id``'s room from now on."""

    def unwatch(self, project_id: str) -> None: ...

    def home(self, project_id: str) -> str | None:
        """The node that appends the updates of ``project_id`` (a watched project) when
        that is another node and it can be reached now; None when this node appends
        them itself. Nodes take a project's home in turn: the first to host its room
        holds it while it does and while it is heard."""

    async def start(self, receiver: Receiver) -> None: ...

    async def close(self) -> None: ...

    @property
    def connected(self) -> bool:
        """Whether messages go out and come in now."""


class Alone:
    """A node without a cluster (no ``REDIS_URL``): nothing to tell anyone."""

    def __init__(self) -> None:
        self.node = new_node_id()

    def publish(self, message: Message) -> None:
        pass

    def watch(self, project_id: str) -> None:
        pass

    def unwatch(self, project_id: str) -> None:
        pass

    def home(self, project_id: str) -> str | None:
        return None

    async def start(self, receiver: Receiver) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return False
