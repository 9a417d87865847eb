"""Bad HTTP input against a real server: every refusal is JSON with a fitting status,
nothing refused is stored, and no value the database or JSON cannot hold gets in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pycrdt
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.guards import InternalErrors
from collab.http.middleware import RequestContextMiddleware
from collab.runtime.config import HttpSettings
from events import EventMetadata, NewEvent
from events.models import DocUpdated, project_stream
from events.postgres import PostgresEventStore
from events.store import ANY
from music import document
from tests.live import create_project, log_doc, project_events, running_server
from tests.support import timeout

LIMIT = 4096
SMALL = HttpSettings(max_body_bytes=LIMIT)
JSON = {"Content-Type": "application/json"}


def http(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", timeout=timeout(30))


@contextlib.asynccontextmanager
async def raw_connection(address: str) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one response, within a deadline."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(10))
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout(10))
    return int(status_line.split()[1]), headers, json.loads(body)


async def stored_events(database_url: str) -> int:
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    try:
        return await store.head_position()
    finally:
        await store.close()


# -- body size ---------------------------------------------------------------------------


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(database_url):
    async with running_server(database_url, http=SMALL) as address:
        async with raw_connection(address) as (reader, writer):
            # Only the head goes out: the answer must not wait for the body.
            writer.write(
                f"POST /api/projects HTTP/1.1\r\nHost: {address}\r\n"
                "Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n".encode()
            )
            await writer.drain()
            status, headers, body = await read_response(reader)
        assert status == 413
        assert body["error"] == 413
        assert f"{LIMIT}-byte limit" in body["message"]
        assert headers["content-type"] == "application/json"
        async with http(address) as client:
            big = {"name": "x", "metadata": {"pad": "x" * LIMIT}}
            response = await client.post("/api/projects", json=big)
            assert response.status_code == 413
            small = await client.post("/api/projects", json={"name": "fits"})
            assert small.status_code == 201
    assert await stored_events(database_url) == 2  # the project that fits: two events


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(database_url):
    async with running_server(database_url, http=SMALL) as address:
        async with raw_connection(address) as (reader, writer):
            writer.write(
                f"POST /api/projects HTTP/1.1\r\nHost: {address}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b'{"name":"x","metadata":{"pad":"' + b"x" * 1000
            sent = 0
            while sent <= LIMIT:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"x" * 1000
            await writer.drain()
            # The body never ends (no last chunk): a server that waited for it, to
            # hold it whole, would never answer.
            status, headers, body = await read_response(reader)
        assert status == 413
        assert body["message"] == f"request body is over the {LIMIT}-byte limit"
        assert headers["connection"] == "close"
    assert await stored_events(database_url) == 0


# -- media type --------------------------------------------------------------------------


NOT_JSON = [
    ({"Content-Type": "text/plain"}, b'{"name":"csrf"}'),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"name=csrf"),
    ({"Content-Type": "multipart/form-data; boundary=b"}, b"--b\r\n\r\ncsrf\r\n--b--\r\n"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b""),  # an empty form
    ({"Content-Type": "application/json; charset=latin-1"}, b'{"name":"csrf"}'),
    ({}, b'{"name":"csrf"}'),
]


async def test_writes_need_a_json_media_type(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        before = await stored_events(database_url)
        for path in [
            "/api/projects",
            f"/api/projects/{project}/edits",
            f"/api/projects/{project}/snapshots",
            f"/api/projects/{project}/rollback",
            f"/api/projects/{project}/analyses",
            "/api/provenance",
        ]:
            for headers, content in NOT_JSON:
                response = await client.post(path, content=content, headers=headers)
                assert response.status_code == 415, (path, headers, response.text)
                assert "needs Content-Type: application/json" in response.json()["message"]
        assert await stored_events(database_url) == before


async def test_json_with_a_utf8_charset_is_accepted_and_a_bodiless_post_is_a_422(database_url):
    async with running_server(database_url) as address, http(address) as client:
        utf8 = {"Content-Type": "Application/JSON; charset=UTF-8"}
        response = await client.post("/api/projects", content=b'{"name":"A"}', headers=utf8)
        assert response.status_code == 201, response.text
        # No body and no media type: the route runs and wants its body.
        bodiless = await client.post(f"/api/projects/{response.json()['id']}/rollback")
        assert bodiless.status_code == 422
        assert bodiless.json()["fields"][0]["field"] == "body"
    assert await stored_events(database_url) == 2


# -- JSON values -------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A project whose body nests ``depth`` levels, the body itself the first."""
    return '{"name":"deep","metadata":' + '{"a":' * (depth - 1) + "1" + "}" * depth


async def test_deeply_nested_json_is_a_400(database_url):
    async with running_server(database_url) as address, http(address) as client:
        for depth in (65, 5_000, 200_000):
            response = await client.post("/api/projects", content=nested(depth), headers=JSON)
            assert response.status_code == 400, response.text
            assert "nests deeper than 64 levels" in response.json()["message"]
        assert await stored_events(database_url) == 0
        fits = await client.post("/api/projects", content=nested(64), headers=JSON)
        assert fits.status_code == 201, fits.text


BAD_VALUES = [
    (b'{"name":"x","tempo":NaN}', 422, "tempo", "NaN is not a number"),
    (b'{"name":"x","metadata":{"a":[1,Infinity]}}', 422, "metadata.a.1", "Infinity"),
    (b'{"name":"x","metadata":{"a":-Infinity}}', 422, "metadata.a", "-Infinity"),
    (b'{"name":"x","metadata":{"a":1e999}}', 422, "metadata.a", "out of range"),
    (b'{"name":"a\\u0000b"}', 422, "name", "NUL character"),
    # Responses write a NUL as U+FFFD too (the read models' JSON text), the field included.
    (b'{"name":"x","metadata":{"k\\u0000":1}}', 422, "metadata.k\ufffd", "key holds a NUL"),
    (b'{"name":"x","metadata":{"a":"\\ud800"}}', 422, "metadata.a", "lone surrogate"),
    (b'{"name":"\\udfff x"}', 422, "name", "lone surrogate"),
    (b'{"name":"x"', 400, "", "not JSON"),
    (b'{"name":"x\xff"}', 400, "", "not UTF-8"),
    (b'{"name":"x\xed\xa0\x80"}', 400, "", "not UTF-8"),  # a surrogate encoded raw
]


async def test_values_the_database_or_json_cannot_hold_are_refused(database_url):
    async with running_server(database_url) as address, http(address) as client:
        for content, status, field, words in BAD_VALUES:
            response = await client.post("/api/projects", content=content, headers=JSON)
            assert response.status_code == status, (content, response.text)
            body = response.json()
            assert words in body["message"], (content, body)
            if field:
                assert body["fields"] == [{"field": field, "message": body["message"]}]
    assert await stored_events(database_url) == 0


async def test_edits_with_nul_or_non_finite_values_change_nothing(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        url = f"/api/projects/{project}/edits"
        track = {"op": "add_track", "track_id": "t", "name": "T"}
        assert (await client.post(url, json={"operations": [track]})).status_code == 200
        before = await stored_events(database_url)
        bad = [
            '{"operations":[{"op":"update_track","track_id":"t","fields":{"name":"a\\u0000b"}}]}',
            '{"operations":[{"op":"set_automation","track_id":"t","parameter":"vol",'
            '"points":[{"time":0,"value":NaN}]}]}',
            '{"operations":[{"op":"set_automation","track_id":"t","parameter":"vol",'
            '"points":[{"time":0,"value":1e400}]}]}',
            '{"operations":[{"op":"add_effect","track_id":"t","type":"eq",'
            '"params":{"gain":Infinity}}]}',
            '{"operations":[{"op":"set_meta","fields":{"key":"\\u0000"}}]}',
        ]
        for text in bad:
            response = await client.post(url, content=text, headers=JSON)
            assert response.status_code == 422, (text, response.text)
            assert response.json()["fields"][0]["field"].startswith("operations.0.")
        assert await stored_events(database_url) == before
        doc = (await client.get(f"/api/projects/{project}/document")).json()["document"]
        assert doc["tracks"]["t"]["name"] == "T"
        assert doc["tracks"]["t"]["automation"] == {}


# -- query and path ----------------------------------------------------------------------


async def test_nul_in_a_query_or_path_is_a_400(database_url):
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        for url in [
            "/api/projects?name=%00",
            "/api/projects?name=a%00b&limit=5",
            "/api/projects?member=%00",
            f"/api/projects/{project}/history?cursor=%00",
            f"/api/projects/{project}/analyses?type=%00",
            "/api/projects/%00",
            "/api/projects/%00/document",
            "/api/daids/daid%00x",
            "/api/daids/x/lineage?as_of=%00",
        ]:
            response = await client.get(url)
            assert response.status_code == 400, (url, response.text)
            assert "NUL character" in response.json()["message"]
        # Writes too, before their body is read.
        response = await client.post("/api/projects?x=%00", json={"name": "x"})
        assert response.status_code == 400
    assert await stored_events(database_url) == 2


async def test_unknown_routes_and_methods_answer_json(database_url):
    async with running_server(database_url) as address, http(address) as client:
        missing = await client.get("/api/nothing")
        assert missing.status_code == 404
        assert missing.json() == {"error": 404, "message": "Not Found"}
        wrong = await client.delete("/api/projects")
        assert wrong.status_code == 405
        assert wrong.json() == {"error": 405, "message": "Method Not Allowed"}
        assert "POST" in wrong.headers["allow"]


async def test_an_unexpected_error_is_a_json_500_naming_the_request_id():
    async def broken(_request: Request) -> Response:
        raise RuntimeError("relation secret_table: permission denied")

    app = Starlette(
        routes=[Route("/broken", broken)],
        middleware=[],
    )
    app.add_middleware(InternalErrors)
    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            response = await client.get("/broken", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    body = response.json()
    assert body["request_id"] == "req-42"
    assert "req-42" in body["message"]
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "req-42"
    errors = [entry for entry in logs if entry["event"] == "unhandled error"]
    assert errors
    assert errors[0]["exc_info"] is True


# -- responses ---------------------------------------------------------------------------


async def test_a_stored_nan_is_read_as_null(database_url):
    """A log written before NaN was refused holds it in a document; the project list,
    the project and its document still answer, with null."""
    async with running_server(database_url) as address, http(address) as client:
        project = await create_project(address)
        doc = await log_doc(database_url, project)
        state = doc.get_state()
        meta = doc.get(document.META, type=pycrdt.Map)
        meta["tempo"] = float("nan")
        meta["sample_rate"] = float("-inf")
        update = doc.get_update(state)
        store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
        try:
            appended = await store.append(
                project_stream(project),
                [NewEvent(DocUpdated(update=update), EventMetadata(actor="old-log"))],
                ANY,
            )
        finally:
            await store.close()
        listed = await client.get("/api/projects", params={"min_position": appended.position})
        assert listed.status_code == 200, listed.text
        assert listed.json()["projects"][0]["tempo"] is None
        view = await client.get(f"/api/projects/{project}")
        assert view.status_code == 200, view.text
        assert view.json()["meta"]["tempo"] is None
        live = await client.get(f"/api/projects/{project}/document")
        assert live.status_code == 200, live.text
        assert live.json()["document"]["meta"]["tempo"] is None
        assert live.json()["document"]["meta"]["sample_rate"] is None
        assert live.json()["version"] == len(await project_events(database_url, project))
