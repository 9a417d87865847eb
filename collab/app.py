"""The starlette application: health, readiness, the live WebSocket path and the API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from collab import api, audit_api, lineage_api, openapi, projects_api, provenance_api, ws
from collab.audit_key import load_or_create
from collab.config import AuditSettings, LiveSettings, ReadSettings
from collab.live import Live
from collab.metrics import Metrics
from collab.middleware import RequestContextMiddleware
from events.checkpoints import Signer
from events.errors import EventStoreError
from events.postgres import PostgresEventStore
from projections.audit_log import AuditLogProjection
from projections.lineage import LineageProjection
from projections.projects import ProjectsProjection
from projections.runner import ProjectionRunner

log = structlog.get_logger("collab.app")


def create_app(
    database_url: str,
    *,
    pool_size: int = 10,
    poll_interval: float = 1.0,
    live: LiveSettings | None = None,
    read: ReadSettings | None = None,
    audit: AuditSettings | None = None,
) -> Starlette:
    """Build the app; the store is connected and migrated when the app starts."""
    live_settings = live or LiveSettings()
    read_settings = read or ReadSettings()
    audit_settings = audit or AuditSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await PostgresEventStore.connect(
            database_url, max_size=pool_size, poll_interval=poll_interval
        )
        try:
            await store.migrate()
            app.state.store = store
            app.state.read_settings = read_settings
            app.state.signer = _signer(audit_settings)
            app.state.audit_log = AuditLogProjection(
                app.state.signer,
                checkpoint_every=audit_settings.checkpoint_every,
                checkpoint_seconds=audit_settings.checkpoint_seconds,
            )
            app.state.projections = ProjectionRunner(
                store,
                [
                    ProjectsProjection(store, state_every=read_settings.state_every),
                    LineageProjection(),
                    app.state.audit_log,
                ],
                batch_size=read_settings.projection_batch,
            )
            app.state.projections.start()
            sealing = asyncio.create_task(
                _seal_quiet_log(app.state.audit_log, store, audit_settings.checkpoint_seconds),
                name="audit-sealing",
            )
            app.state.live = Live(store, live_settings, Metrics())
            app.state.live.start(ws.watchdog)
            # What exists now lives as long as the server: keep it out of the cyclic
            # collector's full passes, which otherwise walk every module, schema and
            # cache and show up as 20-30 ms stalls in request latency (measured on
            # lineage walks, docs/benchmarks.md).
            gc.freeze()
            log.info("server ready for requests")
            try:
                yield
            finally:
                sealing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sealing
                await app.state.live.close()
                await app.state.projections.stop()
        finally:
            await store.close()
            log.info("store closed")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            *api.routes,
            *projects_api.routes,
            *provenance_api.routes,
            *lineage_api.routes,
            *audit_api.routes,
            Route("/api/openapi.json", openapi.document, methods=["GET"]),
            WebSocketRoute("/ws/{project_id}", ws.endpoint),
        ],
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers={
            HTTPException: http_error,
            api.ApiError: api.api_error,
            EventStoreError: api.store_error,
        },
        lifespan=lifespan,
    )


def _signer(settings: AuditSettings) -> Signer:
    if settings.key_file is None:
        log.warning("audit checkpoints are signed with a throwaway key (no key file set)")
        return Signer(Ed25519PrivateKey.generate())
    return Signer(load_or_create(settings.key_file))


async def _seal_quiet_log(
    audit: AuditLogProjection, store: PostgresEventStore, every: float
) -> None:
    """Checkpoint events that arrived after the last batch was sealed, once they are old
    enough (a busy log gets checkpoints from the projection itself)."""
    while True:
        await asyncio.sleep(max(0.05, every / 4))
        try:
            await audit.seal_due(store)
        except EventStoreError as exc:
            log.warning("audit sealing failed; will retry", error=str(exc))


async def health(_request: Request) -> Response:
    """The process is alive (says nothing about the database)."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """The database answers and its schema is current; 503 with the reason otherwise."""
    store: PostgresEventStore = request.app.state.store
    runner: ProjectionRunner = request.app.state.projections
    try:
        await store.ping()
        status = await store.migration_status()
        projection_status = await runner.status()
    except EventStoreError as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    if not status.current:
        reason = f"migrations pending: {list(status.pending)}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    projections = {
        p.name: {"state": p.state, "position": p.position, "lag": p.lag, "error": p.error}
        for p in projection_status
    }
    body = {
        "status": "ready",
        "database": "ok",
        "schema_version": max(status.applied),
        "projections": projections,
    }
    failing = [name for name, p in projections.items() if p["state"] == "failing"]
    if failing:
        # Reads would be stale or time out: say so rather than look healthy.
        body["status"] = "unavailable"
        body["reason"] = f"projection failing: {', '.join(failing)}"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def drain(app: Starlette) -> None:
    """Before uvicorn closes the connections: refuse new updates, flush the writer."""
    live: Live | None = getattr(app.state, "live", None)
    if live is not None:
        await live.drain()


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    return JSONResponse(
        {"error": exc.status_code, "message": exc.detail}, status_code=exc.status_code
    )
