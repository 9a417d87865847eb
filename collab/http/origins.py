"""Which web pages may write: the allowed origins, built once from the settings.

A browser adds ``Origin`` to every cross-site POST and to every WebSocket upgrade, and a
page cannot forge it. The HTTP check of unsafe methods and the WebSocket upgrade check
(``collab.http.guards``) ask this one object; CORS (``collab.app``) allows :attr:`listed`,
which is in the form browsers send (lower case, no default port), as CORS compares it
as text.

Allowed: the listed origins (default: every allowed host at the served port, over http
and https), and always the request's own origin (``Origin`` naming the ``Host`` the
request was sent to, which the host check has already accepted), so a page served
through a proxy or on a port chosen at start still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from collab.runtime.config import HttpSettings

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")


def parse_origin(value: str) -> Origin | None:
    """An ``Origin`` header (or a configured origin) in normal form; None when it is not
    an http(s) origin (``null``, other schemes, paths, credentials)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


class AllowedOrigins:
    def __init__(self, origins: frozenset[Origin]) -> None:
        self._origins = origins
        #: the listed origins as text (for CORS)
        self.listed = tuple(sorted(str(origin) for origin in origins))

    @classmethod
    def of(cls, settings: HttpSettings) -> AllowedOrigins:
        if settings.allowed_origins is not None:
            given = (parse_origin(origin) for origin in settings.allowed_origins)
            return cls(frozenset(origin for origin in given if origin is not None))
        if not settings.port:
            return cls(frozenset())
        return cls(
            frozenset(
                Origin(scheme, host, settings.port)
                for host in settings.allowed_hosts
                if "*" not in host
                for scheme in _DEFAULT_PORTS
            )
        )

    def allows(self, origin: str, host: str | None) -> bool:
        """May a page of ``origin`` write, in a request sent to ``host`` (its Host header)?"""
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._origins:
            return True
        if host is None:
            return False
        own = parse_origin(f"{parsed.scheme}://{host}")
        return own is not None and own == parsed
