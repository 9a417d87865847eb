"""Request parameters and app state shared by the read-side HTTP API modules.

Query parameters are validated here with one error shape: a 422 naming the
parameter. ``?min_position=N`` (:func:`caught_up`) is honoured by every read.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from starlette.requests import Request

from collab.http.api import ApiError
from collab.runtime.config import ReadSettings
from events.models import project_stream
from events.postgres import PostgresEventStore
from projections import project_reads
from projections.progress import ProjectionProgress


def store_of(request: Request) -> PostgresEventStore:
    store: PostgresEventStore = request.app.state.store
    return store


def settings_of(request: Request) -> ReadSettings:
    settings: ReadSettings = request.app.state.read_settings
    return settings


def progress_of(request: Request) -> ProjectionProgress:
    progress: ProjectionProgress = request.app.state.projections
    return progress


def project_id_of(request: Request) -> str:
    return parse_project_id(request.path_params["project_id"])


def parse_project_id(raw: str) -> str:
    """A project id in its normal form; 404 when it cannot name a project."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, f"no project {raw!r} (project ids are UUIDs)") from None


def int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise ApiError(422, f"missing query parameter {name}", [field_error(name, "required")])
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            422, f"invalid {name}: {raw!r} is not an integer", [field_error(name, "not an integer")]
        ) from None
    if not low <= value <= high:
        message = f"must be between {low} and {high}"
        raise ApiError(422, f"invalid {name}: {message}", [field_error(name, message)])
    return value


def field_error(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(raw: str, name: str) -> timedelta:
    match = _DURATION.match(raw.strip())
    if match is None:
        message = "a duration such as 5s, 500ms or 2m"
        raise ApiError(422, f"invalid {name}: expected {message}", [field_error(name, message)])
    seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"]]
    if seconds > 86_400:
        raise ApiError(422, f"invalid {name}: at most 1 day", [field_error(name, "at most 1 day")])
    return timedelta(seconds=seconds)


async def caught_up(request: Request) -> None:
    """Honour ``?min_position=N``: wait for the projections, or answer 503."""
    position = int_param(request, "min_position", 0, 0, 2**62)
    if position == 0:
        return
    progress = progress_of(request)
    wait = settings_of(request).projection_wait
    if not await progress.wait(position, wait):
        raise ApiError(
            503,
            f"read models have not reached position {position} within {wait:g} s"
            f" (they are at {progress.position()}); retry later",
        )


async def known_version(request: Request, project_id: str) -> int:
    """The project's current stream version (from the log); 404 for unknown projects."""
    version = await store_of(request).stream_version(project_stream(project_id))
    if version == 0:
        raise ApiError(404, f"no project {project_id}")
    return version


async def view_at(request: Request, project_id: str, version: int) -> dict[str, Any]:
    """The document as JSON at ``version``, from the read model (waiting, bounded, for
    it to fold that version if it has not yet)."""
    store = store_of(request)
    folded = await project_reads.project_version(store.queries, project_id)
    if folded is None or folded < version:
        progress = progress_of(request)
        head = await store.head_position()
        if not await progress.wait(head, settings_of(request).projection_wait):
            raise ApiError(503, f"read models have not folded version {version} yet; retry")
    return await project_reads.view_at(store.queries, project_id, version)
