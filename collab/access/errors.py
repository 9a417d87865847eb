"""Refusals of the access layer, each with a message the caller may read.

::

    AccessError
    ├── Unauthenticated   no token, or one that does not verify  (HTTP 401, close 4401)
    ├── Forbidden         a known principal without the right    (HTTP 403, close 4403)
    └── ProjectNotFound   the project asked about does not exist (HTTP 404, close 4404)
"""

from __future__ import annotations


class AccessError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(AccessError):
    pass


class Forbidden(AccessError):
    pass


class ProjectNotFound(AccessError):
    pass
