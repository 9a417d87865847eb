"""Helpers shared by the tests: timeouts, databases, subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

#: every timeout in the tests is multiplied by this (slow or loaded machines)
TIMEOUT_SCALE = float(os.environ.get("COLLAB_TEST_TIMEOUT_SCALE", "1"))
ROOT = Path(__file__).resolve().parent.parent


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def create_database(server_url: str, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server_url)
    try:
        clause = f" template {template}" if template else ""
        await conn.execute(f"create database {name}{clause}")
    finally:
        await conn.close()
    return name


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
    finally:
        await conn.close()


def start_embedded(pgdata: Path) -> Any:
    """A real PostgreSQL from the pgserver wheel (the same one ``collab serve`` uses)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415

        return pgserver.get_server(pgdata, cleanup_mode="delete")


def clean_env(**overrides: str) -> dict[str, str]:
    """A copy of ``os.environ`` for a ``collab`` subprocess: without any ``COLLAB_*``
    setting or ``DATABASE_URL`` of the machine running the tests, with ``overrides``.

    Authentication and rate limits are off (``COLLAB_AUTH=off``,
    ``COLLAB_RATE_LIMITS=off``) unless ``overrides`` turn them on: the tests of other
    things call as ``X-Actor`` and reconnect as often as they need; tests/test_auth.py,
    tests/test_rate_limits.py and tests/test_cli.py (the embedded default) test them on."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COLLAB_") and k != "DATABASE_URL"
    }
    return {**env, "COLLAB_AUTH": "off", "COLLAB_RATE_LIMITS": "off", **overrides}


def run_collab(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``collab`` command on ``database_url``, with only the given COLLAB_* settings."""
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        env=clean_env(DATABASE_URL=database_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout(300),
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    seconds: float,
    message: str,
    interval: float = 0.02,
) -> None:
    """Wait until ``check()`` is true, failing with ``message`` after a scaled timeout."""
    deadline = asyncio.get_running_loop().time() + timeout(seconds)
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout(seconds):.1f}s: {message}")
        await asyncio.sleep(interval)


def projections(response: httpx.Response) -> dict[str, Any]:
    """The projections a ``/ready`` answer lists (none when it lists none)."""
    body = response.json()
    found = body.get("projections", {}) if isinstance(body, dict) else {}
    return dict(found)


def answers_200(response: httpx.Response) -> bool:
    return response.status_code == 200


def projections_run(response: httpx.Response) -> bool:
    """``/ready`` says every projection runs (whatever its status code)."""
    return {p["state"] for p in projections(response).values()} == {"running"}


def ready_and_running(response: httpx.Response) -> bool:
    """``/ready`` answers 200 and every projection runs."""
    return response.status_code == 200 and projections_run(response)


def at_head(response: httpx.Response) -> bool:
    """``/ready`` answers 200 and no projection lags behind the log or is not running."""
    return response.status_code == 200 and all(
        p["state"] == "running" and p["lag"] == 0 for p in projections(response).values()
    )


class NotReady(AssertionError):
    """``/ready`` did not reach the wanted state in time; ``last`` says what it answered
    last (or why it did not answer)."""

    def __init__(self, message: str, last: str) -> None:
        super().__init__(f"{message} (last answer: {last})")
        self.last = last


async def wait_ready(
    server: str | httpx.AsyncClient,
    predicate: Callable[[httpx.Response], bool] = answers_200,
    *,
    seconds: float = 60,
    message: str = "/ready did not reach the wanted state",
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.1,
) -> httpx.Response:
    """The first ``/ready`` answer of ``server`` (a base URL, or a client with one) that
    ``predicate`` accepts, polled until a scaled deadline. A server that does not answer
    (yet), or answers something that is not JSON, is not ready; ``process`` exiting
    fails at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    last = "none"
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(server, str):
            server = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server, timeout=timeout(10))
            )
        while True:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{message}: the server exited with {process.returncode}")
            try:
                response = await server.get("/ready")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                last = f"{response.status_code}: {response.text[:300]}"
                try:
                    if predicate(response):
                        return response
                except ValueError:  # not JSON
                    pass
            if loop.time() > deadline:
                raise NotReady(f"timed out after {timeout(seconds):.1f}s: {message}", last)
            await asyncio.sleep(interval)


def stop_serve(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM a ``collab serve`` started with text pipes: its exit code and stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=timeout(60))
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"serve did not stop on SIGTERM:\n{stderr[-3000:]}") from None
    return process.returncode, stderr
