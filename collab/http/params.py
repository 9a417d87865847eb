"""Request parameters and app state shared by the HTTP API modules.

Query parameters are validated here with one error shape: a 422 naming the
parameter. ``?min_position=N`` (:func:`caught_up`) is honoured by every read.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from starlette.requests import Request

from collab.http.kit import ApiError, allowed, field_error
from collab.runtime.config import ReadSettings
from collab.services import lookup
from collab.services.ports import ReadModels, Store
from projections.progress import ProjectionProgress


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def models_of(request: Request) -> ReadModels:
    return ReadModels(progress_of(request), settings_of(request).projection_wait)


def settings_of(request: Request) -> ReadSettings:
    settings: ReadSettings = request.app.state.read_settings
    return settings


def progress_of(request: Request) -> ProjectionProgress:
    progress: ProjectionProgress = request.app.state.projections
    return progress


def project_id_of(request: Request) -> str:
    return lookup.parse_project_id(request.path_params["project_id"])


async def readable_project(request: Request) -> str:
    """The path's project, once the request's principal may read it (401, 403, 404)."""
    project_id = project_id_of(request)
    await allowed(request, "project.read", project_id)
    return project_id


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
    return await lookup.known_version(store_of(request), project_id)


async def view_at(request: Request, project_id: str, version: int) -> dict[str, Any]:
    """The document as JSON at ``version``, from the read model (waiting, bounded, for
    it to fold that version if it has not yet)."""
    return await lookup.view_at(store_of(request), models_of(request), project_id, version)
