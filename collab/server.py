"""Running the app under uvicorn: WebSocket limits, graceful drain, clean exit on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from starlette.applications import Starlette

from collab.app import drain

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build_config(
    app: Starlette,
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    ping_interval: float = 20.0,
    graceful_timeout: int = 30,
    compression: bool = False,
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        # Our own limit answers with 4413 and a reason; the protocol layer's (1009,
        # no reason) only catches frames far beyond it.
        ws_max_size=2 * max_message_bytes + 1024 * 1024,
        # Pings keep idle connections alive through proxies; a client that does not
        # answer within ping_interval is dropped.
        ws_ping_interval=ping_interval,
        ws_ping_timeout=ping_interval,
        # permessage-deflate keeps a compressor and a decompressor per connection: about
        # 50 KiB of an idle connection's 84 KiB (tracemalloc, 2026-12-04), and a
        # compression of every broadcast frame per peer. Off unless asked for, as in
        # the y-websocket reference server.
        ws_per_message_deflate=compression,
        timeout_graceful_shutdown=graceful_timeout,
    )


class Server(uvicorn.Server):
    """uvicorn, plus two things.

    On shutdown it stops accepting, then drains the app (the writer makes every queued
    update durable and its broadcasts go out) before uvicorn closes the connections
    with 1012. And uvicorn re-raises the captured signal after a graceful shutdown,
    which kills the process before ``atexit`` runs (leaving the embedded PostgreSQL up)
    and makes the exit status look like a crash; we return instead.
    """

    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown
        if before_shutdown is None and isinstance(config.app, Starlette):
            app = config.app
            self._before_shutdown = lambda: drain(app)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        if self._before_shutdown is not None and self.started:
            await self._before_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
