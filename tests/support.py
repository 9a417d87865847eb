"""Helpers shared by the tests: timeouts, databases, subprocesses."""

from __future__ import annotations

import asyncio
import os
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


def run_collab(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``collab`` command on ``database_url``, with only the given COLLAB_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        env={**clean, "DATABASE_URL": database_url, **env},
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
