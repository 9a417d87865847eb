from __future__ import annotations

import asyncpg
import httpx

from collab.app import create_app


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def test_ready_reports_pending_migrations_with_503(database_url):
    app = create_app(database_url)
    async with app.router.lifespan_context(app), await _client(app) as client:
        assert (await client.get("/ready")).status_code == 200
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("delete from schema_migrations where version = 1")
        finally:
            await conn.close()
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "reason": "migrations pending: [1]",
        }
        assert (await client.get("/health")).status_code == 200


async def test_unknown_route_is_a_json_404(database_url):
    app = create_app(database_url)
    async with app.router.lifespan_context(app), await _client(app) as client:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json() == {"error": 404, "message": "Not Found"}
