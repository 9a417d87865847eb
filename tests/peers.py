"""A room's peer without a connection: it records what the room hands it."""

from __future__ import annotations

from collab.live import protocol
from collab.live.closecodes import CloseCode


class RecordingPeer:
    """The room's view of a connection: records what the room hands it."""

    actor = "tester"
    agent = "collab-server"

    def __init__(self, *, can_write: bool = True) -> None:
        self.can_write = can_write
        self.frames: list[bytes] = []
        self.closed: tuple[CloseCode, str] | None = None

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: CloseCode, reason: str) -> None:
        self.closed = (code, reason)

    def messages(self) -> list[protocol.Message]:
        return [protocol.decode(frame) for frame in self.frames]

    def updates(self) -> list[bytes]:
        """The updates broadcast to this peer, in order."""
        return [
            message.update for message in self.messages() if isinstance(message, protocol.Update)
        ]
