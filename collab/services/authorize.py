"""Whether a principal may run a command: asked here, and only here.

Every command calls :func:`authorize` before it reads or writes anything, with what it
is about to do and, when it has one, the project it does it to; reads that need no
command (a route reading a read model) ask it too. The decision is the access layer's
(``collab.access.decide``, which the socket asks too); this names a missing project in
the commands' words (NotFound).
"""

from __future__ import annotations

from collab.access import decide, members, rules
from collab.access.errors import ProjectNotFound
from collab.access.principal import Principal
from collab.access.rules import Action
from collab.services.errors import NotFound
from events.models import project_of
from events.store import EventStore

__all__ = ["Action", "authorize", "authorize_parents", "standing"]


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
    if project_id is None:
        rules.require(principal, action)
        return None
    try:
        return await decide.role_in(principal, action, project_id, log=log)
    except ProjectNotFound as exc:
        raise NotFound(exc.message) from None


async def standing(
    principal: Principal, project_id: str, *, log: members.RecordLog
) -> dict[str, str | bool | None]:
    """What the principal is to a project it may read: ``role`` (its project role, or
    ``admin`` / ``auditor`` when a global role decides) and ``may_edit``, so that a
    client such as the web studio shows controls only to those whose edits are stored.
    Raises like :func:`authorize` for ``project.read``."""
    role = await authorize(principal, "project.read", project_id, log=log)
    if principal.is_admin:
        shown: str | None = "admin"
    elif principal.is_auditor:
        shown = "auditor"
    else:
        shown = role
    return {
        "user": principal.actor,
        "role": shown,
        "may_edit": rules.allowed(principal, "project.edit", role, in_project=True),
    }


async def authorize_parents(principal: Principal, daids: list[str], store: EventStore) -> None:
    """Naming a DAID as a parent links it into the lineage the caller reads back: the
    caller must be able to read each one's project. DAIDs minted elsewhere (not in this
    log) and records outside any project pass."""
    projects: set[str] = set()
    for daid in dict.fromkeys(daids):
        event = await store.event_by_daid(daid)
        parent_project = project_of(event.stream_id) if event is not None else None
        if parent_project is not None:
            projects.add(parent_project)
    for parent_project in sorted(projects):  # one roster read per project, not per DAID
        await authorize(principal, "project.read", parent_project, log=store)
