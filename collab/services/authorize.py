"""Whether a principal may run a command: asked here, and only here.

Every command calls :func:`authorize` before it reads or writes anything, with what it
is about to do and, when it has one, the project it does it to; reads that need no
command (a route reading a read model) ask it too. The rules themselves are one table
(``collab.access.rules``); this adds the project's roster, read from the log
(``collab.access.members``), when the answer depends on it.
"""

from __future__ import annotations

from collab.access import members, rules
from collab.access.principal import Principal
from collab.access.rules import Action
from collab.services.errors import NotFound

__all__ = ["Action", "authorize"]


async def authorize(
    principal: Principal,
    action: Action,
    project_id: str | None = None,
    *,
    log: members.RecordLog,
) -> members.ProjectRole | None:
    """Return the principal's role in ``project_id`` (None when it holds none, or when
    its global role decides without one) if it may do ``action``; raise
    :class:`collab.access.errors.Forbidden` otherwise, and NotFound for a project that
    does not exist.

    Admins (every caller of a server without authentication is one) and auditors
    reading are decided without reading the log: their checks cost nothing.
    """
    if project_id is None or action not in rules.NEEDS:
        rules.require(principal, action)
        return None
    if rules.allowed(principal, action, None, in_project=True):
        return None  # a global role decides
    roster = await members.load(log, project_id)
    if roster is None:
        raise NotFound(f"no project {project_id}")
    role = roster.role_of(principal.actor)
    rules.require(principal, action, role, project_id)
    return role
