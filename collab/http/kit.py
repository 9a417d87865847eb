"""What every route module uses: the HTTP layer's own refusal (:class:`ApiError`), the
request body as a model, who acts and whether they may, the request's correlation id,
the live path.

Errors of every kind become JSON ``{"error": status, "message": ..., "fields": [...]}``
in one table (``collab.http.errors``).
"""

from __future__ import annotations

import math
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from collab.access.errors import Unauthenticated
from collab.access.limits import RateLimits, budget_key
from collab.access.principal import Principal, TokenCheck, bearer_token, unverified
from collab.access.rules import Action
from collab.http import jsonbody
from collab.live.hub import Live
from collab.services.authorize import authorize
from collab.services.errors import validation_fields

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A request the HTTP layer refuses itself (a bad body, query or header), with the
    status it answers."""

    def __init__(
        self,
        status: int,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []
        self.headers = headers


def field_error(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def actor_of(request: Request) -> str:
    # Authentication off: callers name themselves (defaults to "api").
    actor = request.headers.get("x-actor", "api").strip()
    if "\x00" in actor:
        raise ApiError(400, "X-Actor holds a NUL character, which cannot be stored")
    return actor[:200] or "api"


async def principal_of(request: Request) -> Principal:
    """Who sends the request: the principal of its bearer token (401 without a valid
    one), or, with authentication off, whoever ``X-Actor`` names."""
    cached: Principal | None = request.scope.setdefault("state", {}).get("principal")
    if cached is not None:
        return cached
    tokens: TokenCheck | None = request.app.state.tokens
    if tokens is None:
        principal = unverified(actor_of(request))
    else:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated(
                "this server needs a token: send 'Authorization: Bearer <token>'"
                " ('collab token create --user NAME' makes one)"
            )
        principal = await tokens.verify(token)
    request.scope["state"]["principal"] = principal
    if request.method not in SAFE_METHODS:
        await within_limits(request, principal)
    return principal


#: methods that change nothing: not counted against the write budget
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def within_limits(request: Request, principal: Principal) -> None:
    """429 with Retry-After when the principal (the address, without authentication)
    wrote too often. Also asked by reads as costly as a write (an audit bundle)."""
    limits: RateLimits | None = request.app.state.limits
    if limits is None:
        return
    address = request.client.host if request.client is not None else None
    exceeded = await limits.hit("http_writes", budget_key(principal, address))
    if exceeded is not None:
        retry = max(1, math.ceil(exceeded.retry_after))
        raise ApiError(
            429, f"{exceeded.message}; retry in {retry} s", headers={"Retry-After": str(retry)}
        )


async def allowed(request: Request, action: Action, project_id: str | None = None) -> Principal:
    """The request's principal, if it may do ``action`` (to ``project_id``); 401 or 403
    (404 for an unknown project) otherwise. For reads; commands authorize themselves."""
    principal = await principal_of(request)
    await authorize(principal, action, project_id, log=request.app.state.store)
    return principal


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
