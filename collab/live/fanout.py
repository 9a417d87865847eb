"""How the nodes of a cluster tell each other what happened in their rooms: the port,
its messages and their bytes (no I/O here; :mod:`collab.live.redis_fanout` carries them
through Redis).

PostgreSQL stays the truth: a message lost on the way costs latency, never an edit. A
node applies a received update only after checking its stream version against the
room's; what it missed it reads from the log (``Rooms.fill_gaps``), and the rooms'
follower reads the log anyway every ``COLLAB_FOLLOW_SECONDS`` (:mod:`collab.live.rooms`).

Messages on a project's channel: a committed update (stream version, global position,
the update), an awareness frame, a request for everyone's awareness. On the cluster's
channel: access changes, node heartbeats and farewells. Every message names the node
that sent it, so a node ignores its own.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from collab.access.members import PROJECT_ROLES, ProjectRole

#: seconds between two heartbeats of a node
HEARTBEAT_SECONDS: Final = 1.0
#: a node not heard of for this long is gone: its clients' presence is dropped
NODE_TIMEOUT_SECONDS: Final = 5.0

_UPDATE, _AWARENESS, _QUERY, _ACCESS, _HEARTBEAT, _BYE = b"UAQXHB"
_NODE = 16  # a node id is a UUID's 16 bytes
_POSITIONS = struct.Struct(">QQ")


class BadMessage(ValueError):
    """Bytes on a fan-out channel that are not a message of this version (logged and
    dropped; the log still has every update)."""


@dataclass(frozen=True, slots=True)
class CommittedUpdate:
    project_id: str
    version: int
    position: int
    update: bytes


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


RoomMessage = CommittedUpdate | Awareness | AwarenessQuery
ClusterMessage = AccessChange | Heartbeat | Farewell
Message = RoomMessage | ClusterMessage


@dataclass(frozen=True, slots=True)
class Envelope:
    node: str
    message: Message


def new_node_id() -> str:
    return str(uuid.uuid4())


def encode(node: str, message: Message) -> bytes:
    head = uuid.UUID(node).bytes
    match message:
        case CommittedUpdate(project_id, version, position, update):
            return (
                bytes((_UPDATE,))
                + head
                + uuid.UUID(project_id).bytes
                + _POSITIONS.pack(version, position)
                + update
            )
        case Awareness(project_id, frame):
            return bytes((_AWARENESS,)) + head + uuid.UUID(project_id).bytes + frame
        case AwarenessQuery(project_id):
            return bytes((_QUERY,)) + head + uuid.UUID(project_id).bytes
        case AccessChange(project_id, member, role):
            body = json.dumps({"project": project_id, "member": member, "role": role})
            return bytes((_ACCESS,)) + head + body.encode()
        case Heartbeat():
            return bytes((_HEARTBEAT,)) + head
        case Farewell():
            return bytes((_BYE,)) + head


def decode(data: bytes) -> Envelope:
    """The message in ``data``; raises BadMessage for anything else."""
    if len(data) < 1 + _NODE:
        raise BadMessage(f"{len(data)} bytes: too short for a message")
    kind, node, rest = data[0], str(uuid.UUID(bytes=data[1 : 1 + _NODE])), data[1 + _NODE :]
    message: Message
    if kind in (_UPDATE, _AWARENESS, _QUERY):
        if len(rest) < _NODE:
            raise BadMessage("no project id")
        project_id, rest = str(uuid.UUID(bytes=rest[:_NODE])), rest[_NODE:]
        if kind == _UPDATE:
            if len(rest) < _POSITIONS.size:
                raise BadMessage("update without its version and position")
            version, position = _POSITIONS.unpack_from(rest)
            message = CommittedUpdate(project_id, version, position, rest[_POSITIONS.size :])
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

    async def start(self, receiver: Receiver) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return False
