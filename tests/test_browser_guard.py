"""What a web page in the user's browser can do to a server on loopback: nothing, unless
it is served from an allowed origin. Real server, real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pycrdt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from collab.http.origins import AllowedOrigins
from collab.live.closecodes import CloseCode
from collab.runtime.config import (
    LOOPBACK_HOSTS,
    ConfigError,
    HttpSettings,
    http_settings,
    load_settings,
)
from events.postgres import PostgresEventStore
from music import document
from tests.live import create_project, metric, project_events, running_server
from tests.support import eventually, timeout

EVIL = "http://evil.example"


def http(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", timeout=timeout(30))


async def stored_events(database_url: str) -> int:
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    try:
        return await store.head_position()
    finally:
        await store.close()


async def upgrade_status(address: str, host: str) -> int:
    """The status of a WebSocket upgrade sent with this Host header (clients set their
    own, so by hand)."""
    name, port = address.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    try:
        writer.write(
            f"GET /ws/{uuid.uuid4()} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        line = await asyncio.wait_for(reader.readline(), timeout(10))
        return int(line.split()[1])
    finally:
        writer.close()


async def test_a_foreign_host_is_a_400(database_url):
    async with running_server(database_url) as address, http(address) as client:
        port = address.split(":")[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", "localhost.evil"):
            response = await client.get("/api/projects", headers={"Host": host})
            assert response.status_code == 400, host
            assert response.json()["error"] == 400
            assert host in response.json()["message"]
            write = await client.post("/api/projects", json={"name": "x"}, headers={"Host": host})
            assert write.status_code == 400
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
            response = await client.get("/health", headers={"Host": host})
            assert response.status_code == 200, host
        assert await upgrade_status(address, "evil.example") == 400
        assert await upgrade_status(address, address) == 101
    assert await stored_events(database_url) == 0


async def test_a_foreign_origin_cannot_write(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        before = await stored_events(database_url)
        origin = {"Origin": EVIL}
        for path, body in [
            ("/api/projects", {"name": "csrf"}),
            (f"/api/projects/{project}/edits", {"operations": [{"op": "set_meta", "fields": {}}]}),
            (f"/api/projects/{project}/snapshots", {"name": "csrf"}),
            (f"/api/projects/{project}/rollback", {"version": 1}),
        ]:
            response = await client.post(path, json=body, headers=origin)
            assert response.status_code == 403, (path, response.text)
            assert EVIL in response.json()["message"]
            # The simple request a page can send without a preflight: refused the same.
            plain = await client.post(
                path, content=b"{}", headers={**origin, "Content-Type": "text/plain"}
            )
            assert plain.status_code == 403
        port = address.split(":")[1]
        for foreign in ("null", "http://evil.example:80", f"http://127.0.0.1.evil.example:{port}"):
            response = await client.post("/api/projects", json={}, headers={"Origin": foreign})
            assert response.status_code == 403, foreign
        assert await stored_events(database_url) == before
        # Reads stay open to any origin (the browser keeps the answer from the page).
        assert (await client.get("/api/projects", headers=origin)).status_code == 200


async def test_the_servers_own_origins_may_write(database_url):
    async with running_server(database_url) as address, http(address) as client:
        port = address.split(":")[1]
        for origin in (
            f"http://127.0.0.1:{port}",
            f"http://localhost:{port}",
            f"https://localhost:{port}",
            f"http://[::1]:{port}",
            f"HTTP://LocalHost:{port}",
        ):
            response = await client.post(
                "/api/projects", json={"name": "mine"}, headers={"Origin": origin}
            )
            assert response.status_code == 201, (origin, response.text)
        # Another port of the same host is another origin.
        other = await client.post(
            "/api/projects", json={"name": "x"}, headers={"Origin": "http://localhost:1"}
        )
        assert other.status_code == 403


async def test_listed_origins_replace_the_default(database_url):
    app_origin = "https://app.example:5173"
    listed = HttpSettings(allowed_origins=(app_origin,))
    async with running_server(database_url, http=listed) as address, http(address) as client:
        port = address.split(":")[1]
        ok = await client.post("/api/projects", json={"name": "a"}, headers={"Origin": app_origin})
        assert ok.status_code == 201, ok.text
        # Not listed, but the request's own origin (Origin names its Host): allowed.
        own = await client.post(
            "/api/projects", json={"name": "b"}, headers={"Origin": f"http://{address}"}
        )
        assert own.status_code == 201
        other = await client.post(
            "/api/projects", json={"name": "c"}, headers={"Origin": f"http://localhost:{port}"}
        )
        assert other.status_code == 403


async def test_a_websocket_from_a_foreign_origin_is_closed_with_4403(database_url):
    # Accepted and closed at once rather than refused with an HTTP status: a page sees
    # no HTTP status, and the stock provider stops only on a 44xx close code.
    async with running_server(database_url) as address:
        project = await create_project(address)
        before = await stored_events(database_url)
        rooms = await metric(address, "collab_rooms")
        doc: pycrdt.Doc[object] = pycrdt.Doc()
        doc.get(document.META, type=pycrdt.Map)["key"] = "E minor"
        url = f"ws://{address}/ws/{project}"
        async with websockets.connect(url, origin=EVIL) as refused:
            with contextlib.suppress(ConnectionClosed):
                await refused.send(pycrdt.create_update_message(doc.get_update()))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(refused.recv(), timeout(10))
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.FORBIDDEN == 4403
        assert EVIL in closed.value.rcvd.reason
        assert "COLLAB_ALLOWED_ORIGINS" in closed.value.rcvd.reason
        # Refused before any room was loaded, and nothing it sent was stored.
        assert await metric(address, "collab_rooms") == rooms == 0
        assert await stored_events(database_url) == before

        # A long origin is cut, the setting's name is not.
        long_origin = "http://" + "a" * 200 + ".example"
        async with websockets.connect(url, origin=long_origin) as refused:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(refused.recv(), timeout(10))
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
        assert "COLLAB_ALLOWED_ORIGINS" in closed.value.rcvd.reason

        # From the server's own origin and without an Origin (Node, pycrdt, services),
        # editing works.
        port = address.split(":")[1]
        for i, origin in enumerate((f"http://localhost:{port}", None)):
            doc = pycrdt.Doc()
            doc.get(document.META, type=pycrdt.Map)["key"] = f"key {i}"
            async with websockets.connect(url, origin=origin) as ws:
                await ws.send(pycrdt.create_update_message(doc.get_update()))

                async def stored(count: int = before + i + 1) -> bool:
                    return len(await project_events(database_url, project)) == count

                await eventually(stored, 10, f"the edit from origin {origin} was not stored")


async def test_cors_preflights_from_allowed_origins_only(database_url):
    async with running_server(database_url) as address, http(address) as client:
        port = address.split(":")[1]
        page = f"http://localhost:{port}"
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-actor",
        }
        ok = await client.options("/api/projects", headers={"Origin": page, **preflight})
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == page
        allowed = {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")}
        assert allowed == {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
        headers = {h.strip().lower() for h in ok.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-actor", "x-request-id"} <= headers
        assert "access-control-allow-credentials" not in ok.headers
        # Answered before routing: any path, whatever methods its route has.
        for path in ("/api/projects/x/edits", "/health"):
            other = await client.options(path, headers={"Origin": page, **preflight})
            assert other.status_code == 200, (path, other.text)

        foreign = await client.options("/api/projects", headers={"Origin": EVIL, **preflight})
        assert foreign.status_code == 400
        assert "origin" in foreign.text
        assert "access-control-allow-origin" not in foreign.headers
        header = {"Origin": page, "Access-Control-Request-Method": "POST"}
        odd = await client.options(
            "/api/projects", headers={**header, "Access-Control-Request-Headers": "x-secret"}
        )
        assert odd.status_code == 400

        # The answers themselves: an allowed page reads them and the exposed headers,
        # errors included; a foreign page gets no allow-origin and its write the 403.
        created = await client.post("/api/projects", json={"name": "p"}, headers={"Origin": page})
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == page
        exposed = {
            h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")
        }
        assert exposed == {"x-request-id", "retry-after"}
        assert created.headers["x-request-id"]
        refused = await client.post(
            "/api/projects", content=b"x", headers={"Origin": page, "Content-Type": "text/plain"}
        )
        assert refused.status_code == 415
        assert refused.headers["access-control-allow-origin"] == page
        forged = await client.post("/api/projects", json={"name": "f"}, headers={"Origin": EVIL})
        assert forged.status_code == 403
        assert "access-control-allow-origin" not in forged.headers
        read = await client.get("/api/projects", headers={"Origin": EVIL})
        assert read.status_code == 200
        assert "access-control-allow-origin" not in read.headers


async def test_cors_follows_the_listed_origins(database_url):
    app_origin = "https://app.example:5173"
    listed = HttpSettings(allowed_origins=(app_origin,))
    async with running_server(database_url, http=listed) as address, http(address) as client:
        port = address.split(":")[1]
        preflight = {"Access-Control-Request-Method": "DELETE"}
        ok = await client.options("/api/projects", headers={"Origin": app_origin, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == app_origin
        # A public page reaching a server on loopback (Chrome's private network check).
        private = {**preflight, "Access-Control-Request-Private-Network": "true"}
        pna = await client.options("/api/projects", headers={"Origin": app_origin, **private})
        assert pna.status_code == 200
        assert pna.headers["access-control-allow-private-network"] == "true"
        evil = await client.options("/api/projects", headers={"Origin": EVIL, **private})
        assert evil.status_code == 400
        # The default origins are replaced, not added to.
        local = await client.options(
            "/api/projects", headers={"Origin": f"http://localhost:{port}", **preflight}
        )
        assert local.status_code == 400


def test_default_hosts_are_loopback_and_the_bind_host():
    assert http_settings(load_settings()).allowed_hosts == LOOPBACK_HOSTS
    assert http_settings(load_settings(host="0.0.0.0")).allowed_hosts == LOOPBACK_HOSTS  # noqa: S104
    assert http_settings(load_settings(host="::")).allowed_hosts == LOOPBACK_HOSTS
    assert http_settings(load_settings(host="10.1.2.3")).allowed_hosts[-1] == "10.1.2.3"
    assert http_settings(load_settings(host="fe80::1")).allowed_hosts[-1] == "[fe80::1]"
    given = http_settings(load_settings(allowed_hosts="collab.example, ::1"))
    assert given.allowed_hosts == ("collab.example", "[::1]")
    origins = AllowedOrigins.of(http_settings(load_settings(port=8000)))
    assert "http://localhost:8000" in origins.listed
    assert "https://[::1]:8000" in origins.listed
    for bad in ({"allowed_hosts": "http://x"}, {"allowed_origins": "evil.example"}):
        with pytest.raises(ConfigError):
            load_settings(**bad)
