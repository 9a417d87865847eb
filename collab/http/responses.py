"""JSON responses of the HTTP API, errors included.

Documents and read models may hold numbers JSON has no form for: a Yjs editor can
write NaN or an infinity, and PostgreSQL's ``double precision`` columns keep them.
starlette's encoder refuses them (a 500 for every reader of that project, for good);
these responses write them as ``null``, as the read models' ``jsonb`` does, with the
same encoder (``projections.jsontext``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette import responses

from projections import jsontext


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        # A lone surrogate (a string JSON cannot carry) becomes "?" rather than a 500.
        return jsontext.dumps(content).encode("utf-8", "replace")


def error_response(
    status: int,
    message: str,
    fields: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """``{"error": status, "message": ..., "fields": [...]}``, the shape of every error."""
    body: dict[str, Any] = {"error": status, "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status, headers=headers)
