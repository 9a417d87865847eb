"""A project's members and their roles, folded from the project's own events.

The creator (``project.created``'s ``owner``) is the first owner; ``member.granted``
sets a member's role and ``member.revoked`` removes it. Authorization reads these
events from the log itself, not from a read model, so that a member granted a moment
ago is let in at once (read-your-writes), on any node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from events.models import MemberGranted, MemberRevoked, ProjectCreated, project_stream
from events.records import StoredEvent

ProjectRole = Literal["owner", "editor", "viewer"]
PROJECT_ROLES: Final[tuple[ProjectRole, ...]] = get_args(ProjectRole)
#: what each role may do includes what the roles below it may
RANK: Final[dict[ProjectRole, int]] = {"viewer": 1, "editor": 2, "owner": 3}
ACCESS_EVENTS: Final = (
    ProjectCreated.event_type,
    MemberGranted.event_type,
    MemberRevoked.event_type,
)


@dataclass(frozen=True, slots=True)
class Roster:
    """The members of one project as of ``version`` of its stream."""

    project_id: str
    roles: dict[str, ProjectRole]
    #: the stream version of the newest access event folded in
    version: int

    def role_of(self, member: str) -> ProjectRole | None:
        return self.roles.get(member)

    @property
    def owners(self) -> list[str]:
        return sorted(m for m, role in self.roles.items() if role == "owner")


def fold(project_id: str, events: Iterable[StoredEvent]) -> Roster | None:
    """The roster the events make; None when the project was never created."""
    roles: dict[str, ProjectRole] = {}
    created = False
    version = 0
    for event in events:
        version = event.stream_version
        if event.event_type == ProjectCreated.event_type:
            created = True
            roles[str(event.data["owner"])] = "owner"
        elif event.event_type == MemberGranted.event_type:
            role = str(event.data["role"])
            # "service" was a role of the first event schema; services are now granted
            # the roles people are, and a service granted then may edit.
            roles[str(event.data["user"])] = role if role in PROJECT_ROLES else "editor"
        elif event.event_type == MemberRevoked.event_type:
            roles.pop(str(event.data["user"]), None)
    return Roster(project_id, roles, version) if created else None


class RecordLog(Protocol):
    """The event store's read of a stream's records (``EventStore.read_records``)."""

    async def read_records(
        self, stream_id: str, event_types: Sequence[str], *, after_version: int = 0
    ) -> list[StoredEvent]: ...


async def load(log: RecordLog, project_id: str) -> Roster | None:
    """The project's roster as the log holds it now; None for an unknown project."""
    events = await log.read_records(project_stream(project_id), ACCESS_EVENTS)
    return fold(project_id, events)
