"""The web studio: one page at ``/`` and its two assets, shipped inside the package
(``collab/http/studio/``; built from ``studio/`` by esbuild, docs/studio.md).

The page holds no data and needs no token: it signs in with a token kept by the
browser and talks to the same API and socket as every other client. Assets are read
once, gzip-compressed once, and revalidated by ETag, so a new package version is
picked up at the next load without a stale cache.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: what the page may load: only itself (no CDN, no inline script) and its own socket;
#: images from data: and blob: URLs (the favicon, the PROV-JSON download)
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        # 'self' covers the page's own ws:// and wss:// origin (CSP level 3)
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ]
)
_TYPES: Final = {
    "index.html": "text/html; charset=utf-8",
    "studio.js": "text/javascript; charset=utf-8",
    "studio.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


@cache
def asset(name: str) -> Asset:
    body = resources.files("collab.http").joinpath("studio", name).read_bytes()
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        media_type=_TYPES[name],
    )


def _send(request: Request, name: str) -> Response:
    item = asset(name)
    headers = {
        "ETag": item.etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if name == "index.html":
        headers |= {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        }
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(item.gzipped, media_type=item.media_type, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


async def page(request: Request) -> Response:
    return _send(request, "index.html")


async def script(request: Request) -> Response:
    return _send(request, "studio.js")


async def stylesheet(request: Request) -> Response:
    return _send(request, "studio.css")


routes = [
    Route("/", page, methods=["GET", "HEAD"]),
    Route("/studio/studio.js", script, methods=["GET", "HEAD"]),
    Route("/studio/studio.css", stylesheet, methods=["GET", "HEAD"]),
]
