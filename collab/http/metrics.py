"""``/metrics``: the Prometheus exposition of the live path's and projections' metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.params import progress_of, store_of
from collab.live.hub import Live
from events.checkpoints import Signer
from events.errors import EventStoreError
from projections import audit_log, quarantine


async def metrics(request: Request) -> Response:
    live: Live = request.app.state.live
    progress = progress_of(request)
    # The projections may fold in another process: their quarantine is counted from
    # the database, as is the log's key. Without it the gauges keep their last value.
    with contextlib.suppress(EventStoreError):
        counts = await quarantine.counts(store_of(request).queries)
        live.metrics.quarantined(progress.names, counts)
        newest = await audit_log.latest_checkpoint(store_of(request).queries)
        signer: Signer = request.app.state.signer
        live.metrics.key_mismatch(
            refused=audit_log.key_mismatch(signer.key_id, newest, signer.origin) is not None
        )
    return Response(generate_latest(live.metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
