"""One decision for every door: whether a principal may do an action to a project, and
in which role. The commands (``collab.services.authorize``) and the socket
(``collab.live.ws``) both ask here, so a rule changed in :mod:`collab.access.rules` holds
for both at once.
"""

from __future__ import annotations

from collab.access import members, rules
from collab.access.errors import ProjectNotFound
from collab.access.members import ProjectRole
from collab.access.principal import Principal
from collab.access.rules import Action


async def role_in(
    principal: Principal, action: Action, project_id: str, *, log: members.RecordLog
) -> ProjectRole | None:
    """The principal's role in ``project_id`` if it may do ``action`` there (None when a
    global role decides, or the action needs no project role); raises
    :class:`~collab.access.errors.Forbidden` otherwise, and
    :class:`~collab.access.errors.ProjectNotFound` when the project does not exist.

    Admins and auditors reading are decided without reading the log.
    """
    if action not in rules.NEEDS:
        rules.require(principal, action)
        return None
    if rules.allowed(principal, action, None, in_project=True):
        return None  # a global role decides
    roster = await members.load(log, project_id)
    if roster is None:
        raise ProjectNotFound(f"no project {project_id}")
    role = roster.role_of(principal.actor)
    rules.require(principal, action, role, project_id)
    return role
