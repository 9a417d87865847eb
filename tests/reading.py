"""HTTP helpers of the read side's tests: a client, an edit, a history page, and a walk
over cursor pages that cannot loop for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.support import timeout

#: an edit that adds a track named Bass
TRACK = {"op": "add_track", "track_id": "bass", "name": "Bass"}


def http(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", timeout=30)


async def edit(client: httpx.AsyncClient, project: str, ops: list[Any], actor: str = "ana") -> Any:
    response = await client.post(
        f"/api/projects/{project}/edits", json={"operations": ops}, headers={"X-Actor": actor}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def every_page(
    fetch: Callable[[str | None], Awaitable[Any]], *, most: int, seconds: float = 60
) -> list[Any]:
    """The pages from the first on, following ``next_cursor`` until it is null; fails,
    rather than loop for ever, past ``most`` pages or a scaled deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    pages: list[Any] = []
    cursor: str | None = None
    while len(pages) < most:
        pages.append(await fetch(cursor))
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        assert loop.time() < deadline, f"still a next_cursor after {timeout(seconds):.0f} s"
    raise AssertionError(f"still a next_cursor after {most} pages")


async def history(client: httpx.AsyncClient, project: str, position: int, **params: Any) -> Any:
    response = await client.get(
        f"/api/projects/{project}/history", params={"min_position": position, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()
