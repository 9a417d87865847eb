"""permessage-deflate is off unless asked for (``COLLAB_WS_COMPRESSION``): a browser or
``websockets`` client offers it on every connection, and accepting it costs each
connection a compressor and a decompressor (docs/live.md)."""

from __future__ import annotations

import pytest
import websockets

from collab.runtime.config import Settings
from tests.live import create_project, running_server


@pytest.mark.parametrize("compression", [False, True])
async def test_deflate_is_negotiated_only_when_asked_for(
    database_url: str, compression: bool
) -> None:
    async with running_server(database_url, compression=compression) as address:
        project = await create_project(address)
        async with websockets.connect(f"ws://{address}/ws/{project}") as ws:
            assert ws.response is not None
            offered = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in offered) is compression


def test_the_setting_defaults_to_off() -> None:
    assert Settings().ws_compression is False
    assert Settings(ws_compression="true").ws_compression is True
