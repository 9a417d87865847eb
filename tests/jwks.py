"""A JWKS endpoint on 127.0.0.1 for the token tests, and its fixture (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts requests and can misbehave on demand."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        self.mode = "ok"  # ok | garbage | error | hang
        self._release = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with asyncio.timeout(5):
                await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.mode == "hang":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await self._release.wait()
                return
            status, body = "200 OK", json.dumps({"keys": self.keys}).encode()
            if self.mode == "garbage":
                body = b"<html>identity provider maintenance</html>"
            elif self.mode == "error":
                status, body = "500 Internal Server Error", b"{}"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)
