"""Who acts: the principal every command takes.

Today it is only the name recorded as each event's actor, which callers give
themselves (HTTP: the ``X-Actor`` header, ``api`` without one). The identity issue
adds what authorization needs (an authenticated subject, its roles); every command
already receives it and hands it to :func:`collab.services.authorize.authorize`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    #: recorded as the actor of every event the command appends
    actor: str
