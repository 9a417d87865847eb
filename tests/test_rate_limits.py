"""Rate limits against a real server with small budgets: HTTP writes answer 429 with
Retry-After, sockets over their budget close with 4529 (a code the stock provider
reconnects after), and neither disturbs other clients or the log."""

from __future__ import annotations

import httpx
import pycrdt
import pytest
import websockets

from collab.access.limits import RateLimits
from collab.access.tokens import TokenSettings
from collab.live.closecodes import CloseCode
from collab.runtime.config import RateSettings
from music import document
from tests.live import YClient, close_code, log_document, running_server
from tests.redis_server import RedisServer
from tests.support import eventually
from tests.test_auth import SECRET, bearer, token

AUTH = TokenSettings(secret=SECRET)


async def _project(address: str, who: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        created = await http.post("/api/projects", json={"name": "S"}, headers=bearer(who))
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


async def test_http_writes_over_budget_get_429_with_retry_after(database_url: str) -> None:
    rates = RateSettings(http_writes="3/minute")
    ana = token("ana")
    async with running_server(database_url, auth=AUTH, rates=rates) as address:
        project = await _project(address, ana)
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            edit = {"operations": [{"op": "set_meta", "fields": {"tempo": 100}}]}
            statuses = [
                (
                    await http.post(
                        f"/api/projects/{project}/edits", json=edit, headers=bearer(ana)
                    )
                ).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]
            refused = await http.post(
                f"/api/projects/{project}/edits", json=edit, headers=bearer(ana)
            )
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert "http writes over 3/minute" in refused.json()["message"]
            # reads are not writes
            read = await http.get(f"/api/projects/{project}/document", headers=bearer(ana))
            assert read.status_code == 200
            # but an audit bundle, which reads the whole stream, counts like one
            bundle = await http.get(f"/api/projects/{project}/audit-bundle", headers=bearer(ana))
            assert bundle.status_code == 429, bundle.text


async def test_socket_opens_over_budget_close_with_4529(database_url: str) -> None:
    rates = RateSettings(connections="2/minute")
    ana = token("ana")
    async with running_server(database_url, auth=AUTH, rates=rates) as address:
        project = await _project(address, ana)
        url = f"ws://{address}/ws/{project}?token={ana}"
        first = await YClient(address, project, token=ana).connect()
        await first.wait_synced()
        second = await websockets.connect(url)
        third = await websockets.connect(url)
        assert await close_code(third) == CloseCode.RATE_LIMITED
        assert "connections over 2/minute" in (third.close_reason or "")
        # those already open are not touched
        doc = first.doc.get(document.META, type=pycrdt.Map)
        doc["tempo"] = 90.0
        await eventually(
            lambda: _stored(database_url, project, 90.0), 10, "the open client was disturbed"
        )
        await second.close()
        await first.disconnect()


async def _stored(database_url: str, project: str, tempo: float) -> bool:
    return bool((await log_document(database_url, project))["meta"].get("tempo") == tempo)


async def test_frames_over_budget_close_with_4529_and_spare_the_others(
    database_url: str,
) -> None:
    rates = RateSettings(updates="5/minute")
    ana, bob = token("ana"), token("bob")
    async with running_server(database_url, auth=AUTH, rates=rates) as address:
        project = await _project(address, ana)
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            await http.post(
                f"/api/projects/{project}/members",
                json={"member": "bob", "role": "editor"},
                headers=bearer(ana),
            )
        chatty = await YClient(address, project, token=ana).connect()
        calm = await YClient(address, project, token=bob).connect()
        await chatty.wait_synced()
        await calm.wait_synced()
        meta = chatty.doc.get(document.META, type=pycrdt.Map)
        for step in range(10):
            meta["tempo"] = 100.0 + step
        assert await chatty.wait_closed() == CloseCode.RATE_LIMITED
        assert "updates over 5/minute" in (chatty.close_reason or "")
        # bob is another principal: his frames are his own budget
        calm.doc.get(document.META, type=pycrdt.Map)["key"] = "D minor"
        await eventually(
            lambda: _key_stored(database_url, project), 10, "the other client was disturbed"
        )
        await calm.disconnect()
        await chatty.disconnect()


async def _key_stored(database_url: str, project: str) -> bool:
    return bool((await log_document(database_url, project))["meta"].get("key") == "D minor")


async def test_bytes_over_budget_close_with_4529(database_url: str) -> None:
    rates = RateSettings(update_bytes="2000/minute")
    ana = token("ana")
    async with running_server(database_url, auth=AUTH, rates=rates) as address:
        project = await _project(address, ana)
        client = await YClient(address, project, token=ana).connect()
        await client.wait_synced()
        client.doc.get(document.META, type=pycrdt.Map)["name"] = "x" * 5000
        assert await client.wait_closed() == CloseCode.RATE_LIMITED
        assert "update bytes over 2000/minute" in (client.close_reason or "")
        await client.disconnect()


def test_a_rate_that_is_not_one_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="'often' is not a rate such as 60/minute"):
        RateLimits(RateSettings(updates="often"))


async def test_counters_in_redis_are_shared_by_every_node(redis_server: RedisServer) -> None:
    """With ``COLLAB_RATE_LIMIT_STORAGE`` naming a Redis, two nodes' limiters spend one
    budget: a principal cannot get twice the rate by alternating between nodes."""
    settings = RateSettings(http_writes="3/minute", storage=redis_server.url)
    node_a, node_b = RateLimits(settings), RateLimits(settings)
    try:
        await _spend_one_budget(node_a, node_b)
    finally:
        await node_a.close()
        await node_b.close()


async def _spend_one_budget(node_a: RateLimits, node_b: RateLimits) -> None:
    assert await node_a.hit("http_writes", "user:olivia") is None
    assert await node_b.hit("http_writes", "user:olivia") is None
    assert await node_a.hit("http_writes", "user:olivia") is None
    refused = await node_b.hit("http_writes", "user:olivia")
    assert refused is not None
    assert refused.budget == "http_writes"
    assert 0 < refused.retry_after <= 60
    assert await node_a.hit("http_writes", "user:other") is None
