"""Every error a route may raise, to an HTTP status and a JSON body, in one table.

Bodies are ``{"error": status, "message": ..., "fields": [...]}``
(``collab.http.responses.error_response``). Four families reach here:

- the access layer's refusals (``collab.access.errors``): 401 with
  ``WWW-Authenticate: Bearer``, or 403;
- the services' errors (``collab.services.errors``) and the event store's
  (``events.errors``): :data:`STATUS`, the nearest listed ancestor of the error's
  class deciding. A store error's message reaches the client only for a 422 (the event
  model's words); otherwise it may quote the database, which is no business of the
  client's: the log has it, and a 500 names the request id it is logged under;
- the HTTP layer's own refusals (:class:`collab.http.kit.ApiError`, starlette's
  ``HTTPException``), which carry their status.

:data:`HANDLERS` registers them with starlette (``collab.app``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from collab.access.errors import AccessError, Forbidden, ProjectNotFound, Unauthenticated
from collab.http.kit import ApiError, correlation_of
from collab.http.responses import JSONResponse, error_response
from collab.services.errors import (
    Conflict,
    Invalid,
    NotFound,
    ServiceError,
    Unavailable,
)
from events.errors import EventStoreError, InvalidEvent, StoreUnavailable

log = structlog.get_logger("collab.http.errors")

#: the status of each error class a route may raise besides its own refusals; an error
#: takes the status of its nearest ancestor listed here
STATUS: Final[dict[type[Exception], int]] = {
    # the access layer's
    Unauthenticated: 401,
    Forbidden: 403,
    ProjectNotFound: 404,
    AccessError: 403,
    # the services'
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Unavailable: 503,
    ServiceError: 500,  # a refusal nobody classified: a bug, and said as one
    # the event store's
    InvalidEvent: 422,  # the event model's words, not the database's
    StoreUnavailable: 503,
    EventStoreError: 500,
}
UNAVAILABLE_MESSAGE: Final = "database unavailable; retry later"


def status_of(error: type[Exception]) -> int:
    for cls in error.__mro__:
        if cls in STATUS:
            return STATUS[cls]
    raise LookupError(f"{error.__name__} has no HTTP status")


def render(exc: ServiceError | EventStoreError, request_id: str | None) -> Response:
    """The response to a service's or the store's error."""
    status = status_of(type(exc))
    if isinstance(exc, ServiceError) and status != 500:
        fields = None
        if isinstance(exc, Invalid) and exc.fields:
            fields = [{"field": f.field, "message": f.message} for f in exc.fields]
        return error_response(status, exc.message, fields)
    if status == 503:
        log.warning("database unavailable", error=str(exc))
        return error_response(503, UNAVAILABLE_MESSAGE)
    if status == 500:
        what = "event store error" if isinstance(exc, EventStoreError) else "unclassified refusal"
        log.error(what, error=str(exc), exc_info=exc)
        return internal_error(request_id)
    return error_response(status, str(exc))


def internal_error(request_id: str | None) -> Response:
    """A 500 that says only where to look: the request id the log has the traceback under."""
    return JSONResponse(
        {
            "error": 500,
            "message": f"internal error; the server log has it under request id {request_id}",
            "request_id": request_id,
        },
        status_code=500,
    )


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return error_response(exc.status, exc.message, exc.fields, headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    # 405 carries the Allow header
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def _refused(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AccessError)  # noqa: S101 - registered for AccessError only
    status = status_of(type(exc))
    # RFC 6750: a 401 names the scheme the client should authenticate with
    headers = {"WWW-Authenticate": 'Bearer realm="collab"'} if status == 401 else None
    return error_response(status, exc.message, headers=headers)


async def _rendered(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError | EventStoreError)  # noqa: S101 - registered for those
    return render(exc, correlation_of(request))


Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]
HANDLERS: Final[dict[Any, Handler]] = {
    HTTPException: _http_error,
    ApiError: _api_error,
    AccessError: _refused,
    ServiceError: _rendered,
    EventStoreError: _rendered,
}
