"""WebSocket close codes this server sends, each with the reason clients see.

The codes are chosen for what the stock ``y-websocket`` provider (3.x, the version
locked in ``tests/node``) does with them. When the server closes a connection, the
provider's default ``shouldReconnect`` is ``!(code >= 4400 && code < 4500)``:

- a code in **4400-4499** is permanent: the provider sets ``shouldConnect = false`` (so
  the reconnect it schedules does nothing), emits ``connection-close`` and then
  ``closed`` with ``{code, reason}``, and stays disconnected until the page calls
  ``provider.connect()`` again;
- **every other code** (1006 for a dropped connection, 1012, 1013, 4500-4599, ...) is
  transient: it emits ``connection-close`` and reconnects after an exponential backoff
  (``2^n * 100`` ms for the n-th closed connection in a row, capped at
  ``maxBackoffTime``, 2.5 s by default; n is reset once a connection has synced).

So 44xx is kept for refusals reconnecting cannot fix (mirroring HTTP 4xx), and a
client that should come back is closed with 1012, 1013 or a 45xx code. An HTTP
refusal of the upgrade itself reaches the page as 1006 and is retried forever, which
is why refusals are sent as close codes after the upgrade.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    # -- reconnect later (the provider retries) --
    #: the server is going down for a restart (SIGTERM); reconnect later
    SERVICE_RESTART = 1012
    #: the database is unreachable or the server is overloaded; reconnect later
    TRY_AGAIN_LATER = 1013
    #: the client stopped reading and its send queue overflowed; reconnecting resyncs it
    TOO_SLOW_RECONNECT = 4508
    #: the client sent more than its rate allows; reconnect after a pause
    RATE_LIMITED = 4529

    # -- permanent (the provider stops) --
    #: a frame that breaks the protocol or an update that does not decode
    BAD_MESSAGE = 4400
    UNAUTHENTICATED = 4401
    #: not allowed: a page from an origin not in COLLAB_ALLOWED_ORIGINS, or no role
    FORBIDDEN = 4403
    UNKNOWN_PROJECT = 4404
    #: a message larger than the configured limit
    TOO_LARGE = 4413

    @property
    def permanent(self) -> bool:
        """Whether the stock provider gives up after this code (see the module doc)."""
        return 4400 <= self.value < 4500


def close_reason(text: str) -> str:
    """WebSocket close reasons are limited to 123 bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", errors="ignore") + "..."
