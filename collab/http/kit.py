"""What every route module uses: the HTTP layer's own refusal (:class:`ApiError`), the
request body as a model, who acts, the request's correlation id, the live path.

Errors of every kind become JSON ``{"error": status, "message": ..., "fields": [...]}``
in one table (``collab.http.errors``).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from collab.http import jsonbody
from collab.live.hub import Live
from collab.services.errors import validation_fields
from collab.services.principal import Principal

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A request the HTTP layer refuses itself (a bad body, query or header), with the
    status it answers."""

    def __init__(
        self, status: int, message: str, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []


def field_error(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def actor_of(request: Request) -> str:
    # No authentication yet: callers name themselves (defaults to "api").
    actor = request.headers.get("x-actor", "api").strip()
    if "\x00" in actor:
        raise ApiError(400, "X-Actor holds a NUL character, which cannot be stored")
    return actor[:200] or "api"


def principal_of(request: Request) -> Principal:
    return Principal(actor=actor_of(request))


def correlation_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


async def body_of(request: Request, model: type[M]) -> M:
    """The body as ``model``. Its size, media type and origin were checked before it was
    read (``collab.http.guards``); here: JSON only, nothing PostgreSQL cannot store, then the
    model (400 or 422 naming the field)."""
    raw = await request.body()
    try:
        data = jsonbody.loads(raw)
    except jsonbody.BadJson as exc:
        fields = [field_error(exc.field, exc.message)] if exc.field else None
        raise ApiError(exc.status, exc.message, fields) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [field_error(f.field, f.message) for f in validation_fields(exc)]
        first = fields[0]
        raise ApiError(422, f"invalid {first['field']}: {first['message']}", fields) from None


def live_of(request: Request) -> Live:
    live: Live = request.app.state.live
    if live.draining:
        raise ApiError(503, "server is shutting down")
    return live
