"""What each principal may do: one table, read by every route and by the socket.

A project's members act by their role in it (``collab.access.members``); global roles
reach every project: ``admin`` may do everything, ``auditor`` may read everything and
change nothing. Actions without a project (creating one, recording provenance) are
open to every principal that may change things at all.
"""

from __future__ import annotations

from typing import Final, Literal

from collab.access.errors import Forbidden
from collab.access.members import RANK, ProjectRole
from collab.access.principal import Principal

Action = Literal[
    # a project's document, summary, history, versions, analyses; joining it live
    "project.read",
    "members.read",
    # writes to one project
    "project.edit",
    "snapshot.create",
    "project.rollback",
    "analysis.record",
    "members.manage",
    # without a project
    "project.create",
    "provenance.record",
    # the audit log: checkpoints and proofs carry hashes only
    "audit.read",
    "audit.verify",
    "audit.export",
]

#: the least project role each project action needs
NEEDS: Final[dict[Action, ProjectRole]] = {
    "project.read": "viewer",
    "members.read": "viewer",
    # a project's audit bundle holds its events, which its readers read anyway
    "audit.export": "viewer",
    "project.edit": "editor",
    "snapshot.create": "editor",
    "project.rollback": "editor",
    "analysis.record": "editor",
    "members.manage": "owner",
    # provenance of something made from a project's version is written to that project
    "provenance.record": "editor",
}
#: actions an auditor may do on every project
AUDITOR_READS: Final[frozenset[Action]] = frozenset(
    {"project.read", "members.read", "audit.read", "audit.verify", "audit.export"}
)
_WORDS: Final[dict[Action, str]] = {
    "project.read": "reading it",
    "members.read": "reading its members",
    "project.edit": "editing it",
    "snapshot.create": "tagging a snapshot",
    "project.rollback": "rolling it back",
    "analysis.record": "recording an analysis",
    "members.manage": "managing its members",
    "provenance.record": "recording provenance in it",
    "audit.export": "exporting its audit bundle",
}


def allowed(
    principal: Principal, action: Action, role: ProjectRole | None = None, *, in_project: bool
) -> bool:
    """Whether ``principal`` may do ``action``: to a project it holds ``role`` in (None:
    no role there) when ``in_project``, else without one."""
    if principal.is_admin:
        return True
    if principal.is_auditor:
        # reads everything and changes nothing, whatever project role it also holds
        return action in AUDITOR_READS
    needed = NEEDS.get(action)
    if needed is not None and in_project:
        return role is not None and RANK[role] >= RANK[needed]
    if action in ("project.create", "provenance.record"):
        return True  # anyone but an auditor may start a project of their own
    return action == "audit.read"


def require(
    principal: Principal,
    action: Action,
    role: ProjectRole | None = None,
    project_id: str | None = None,
) -> None:
    """Return if allowed (to ``project_id``, if given); raise :class:`Forbidden` saying
    why not."""
    if allowed(principal, action, role, in_project=project_id is not None):
        return
    who = principal.actor
    if principal.is_auditor:
        raise Forbidden(f"{who} is an auditor: auditors read and change nothing ({action})")
    needed = NEEDS.get(action)
    if needed is not None and project_id is not None:
        article = "an" if role in ("owner", "editor") else "a"
        holds = f"is {article} {role} of" if role is not None else "is not a member of"
        least = [r for r, rank in RANK.items() if rank >= RANK[needed]]
        raise Forbidden(
            f"{who} {holds} project {project_id}; {_WORDS[action]} needs the role"
            f" {' or '.join(least)}"
        )
    raise Forbidden(f"{who} may not {action} (it needs the global role auditor or admin)")
