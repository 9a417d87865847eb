"""Commands on a project's members: list them, grant a role, revoke it.

Roles are events of the project's own stream (``member.granted``, ``member.revoked``),
so they are part of its history and its audit log like every edit. Every change is
handed to ``notify`` once it is durable, which applies it to the node's open
connections at once (a revoked member's sockets close, a downgraded editor's become
read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from collab.access import members
from collab.access.members import ProjectRole, Roster
from collab.access.principal import Principal
from collab.services.authorize import authorize
from collab.services.errors import Conflict, NotFound
from events import EventMetadata, NewEvent
from events.models import MemberGranted, MemberRevoked, project_stream
from events.store import ANY, EventStore

#: tells the node's connections that a member's role changed (None: revoked)
Notify = Callable[[str, str, ProjectRole | None], None]


def _printable(value: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not hold control characters")
    return value


MemberName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]


class NewMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a user's ``sub``, or a service's ``agent_id``
    member: MemberName
    role: ProjectRole


@dataclass(frozen=True, slots=True)
class Changed:
    member: str
    #: the role now held (None once revoked)
    role: ProjectRole | None
    #: the role held before (None when the member is new)
    previous: ProjectRole | None
    position: int
    daid: str


async def roster(principal: Principal, project_id: str, *, store: EventStore) -> Roster:
    """The project's members as the log holds them now."""
    await authorize(principal, "members.read", project_id, log=store)
    return await _roster(store, project_id)


async def grant(
    principal: Principal,
    project_id: str,
    spec: NewMember,
    *,
    store: EventStore,
    notify: Notify,
    correlation_id: str | None = None,
) -> Changed:
    """Give ``spec.member`` the role ``spec.role`` (a new member, or a changed role)."""
    await authorize(principal, "members.manage", project_id, log=store)
    current = await _roster(store, project_id)
    previous = current.role_of(spec.member)
    if previous == "owner" and spec.role != "owner":
        _keep_an_owner(current, spec.member, project_id)
    done = await _append(
        store,
        project_id,
        MemberGranted(user=spec.member, role=spec.role),
        principal,
        correlation_id,
    )
    notify(project_id, spec.member, spec.role)
    return Changed(spec.member, spec.role, previous, done[0], done[1])


async def revoke(
    principal: Principal,
    project_id: str,
    member: str,
    *,
    store: EventStore,
    notify: Notify,
    correlation_id: str | None = None,
) -> Changed:
    """Remove ``member`` from the project; their open connections close (4403)."""
    await authorize(principal, "members.manage", project_id, log=store)
    current = await _roster(store, project_id)
    previous = current.role_of(member)
    if previous is None:
        raise NotFound(f"{member} is not a member of project {project_id}")
    if previous == "owner":
        _keep_an_owner(current, member, project_id)
    done = await _append(
        store, project_id, MemberRevoked(user=member, role=previous), principal, correlation_id
    )
    notify(project_id, member, None)
    return Changed(member, None, previous, done[0], done[1])


def _keep_an_owner(current: Roster, member: str, project_id: str) -> None:
    # Checked against the log as read just now: two owners demoting each other at the
    # same moment can still both succeed (an admin then grants a new owner).
    if current.owners == [member]:
        raise Conflict(
            f"{member} is the last owner of project {project_id}; grant another owner first"
        )


async def _roster(store: EventStore, project_id: str) -> Roster:
    found = await members.load(store, project_id)
    if found is None:
        raise NotFound(f"no project {project_id}")
    return found


async def _append(
    store: EventStore,
    project_id: str,
    event: MemberGranted | MemberRevoked,
    principal: Principal,
    correlation_id: str | None,
) -> tuple[int, str]:
    metadata = EventMetadata(
        actor=principal.actor, agent_id=principal.agent, correlation_id=correlation_id
    )
    result = await store.append(project_stream(project_id), [NewEvent(event, metadata)], ANY)
    return result.position, result.daids[0]
