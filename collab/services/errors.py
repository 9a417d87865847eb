"""Errors the commands raise, each saying why in the caller's terms.

The HTTP layer turns them into statuses in one table (``collab.http.errors``); the
CLI into exit codes. The access layer's refusals (``collab.access.errors``:
Unauthenticated, Forbidden, which ``collab.services.authorize`` raises) and the event
store's own errors (``events.errors``) pass through the services unchanged.

::

    ServiceError              a command refused
    ├── NotFound              no such project, version, snapshot or room
    ├── Conflict              contradicts what exists (a snapshot name already taken)
    ├── Invalid               names what its target lacks; ``fields`` names each part
    └── Unavailable           not now: the writer refused, read models behind, the
                              schema not migrated, the project kept changing; retry
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad part of a command: its dotted path (``target.track_id``) and why."""

    field: str
    message: str


class ServiceError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class Invalid(ServiceError):
    def __init__(self, message: str, fields: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)

    @classmethod
    def naming(cls, field: str, problem: str, what: str | None = None) -> Invalid:
        """``invalid {what}: {problem}``, naming ``field`` (``what`` defaults to it)."""
        return cls(f"invalid {what or field}: {problem}", [FieldError(field, problem)])

    @classmethod
    def of(cls, exc: ValidationError, prefix: str = "") -> Invalid:
        """Every bad field pydantic found (``prefix`` places a nested model)."""
        fields = validation_fields(exc, prefix)
        first = fields[0]
        return cls(f"invalid {first.field}: {first.message}", fields)


class Unavailable(ServiceError):
    pass


def validation_fields(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    head = [prefix] if prefix else []
    return [
        FieldError(".".join([*head, *(str(part) for part in error["loc"])]) or "body", error["msg"])
        for error in exc.errors()
    ]
