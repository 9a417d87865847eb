"""Commands that attach what services know: analysis results of a project version,
and provenance records of things made outside the document (renders, exports,
imports, generated material).

Both append events whose DAID names its parents: the analysed (or rendered) project
version's DAID and the declared inputs, which may be DAIDs minted elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from collab.access.errors import Forbidden
from collab.access.principal import Principal
from collab.services.authorize import authorize, authorize_parents
from collab.services.errors import Invalid
from collab.services.lookup import parse_project_id, target_version, view_at
from collab.services.ports import ReadModels, Store
from events import EventMetadata, NewEvent
from events.analysis import check_results
from events.models import (
    AiInvolvement,
    AnalysisRecorded,
    AnalysisTarget,
    DaidStr,
    EntityRef,
    ProvenanceRecorded,
    ToolInfo,
    project_stream,
)
from events.store import ANY, EventStore

#: the stream of provenance records that belong to no project
GLOBAL_PROVENANCE_STREAM = "provenance"
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)] | None = None
    track_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    clip_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _clip_needs_track(self) -> TargetIn:
        if self.clip_id is not None and self.track_id is None:
            raise ValueError("a clip is named within its track: give track_id too")
        return self


class NewAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Identifier
    target: TargetIn = TargetIn()
    inputs: Annotated[list[DaidStr], Field(max_length=1000)] = []
    results: dict[str, JsonValue]
    tool: ToolInfo


class NewProvenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    version: Annotated[int, Field(ge=1)] | None = None
    entity: EntityRef
    activity: Identifier
    tool: ToolInfo
    ai_involvement: AiInvolvement = "none"
    derived_from: Annotated[list[DaidStr], Field(max_length=1000)] = []
    attributes: dict[str, JsonValue] = {}

    @model_validator(mode="after")
    def _version_needs_project(self) -> NewProvenance:
        if self.version is not None and self.project_id is None:
            raise ValueError("version names a project version: give project_id too")
        return self


@dataclass(frozen=True, slots=True)
class Recorded:
    daid: str
    position: int
    stream_id: str
    #: the stream version of the recorded event
    event_version: int
    #: the DAIDs the record derives from, first the project version's (if any)
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnalysisAppended:
    record: Recorded
    target: AnalysisTarget
    #: the DAID of the analysed project version
    target_daid: str | None


def _metadata(principal: Principal, tool: ToolInfo, correlation_id: str | None) -> EventMetadata:
    """The DAID's agent is the service that made the record, as in the ecosystem's DAIDs.

    A service may only record as itself: its token's agent id must be the tool's. A
    person may record what a tool made (an analysis run by hand, say).
    """
    if principal.agent_id is not None and principal.agent_id != tool.agent_id:
        raise Forbidden(
            f"the service {principal.agent_id} may not record as {tool.agent_id!r}:"
            " tool.agent_id must be its own"
        )
    return EventMetadata(
        actor=principal.actor, agent_id=tool.agent_id, correlation_id=correlation_id
    )


async def _check_parts(
    store: Store, models: ReadModels, project_id: str, target: TargetIn, version: int
) -> None:
    """The named track and clip must exist in the analysed version."""
    if target.track_id is None:
        return
    view = await view_at(store, models, project_id, version)
    track = (view.get("tracks") or {}).get(target.track_id)
    if not isinstance(track, dict):
        message = f"no track {target.track_id!r} at version {version}"
        raise Invalid.naming("target.track_id", message)
    if target.clip_id is not None and target.clip_id not in (track.get("clips") or {}):
        message = f"no clip {target.clip_id!r} in track {target.track_id!r} at version {version}"
        raise Invalid.naming("target.clip_id", message)


async def record_analysis(
    principal: Principal,
    project_id: str,
    spec: NewAnalysis,
    *,
    store: Store,
    models: ReadModels,
    correlation_id: str | None = None,
) -> AnalysisAppended:
    """Record analysis results of a project version (the current one by default), or of
    a track or clip in it; the results of known types are checked (``events.analysis``)."""
    await authorize(principal, "analysis.record", project_id, log=store)
    metadata = _metadata(principal, spec.tool, correlation_id)
    await authorize_parents(principal, spec.inputs, store)
    try:
        results = check_results(spec.type, spec.results)
    except ValidationError as exc:
        raise Invalid.of(exc, "results") from None
    version = await target_version(store, project_id, spec.target.version)
    await _check_parts(store, models, project_id, spec.target, version)
    stream_id = project_stream(project_id)
    target_daid = await store.version_daid(stream_id, version)
    event = AnalysisRecorded(
        analysis_type=spec.type,
        target=AnalysisTarget(
            version=version, track_id=spec.target.track_id, clip_id=spec.target.clip_id
        ),
        inputs=tuple(spec.inputs),
        results=results,
        tool=spec.tool,
    )
    parents = (*((target_daid,) if target_daid else ()), *spec.inputs)
    result = await store.append(stream_id, [NewEvent(event, metadata, parents=parents)], ANY)
    record = Recorded(result.daids[0], result.position, stream_id, result.version, _unique(parents))
    return AnalysisAppended(record, event.target, target_daid)


async def record_provenance(
    principal: Principal,
    spec: NewProvenance,
    *,
    store: EventStore,
    correlation_id: str | None = None,
) -> Recorded:
    """Record how an entity was made; in its project's stream when it names one (its
    version's DAID a parent), else in the global provenance stream."""
    project_id = parse_project_id(spec.project_id) if spec.project_id is not None else None
    await authorize(principal, "provenance.record", project_id, log=store)
    metadata = _metadata(principal, spec.tool, correlation_id)
    await authorize_parents(principal, spec.derived_from, store)
    parents: tuple[str, ...] = tuple(spec.derived_from)
    if project_id is not None:
        version = await target_version(store, project_id, spec.version)
        stream_id = project_stream(project_id)
        version_daid = await store.version_daid(stream_id, version)
        if version_daid is not None:
            parents = (version_daid, *parents)
    else:
        stream_id = GLOBAL_PROVENANCE_STREAM
    event = ProvenanceRecorded(
        entity=spec.entity,
        activity=spec.activity,
        tool=spec.tool,
        ai_involvement=spec.ai_involvement,
        derived_from=tuple(spec.derived_from),
        attributes=spec.attributes,
    )
    result = await store.append(stream_id, [NewEvent(event, metadata, parents=parents)], ANY)
    return Recorded(result.daids[0], result.position, stream_id, result.version, _unique(parents))


def _unique(daids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(daids))
