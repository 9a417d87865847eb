"""Checks every request passes before any route sees it, as pure ASGI middleware.

The server binds to loopback, but the user's own browser reaches it: a page from any
site can POST forms and text, open WebSockets, and (by DNS rebinding) send requests
under a name of its own. So, outermost first (``collab.app`` puts them in order):

- :class:`HostCheck`: the ``Host`` must be an allowed host (400), which defeats DNS
  rebinding (starlette's ``TrustedHostMiddleware``, its refusal answered as JSON).
- starlette's ``CORSMiddleware`` (in ``collab.app``): answers preflights and lets the
  pages of the listed origins read answers, errors included.
- :class:`InternalErrors`: anything a route did not expect answers a JSON 500 naming
  the request id, and the traceback is logged under that id.
- :class:`RequestGuard`: no NUL character in the path or query (400; PostgreSQL text
  cannot hold one); for unsafe methods and the WebSocket upgrade, an ``Origin`` header
  must name an allowed origin (requests without one, from curl or services, pass):
  otherwise 403, and a WebSocket is accepted and closed at once with 4403 (a browser
  shows the page no HTTP refusal of an upgrade, only close code 1006, after which the
  stock y-websocket provider retries forever; 44xx makes it stop);
  an unsafe request that has a body or a ``Content-Type`` must say
  ``application/json`` (415; what HTML forms and ``text/plain`` posts cannot do without
  a CORS preflight); on any request, a body larger than the limit is refused with 413
  when its ``Content-Length`` says so, before reading it, and otherwise as soon as the
  bytes received pass the limit (chunked bodies), never held whole.

A bodiless unsafe request without ``Content-Type`` (``curl -X POST`` without ``-d``)
passes the media type check: every route that writes needs a body and answers 422
without one, and a browser sending it cross-site is stopped by the origin check.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from collab.http.errors import internal_error
from collab.http.origins import AllowedOrigins
from collab.http.responses import error_response
from collab.live.closecodes import CloseCode, close_reason

log = structlog.get_logger("collab.http")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOST_ALLOWED = "collab.host_allowed"
_CLOSE = {"Connection": "close"}


class HostCheck:
    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self._check = TrustedHostMiddleware(
            _mark_allowed, allowed_hosts=list(allowed_hosts), www_redirect=False
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # The check calls _mark_allowed for a good host; its plain-text refusal of
            # a bad one is dropped and answered below as JSON.
            await self._check(scope, receive, _drop)
            if not scope.pop(_HOST_ALLOWED, False):
                host = Headers(scope=scope).get("host")
                message = f"host {host!r} is not served here (see COLLAB_ALLOWED_HOSTS)"
                log.info("host refused", host=host, path=scope["path"])
                await error_response(400, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _mark_allowed(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope[_HOST_ALLOWED] = True


async def _drop(_message: Message) -> None:
    return


class BodyTooLarge(Exception):
    """Raised into the route reading the body; the guard answers 413."""


class RequestGuard:
    def __init__(self, app: ASGIApp, allowed: AllowedOrigins, max_body_bytes: int) -> None:
        self.app = app
        self._allowed = allowed
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            if status == 403:
                log.info("origin refused", origin=headers.get("origin"), path=scope["path"])
                if scope["type"] == "websocket":
                    await _refuse_websocket(scope, receive, send, headers.get("origin", ""))
                    return
            elif status == 413:
                log.info("body too large", length=headers.get("content-length"))
            extra = _CLOSE if status == 413 else None
            await error_response(status, message, headers=extra)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        if "\x00" in scope["path"]:
            return 400, "the path holds a NUL character (%00), which names nothing here"
        query = scope.get("query_string", b"").decode("latin-1")
        if "%00" in query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    return 400, f"query parameter {name!r} holds a NUL character (%00)"
        websocket = scope["type"] == "websocket"
        unsafe = websocket or scope["method"] in UNSAFE_METHODS
        origin = headers.get("origin")
        if unsafe and origin is not None and not self._allowed.allows(origin, headers.get("host")):
            return 403, f"origin {origin!r} may not write here (see COLLAB_ALLOWED_ORIGINS)"
        if websocket:
            return None
        length = headers.get("content-length")
        if unsafe:
            has_body = "transfer-encoding" in headers or (length is not None and length != "0")
            media = headers.get("content-type")
            if (has_body or media is not None) and not _is_json(media):
                method = scope["method"]
                return 415, f"{method} needs Content-Type: application/json (got {media or 'none'})"
        if length is not None and length.isdigit() and int(length) > self._limit:
            return 413, f"request body of {length} bytes is over the {self._limit}-byte limit"
        return None

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            log.info("body too large", received=received)
            message = f"request body is over the {self._limit}-byte limit"
            await error_response(413, message, headers=_CLOSE)(scope, receive, send)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, origin: str) -> None:
    # The setting comes before the origin, which is the client's text and may be long:
    # a reason cut to the 123-byte limit still says what to change.
    reason = f"origin not allowed (see COLLAB_ALLOWED_ORIGINS): {origin}"
    websocket = WebSocket(scope, receive, send)
    try:
        await websocket.accept()
        await websocket.close(CloseCode.FORBIDDEN, close_reason(reason))
    except (WebSocketDisconnect, RuntimeError):
        return  # the client left before the upgrade completed


def _is_json(media: str | None) -> bool:
    if media is None:
        return False
    kind, *params = (part.strip().lower() for part in media.split(";"))
    if kind != "application/json":
        return False
    # JSON is UTF-8 (RFC 8259); a charset parameter may only say so.
    return all(p.replace(" ", "") in ("charset=utf-8", "charset=utf8", "") for p in params)


class InternalErrors:
    """Inside the request context (so the log line and the answer carry the request id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:
                raise
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            request_id = scope.get("state", {}).get("request_id")
            await internal_error(request_id)(scope, receive, send)
