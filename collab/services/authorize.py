"""Whether a principal may run a command: decided here, and only here.

Every command calls :func:`authorize` before it reads or writes anything, with what
it is about to do and, when it has one, the project it does it to. A new command
adds its action to :data:`Action`.
"""

from __future__ import annotations

from typing import Literal

from collab.services.principal import Principal

Action = Literal[
    "project.create",
    "project.edit",
    "snapshot.create",
    "project.rollback",
    "analysis.record",
    "provenance.record",
    "audit.verify",
    "audit.export",
]


def authorize(principal: Principal, action: Action, project_id: str | None = None) -> None:
    """Return if ``principal`` may do ``action`` (to ``project_id``, if given); raise
    :class:`collab.services.errors.Forbidden` otherwise.

    Everything is allowed today: callers name themselves and nothing vouches for the
    name. The identity issue fills this in (an authenticated principal, its roles, the
    rule of each action), without touching the commands.
    """
