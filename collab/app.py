"""The starlette application: health, readiness, the live WebSocket path and the API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from collab import worker
from collab.access.limits import RateLimits
from collab.access.tokens import TokenSettings, TokenVerifier
from collab.http import (
    audit_log,
    errors,
    history,
    interchange,
    lineage,
    members,
    metrics,
    openapi,
    projects,
    provenance,
    studio,
)
from collab.http.guards import HostCheck, InternalErrors, RequestGuard
from collab.http.middleware import RequestContextMiddleware
from collab.http.origins import AllowedOrigins
from collab.http.responses import JSONResponse
from collab.live import ws
from collab.live.hub import Live
from collab.live.redis_fanout import RedisFanOut
from collab.runtime.audit_key import load_or_create
from collab.runtime.config import (
    AuditSettings,
    DatabaseSettings,
    HttpSettings,
    LiveSettings,
    RateSettings,
    ReadSettings,
)
from collab.runtime.metrics import Metrics
from collab.runtime.supervisor import EmbeddedSupervisor
from collab.worker import ProjectionWorker
from events.checkpoints import Signer
from events.errors import EventStoreError
from events.postgres import PostgresEventStore
from projections import audit_log as audit_log_model
from projections import registry
from projections.progress import ProjectionProgress, ProjectionStatus

log = structlog.get_logger("collab.app")

CORS_METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type", "X-Actor", "X-Request-Id")
CORS_EXPOSED = ("X-Request-Id", "Retry-After")


def create_app(
    database_url: str,
    *,
    pool_size: int = 10,
    poll_interval: float = 1.0,
    live: LiveSettings | None = None,
    read: ReadSettings | None = None,
    audit: AuditSettings | None = None,
    http: HttpSettings | None = None,
    database: DatabaseSettings | None = None,
    supervisor: EmbeddedSupervisor | None = None,
    auth: TokenSettings | None = None,
    rates: RateSettings | None = None,
) -> Starlette:
    """Build the app; the store is connected and migrated when the app starts.

    ``supervisor`` watches the embedded PostgreSQL while the app runs (embedded mode).
    ``auth`` None switches authentication off: callers name themselves (``X-Actor``)
    and may do everything. ``rates`` None switches the rate limits off.
    """
    # Built now, so that a bad key source fails the start, not the first request.
    tokens = TokenVerifier(auth) if auth is not None else None
    limits = RateLimits(rates) if rates is not None else None
    live_settings = live or LiveSettings()
    read_settings = read or ReadSettings()
    audit_settings = audit or AuditSettings()
    http_settings = http or HttpSettings()
    allowed_origins = AllowedOrigins.of(http_settings)
    database_settings = database or DatabaseSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        inline = read_settings.projections == "inline"
        if supervisor is not None:
            supervisor.start()
        metrics = Metrics()
        try:
            store = await PostgresEventStore.connect(
                database_url,
                max_size=pool_size,
                poll_interval=poll_interval,
                # Every projection reads the same batches: decoded once, for all of them.
                read_cache=2 * read_settings.projection_batch if inline else 0,
                command_timeout=database_settings.command_timeout,
                acquire_timeout=database_settings.acquire_timeout,
                # the live rooms' updates wait this long for others to share their
                # transaction (events/group_commit.py)
                commit_window=live_settings.commit_window,
                observe_commit=metrics.observe_commit,
            )
        except BaseException:
            if supervisor is not None:
                await supervisor.stop()
            raise
        try:
            async with contextlib.AsyncExitStack() as stack:
                await store.migrate()
                key = _audit_key(audit_settings)
                app.state.store = store
                app.state.read_settings = read_settings
                app.state.database_settings = database_settings
                app.state.supervisor = supervisor
                app.state.signer = Signer(key, audit_settings.origin)
                app.state.projections, app.state.projection_worker = await _projections(
                    stack,
                    store=store,
                    database_url=database_url,
                    key=key,
                    poll_interval=poll_interval,
                    read=read_settings,
                    audit=audit_settings,
                )
                app.state.tokens = tokens
                app.state.limits = limits
                if tokens is not None:
                    await tokens.start()
                    stack.push_async_callback(tokens.close)
                else:
                    log.warning(
                        "authentication is OFF: every caller may read, edit, roll back and"
                        " audit every project (COLLAB_AUTH=off; for experiments only)"
                    )
                app.state.live = Live(
                    store,
                    live_settings,
                    metrics,
                    tokens,
                    limits,
                    fanout=_fanout(live_settings, metrics),
                )
                app.state.live.start(ws.watchdog)
                stack.push_async_callback(app.state.live.close)
                # What exists now lives as long as the server: keep it out of the cyclic
                # collector's full passes, which otherwise walk every module, schema and
                # cache and show up as 20-30 ms stalls in request latency (measured on
                # lineage walks, docs/benchmarks.md).
                gc.freeze()
                log.info("server ready for requests", projections=read_settings.projections)
                yield
        finally:
            await store.close()
            log.info("store closed")
            if supervisor is not None:
                await supervisor.stop()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            *metrics.routes,
            *projects.routes,
            *members.routes,
            *history.routes,
            *interchange.routes,
            *provenance.routes,
            *lineage.routes,
            *audit_log.routes,
            Route("/api/openapi.json", openapi.document, methods=["GET"]),
            WebSocketRoute("/ws/{project_id}", ws.endpoint),
            *studio.routes,
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(HostCheck, allowed_hosts=http_settings.allowed_hosts),
            # Inside the host check (a rebinding name gets no CORS answer) and outside
            # every other answer, so a page of an allowed origin can read the errors
            # too (the guard's 413/415, the JSON 500 with its request id). Preflights
            # are OPTIONS, which the guard lets through; a foreign-origin write gets no
            # allow-origin header here and the guard's 403 below.
            Middleware(
                CORSMiddleware,
                allow_origins=allowed_origins.listed,
                allow_methods=CORS_METHODS,
                allow_headers=CORS_HEADERS,
                expose_headers=CORS_EXPOSED,
                # Tokens travel in the Authorization header, never in cookies.
                allow_credentials=False,
                # A listed origin on a public site may reach a server on loopback
                # (Chrome asks with a private network preflight); others stay refused.
                allow_private_network=True,
            ),
            Middleware(InternalErrors),
            Middleware(
                RequestGuard,
                allowed=allowed_origins,
                max_body_bytes=http_settings.max_body_bytes,
            ),
        ],
        exception_handlers=errors.HANDLERS,
        lifespan=lifespan,
    )


def _audit_key(settings: AuditSettings) -> Ed25519PrivateKey:
    if settings.key_file is None:
        log.warning("audit checkpoints are signed with a throwaway key (no key file set)")
        return Ed25519PrivateKey.generate()
    return load_or_create(settings.key_file)


def _fanout(settings: LiveSettings, metrics: Metrics) -> RedisFanOut | None:
    """The cross-node fan-out when a Redis is configured; None: this node is alone."""
    if settings.redis_url is None:
        return None
    return RedisFanOut(settings.redis_url, metrics, prefix=settings.redis_prefix)


async def _projections(
    stack: contextlib.AsyncExitStack,
    *,
    store: PostgresEventStore,
    database_url: str,
    key: Ed25519PrivateKey,
    poll_interval: float,
    read: ReadSettings,
    audit: AuditSettings,
) -> tuple[ProjectionProgress, ProjectionWorker | None]:
    """Follow the projections' progress, and fold them where the settings say: in the
    worker process (returned), in this event loop, or not here."""
    progress = ProjectionProgress(store, registry.NAMES, poll_interval=poll_interval)
    await progress.start()
    stack.push_async_callback(progress.stop)
    if read.projections == "inline":
        await stack.enter_async_context(
            worker.leading(store, read, audit, Signer(key, audit.origin))
        )
    if read.projections != "worker":
        return progress, None
    process = ProjectionWorker(
        database_url, poll_interval=poll_interval, read=read, audit=audit, key=key
    )
    await process.start()
    stack.push_async_callback(process.stop)
    return progress, process


async def health(_request: Request) -> Response:
    """The process is alive (says nothing about the database)."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """The database answers and its schema is current; 503 with the reason otherwise.

    Answers within ``ready_timeout`` seconds, also while the database hangs."""
    store: PostgresEventStore = request.app.state.store
    progress: ProjectionProgress = request.app.state.projections
    supervisor: EmbeddedSupervisor | None = request.app.state.supervisor
    worker_process: ProjectionWorker | None = request.app.state.projection_worker
    if supervisor is not None and not supervisor.running:
        return JSONResponse({"status": "unavailable", "reason": supervisor.describe()}, 503)
    limit = request.app.state.database_settings.ready_timeout
    try:
        async with asyncio.timeout(limit):
            await store.ping()
            status = await store.migration_status()
            projection_status = await progress.status()
            lead = await _lead(store, request.app.state.read_settings, worker_process)
            audit_key = await _audit_key_status(store, request.app.state.signer)
    except TimeoutError:
        reason = f"database unavailable: no answer within {limit:g} s"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    except EventStoreError as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    if not status.current:
        reason = f"migrations pending: {list(status.pending)}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    projections = {
        p.name: {
            "state": p.state,
            "position": p.position,
            "lag": p.lag,
            "error": p.error,
            "failures": p.failures,
            **({"shares": list(p.shares)} if p.shares else {}),
            # Set aside and listed, not a reason to be unready: the fold goes on.
            **({"quarantined": _quarantined(p)} if p.quarantined else {}),
        }
        for p in projection_status
    }
    settings: ReadSettings = request.app.state.read_settings
    body: dict[str, object] = {
        "status": "ready",
        "database": "ok",
        "auth": "on" if request.app.state.tokens is not None else "OFF: anyone may do anything",
        "schema_version": max(status.applied),
        "projections_run": settings.projections,
        "projections": projections,
        "projection_lead": lead,
        "audit_key": audit_key,
    }
    if supervisor is not None:
        body["embedded_database"] = {"pid": supervisor.pid, "restarts": supervisor.restarts}
    if worker_process is not None:
        body["projection_worker"] = {
            "pid": worker_process.pid,
            "last_exit_code": worker_process.exit_code,
        }
        if not worker_process.running:
            body["status"] = "unavailable"
            body["reason"] = (
                f"projection worker not running (it exited with {worker_process.exit_code});"
                " restarting it"
            )
            return JSONResponse(body, status_code=503)
    failing = [name for name, p in projections.items() if p["state"] == "failing"]
    if failing:
        # Reads would be stale or time out: say so rather than look healthy.
        body["status"] = "unavailable"
        body["reason"] = f"projection failing: {', '.join(failing)}"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def _lead(
    store: PostgresEventStore, settings: ReadSettings, process: ProjectionWorker | None
) -> dict[str, object]:
    """Who folds the cluster's projections, and whether it is this node: a standby is
    as ready as the leader (its reads come from the leader's read models)."""
    leader = await store.leader(worker.LEAD)
    pid = process.pid if process is not None else os.getpid()
    if settings.projections == "none":
        role = "none"
    elif pid is None:
        role = "not running"
    else:
        role = "leader" if leader == worker.holder(pid) else "standby"
    return {"role": role, "leader": leader}


async def _audit_key_status(store: PostgresEventStore, signer: Signer) -> dict[str, object]:
    """This node's signing key against the log's: a node with another key refuses to
    seal when it leads (``projections.audit_log.key_mismatch``)."""
    newest = await audit_log_model.latest_checkpoint(store.queries)
    problem = audit_log_model.key_mismatch(signer.key_id, newest, signer.origin)
    return {
        "key_id": signer.key_id,
        "log_key_id": newest.key_id if newest is not None else None,
        "sealing": "ok" if problem is None else f"refused: {problem}",
    }


def _quarantined(status: ProjectionStatus) -> dict[str, object]:
    """The events a projection set aside, as /ready lists them (the newest few)."""
    return {
        "count": status.quarantined,
        "events": [
            {
                "position": event.position,
                "stream": event.stream_id,
                "type": event.event_type,
                "reason": event.reason,
                "at": event.at.isoformat(),
            }
            for event in status.quarantined_events
        ],
    }


async def drain(app: Starlette) -> None:
    """Before uvicorn closes the connections: refuse new updates, flush the writer."""
    live: Live | None = getattr(app.state, "live", None)
    if live is not None:
        await live.drain()
