"""Who acts: the principal every command and every connection carries.

With authentication on, a principal comes from a verified token (``collab.access.tokens``):
a user is its ``sub``; a service is a token with an ``agent_id`` claim and acts under
that id. With authentication off, callers name themselves (HTTP ``X-Actor``) and every
principal is an unverified admin: the server behaves as it did before tokens existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from collab.access.errors import Unauthenticated

GlobalRole = Literal["admin", "auditor"]
GLOBAL_ROLES: Final[tuple[GlobalRole, ...]] = ("admin", "auditor")

#: the agent recorded on events a person causes (a service records its own id)
SERVER_AGENT: Final = "collab-server"


@dataclass(frozen=True, slots=True)
class Principal:
    #: recorded as the actor of every event the principal causes, and the name it is
    #: granted project roles under: a user's ``sub``, a service's ``agent_id``
    actor: str
    #: the service this principal is (its token's ``agent_id``); None for a person
    agent_id: str | None = None
    #: global roles: ``admin`` may do everything, ``auditor`` may read everything
    roles: frozenset[GlobalRole] = field(default_factory=frozenset)
    #: when the token stops being valid (seconds since the epoch); None: never
    expires_at: float | None = None
    #: False when authentication is off and the name is the caller's own claim
    verified: bool = True

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_auditor(self) -> bool:
        return "auditor" in self.roles

    @property
    def agent(self) -> str:
        """The agent recorded in event metadata."""
        return self.agent_id or SERVER_AGENT


def unverified(actor: str) -> Principal:
    """A caller who named itself, with authentication off: may do everything."""
    return Principal(actor=actor, roles=frozenset({"admin"}), verified=False)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (HTTP, or a WebSocket
    upgrade); None without the header; Unauthenticated for any other scheme."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


class TokenCheck(Protocol):
    """Turns a bearer token into its principal (``collab.access.tokens.TokenVerifier``);
    raises ``collab.access.errors.Unauthenticated`` for a token that does not verify."""

    async def verify(self, token: str) -> Principal: ...
