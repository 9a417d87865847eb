"""WebSocket close codes this server sends, each with the reason clients see."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    #: the server is going down for a restart (SIGTERM); reconnect later
    SERVICE_RESTART = 1012
    #: the database is unreachable or the server is overloaded; reconnect later
    TRY_AGAIN_LATER = 1013
    #: a frame that breaks the protocol or an update that does not decode
    BAD_MESSAGE = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    UNKNOWN_PROJECT = 4404
    #: the client stopped reading and its send queue overflowed
    TOO_SLOW = 4408
    #: a message larger than the configured limit
    TOO_LARGE = 4413


def close_reason(text: str) -> str:
    """WebSocket close reasons are limited to 123 bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", errors="ignore") + "..."
