"""Domain events: one frozen pydantic model per event type; docs/event-store.md
("Event models") describes how they are validated and upcast.

Each model names its ``event_type`` and ``schema_version``. Binary Yjs updates
live in a ``bytes`` field marked as the event's *payload*: they are stored in the
``payload`` bytea column, never base64 inside JSON. Old stored shapes are brought
forward by upcasters registered per ``(event_type, from_version)``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from events import analysis
from events import daid as daid_module
from events.errors import DaidError, InvalidEvent, UnknownEventType

Json = dict[str, Any]
Upcaster = Callable[[Json], Json]


def _check_daid(value: str) -> str:
    daid_module.parse(value)
    return value


def _check_sha256(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("must be 64 lowercase hex digits (SHA-256)")
    return value


DaidStr = Annotated[str, AfterValidator(_check_daid)]
Sha256Hex = Annotated[str, AfterValidator(_check_sha256)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
#: the most values one correcting update names (it corrects them all)
MAX_CORRECTION_REASONS = 100


class DomainEvent(BaseModel):
    """Base of every event. Subclasses set the class variables below."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    #: name of the ``bytes`` field stored in the payload column, if any
    payload_field: ClassVar[str | None] = None
    #: DAID entity type of the record this event creates
    daid_entity_type: ClassVar[str] = "event"
    #: the event makes a new version of its stream's document; the store then adds the
    #: previous version's DAID to its parents (the version lineage)
    is_version: ClassVar[bool] = False

    def daid_entity(self) -> str:
        """The DAID entity type; overridden where the data names it."""
        return self.daid_entity_type


E = TypeVar("E", bound=DomainEvent)


class ProjectCreated(DomainEvent):
    event_type: ClassVar[str] = "project.created"
    is_version: ClassVar[bool] = True
    daid_entity_type: ClassVar[str] = "project"

    name: Name
    owner: Name
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class DocUpdated(DomainEvent):
    event_type: ClassVar[str] = "doc.updated"
    is_version: ClassVar[bool] = True
    payload_field: ClassVar[str | None] = "update"
    daid_entity_type: ClassVar[str] = "project_version"

    update: bytes = Field(min_length=1)
    client_id: int | None = Field(default=None, ge=0)


class SnapshotTagged(DomainEvent):
    event_type: ClassVar[str] = "snapshot.tagged"
    daid_entity_type: ClassVar[str] = "snapshot"

    name: Name
    description: str = Field(default="", max_length=2000)
    version: int = Field(ge=0)


class ProjectRolledBack(DomainEvent):
    event_type: ClassVar[str] = "project.rolled_back"
    is_version: ClassVar[bool] = True
    payload_field: ClassVar[str | None] = "update"
    daid_entity_type: ClassVar[str] = "project_version"

    target_version: int = Field(ge=0)
    target_snapshot: str | None = None
    #: the Yjs update that turns the current document into the target state (may be
    #: empty when the document already equals the target)
    update: bytes


class ProjectReverted(DomainEvent):
    """One actor's (or agent's) changes between two versions undone as one forward
    update, the others' changes kept where they do not touch the same values."""

    event_type: ClassVar[str] = "project.reverted"
    is_version: ClassVar[bool] = True
    payload_field: ClassVar[str | None] = "update"
    daid_entity_type: ClassVar[str] = "project_version"

    #: whose changes: an actor (a person, or a service under its agent id) or an agent
    actor: Name | None = None
    agent: Name | None = None
    from_version: int = Field(ge=1)
    to_version: int = Field(ge=1)
    #: how many of that actor's document events in the range were undone
    changes: int = Field(ge=0)
    #: the DAIDs of the undone events (the first 1,000), also among the parents
    undone: tuple[str, ...] = ()
    update: bytes


class DocCorrected(DomainEvent):
    """The server's answer to a stored update that wrote values outside the document
    schema: the update that puts them back or removes them (``music.schema``)."""

    event_type: ClassVar[str] = "doc.corrected"
    is_version: ClassVar[bool] = True
    payload_field: ClassVar[str | None] = "update"
    daid_entity_type: ClassVar[str] = "project_version"

    update: bytes = Field(min_length=1)
    #: one sentence per value: where, what was wrong, and what was done
    reasons: tuple[Annotated[str, Field(max_length=1000)], ...] = Field(
        min_length=1, max_length=MAX_CORRECTION_REASONS
    )


Role = Literal["owner", "editor", "viewer", "service"]


class MemberGranted(DomainEvent):
    event_type: ClassVar[str] = "member.granted"
    daid_entity_type: ClassVar[str] = "membership"

    user: Name
    role: Role


class MemberRevoked(DomainEvent):
    event_type: ClassVar[str] = "member.revoked"
    daid_entity_type: ClassVar[str] = "membership"

    user: Name
    role: Role | None = None


class ToolInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_id: Name
    version: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=200)
    ai_involved: bool = False


class AnalysisTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=0)
    track_id: str | None = Field(default=None, max_length=200)
    clip_id: str | None = Field(default=None, max_length=200)


class AnalysisRecorded(DomainEvent):
    event_type: ClassVar[str] = "analysis.recorded"
    daid_entity_type: ClassVar[str] = "analysis"

    analysis_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    target: AnalysisTarget
    inputs: tuple[DaidStr, ...] = ()
    results: dict[str, JsonValue]
    tool: ToolInfo

    @field_validator("results")
    @classmethod
    def _typed_results(cls, value: dict[str, JsonValue], info: ValidationInfo) -> dict[str, Any]:
        try:
            return analysis.check_results(str(info.data.get("analysis_type")), value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(problems) from None

    def daid_entity(self) -> str:
        return self.analysis_type


class EntityRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    id: Name
    content_hash: Sha256Hex


AiInvolvement = Literal["none", "assisted", "generated"]


class ProvenanceRecorded(DomainEvent):
    event_type: ClassVar[str] = "provenance.recorded"
    daid_entity_type: ClassVar[str] = "provenance"

    entity: EntityRef
    activity: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    tool: ToolInfo
    ai_involvement: AiInvolvement = "none"
    derived_from: tuple[DaidStr, ...] = ()
    attributes: dict[str, JsonValue] = Field(default_factory=dict)

    def daid_entity(self) -> str:
        return self.entity.type


#: the event types whose payload is a Yjs update of the project document
DOCUMENT_EVENTS = (
    DocUpdated.event_type,
    ProjectRolledBack.event_type,
    ProjectReverted.event_type,
    DocCorrected.event_type,
)
PROJECT_STREAM_PREFIX = "project-"


def project_stream(project_id: str) -> str:
    """The stream holding a project's events."""
    return f"{PROJECT_STREAM_PREFIX}{project_id}"


def project_of(stream_id: str) -> str | None:
    """The project id of a project stream; None for other streams."""
    if stream_id.startswith(PROJECT_STREAM_PREFIX):
        return stream_id[len(PROJECT_STREAM_PREFIX) :]
    return None


@functools.lru_cache(maxsize=4096)
def project_uuid(stream_id: str) -> str | None:
    """The project of a project stream, normalised. Projects made here have UUIDs; a
    stream such as ``project-test`` written by some script is not a project."""
    project_id = project_of(stream_id)
    if project_id is None:
        return None
    try:
        return str(uuid.UUID(project_id))
    except ValueError:
        return None


class EventMetadata(BaseModel):
    """Who and what caused an event. Stored as the ``metadata`` jsonb column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actor: Name
    agent_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-/@+=]{1,200}$")] = "collab-server"
    correlation_id: str | None = Field(default=None, max_length=200)
    client_id: int | None = Field(default=None, ge=0)


class Registry:
    """Event classes by type name, plus upcasters for older schema versions."""

    def __init__(self) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[DomainEvent]) -> type[DomainEvent]:
        if cls.event_type in self._types:
            raise ValueError(f"event type {cls.event_type!r} registered twice")
        self._types[cls.event_type] = cls
        return cls

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """``upcaster`` turns data of ``from_version`` into data of ``from_version + 1``."""
        self._upcasters[(event_type, from_version)] = upcaster

    def get(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def to_record(self, event: DomainEvent) -> tuple[Json, bytes | None]:
        """Split an event into its JSON data and its binary payload."""
        cls = type(event)
        if self._types.get(cls.event_type) is not cls:
            raise UnknownEventType(cls.event_type)
        if cls.payload_field is None:
            return event.model_dump(mode="json"), None
        data = event.model_dump(mode="json", exclude={cls.payload_field})
        payload: bytes = getattr(event, cls.payload_field)
        return data, payload

    def from_record(
        self, event_type: str, schema_version: int, data: Json, payload: bytes | None = None
    ) -> DomainEvent:
        """Validate stored or incoming data against its model, upcasting old versions."""
        cls = self.get(event_type)
        if schema_version > cls.schema_version:
            raise InvalidEvent(
                event_type,
                [
                    (
                        "schema_version",
                        f"{schema_version} is newer than this server's {cls.schema_version}",
                    )
                ],
            )
        for version in range(schema_version, cls.schema_version):
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                raise InvalidEvent(
                    event_type, [("schema_version", f"no upcaster from version {version}")]
                )
            data = upcaster(data)
        fields = dict(data)
        if cls.payload_field is not None:
            if cls.payload_field in fields:
                raise InvalidEvent(
                    event_type, [(cls.payload_field, "binary fields travel as the payload")]
                )
            fields[cls.payload_field] = payload if payload is not None else b""
        elif payload is not None:
            raise InvalidEvent(event_type, [("payload", "this event type takes no payload")])
        return validate(cls, fields)


def validate(cls: type[E], fields: Json) -> E:
    """Build ``cls`` from untrusted ``fields``; :class:`InvalidEvent` names each bad field."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise InvalidEvent(cls.event_type, _problems(exc)) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = error["msg"]
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, DaidError):
            message = str(ctx_error)
        problems.append((location, message))
    return problems


registry = Registry()
for _cls in (
    ProjectCreated,
    DocUpdated,
    SnapshotTagged,
    ProjectRolledBack,
    ProjectReverted,
    DocCorrected,
    MemberGranted,
    MemberRevoked,
    AnalysisRecorded,
    ProvenanceRecorded,
):
    registry.register(_cls)

#: the event types that make a version of the project document (its lineage chain):
#: those whose class says ``is_version``
VERSION_EVENTS = tuple(name for name in registry.names() if registry.get(name).is_version)
