"""The ``projects`` projection: the current project, its history, and time-travel states.

It folds every event of every project stream into:

* ``projects``: one row per project, with the document as JSON (``document``) and
  its meta fields as columns; ``project_tracks``, ``project_clips`` and
  ``project_effects`` hold the document's parts as rows SQL can query;
  ``project_members``, ``project_snapshots`` and ``project_analyses`` (counts by type);
* ``project_history``: one row per event, with change records and sentences
  (``music.changes``);
* ``project_states``: the encoded Yjs document every ``state_every`` versions, from
  which :mod:`projections.project_documents` rebuilds any version by replaying a few
  events.

The rows of the document's parts are built in :mod:`projections.project_parts`. What
stays here (a little over 400 lines) is the fold itself: one branch per event type,
the batch it writes and the cache of documents, which share the batch's state.

Documents of recently active projects stay in memory (an LRU of ``cache_size``);
one that is not there is rebuilt from its newest state plus the log after it. The
cache is dropped whenever a batch's transaction does not commit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog

from events.models import (
    DOCUMENT_EVENTS,
    AnalysisRecorded,
    DocCorrected,
    MemberGranted,
    MemberRevoked,
    ProjectCreated,
    ProjectReverted,
    ProjectRolledBack,
    ProvenanceRecorded,
    SnapshotTagged,
    project_stream,
    project_uuid,
)
from events.pacing import Pacer
from events.records import StoredEvent
from events.sql import Sql
from events.store import EventStore
from music import document, updates
from music.changes import DocumentTracker, Record, UpdateRefused
from music.summaries import summarize
from music.updates import EMPTY_UPDATE
from projections import jsontext, project_parts, quarantine
from projections.project_documents import replay

log = structlog.get_logger("projections.projects")

NAME: Final = "projects"
TABLES: Final = (
    "projects",
    "project_members",
    "project_tracks",
    "project_clips",
    "project_effects",
    "project_snapshots",
    "project_analyses",
    "project_analysis_results",
    "project_history",
    "project_states",
)


@dataclass(slots=True)
class _Project:
    project_id: str
    tracker: DocumentTracker
    name: str
    owner: str
    created_at: datetime
    created_position: int
    updated_at: datetime
    version: int = 0
    position: int = 0
    doc_version: int = 0
    state_version: int = 0
    #: the document changed in the batch being folded
    doc_changed: bool = False


@dataclass(slots=True)
class _Batch:
    projects: dict[str, _Project] = field(default_factory=dict)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)


class ProjectsProjection:
    def __init__(self, store: EventStore, *, state_every: int = 500, cache_size: int = 256) -> None:
        self._store = store
        self._state_every = state_every
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Project] = OrderedDict()

    @property
    def name(self) -> str:
        return NAME

    @property
    def tables(self) -> tuple[str, ...]:
        return TABLES

    def forget(self) -> None:
        self._cache.clear()

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        batch = _Batch()
        pacer = Pacer()
        for event in events:
            await pacer.pause()
            project_id = project_uuid(event.stream_id)
            if project_id is None:
                continue
            project = batch.projects.get(project_id)
            if project is None:
                project = await self._project(tx, project_id, event)
                batch.projects[project_id] = project
            await self._fold(tx, batch, project, event)
        await self._write(tx, batch)
        for project_id, project in batch.projects.items():
            project.doc_changed = False
            self._cache[project_id] = project
            self._cache.move_to_end(project_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- loading ---------------------------------------------------------------------------

    async def _project(self, tx: Sql, project_id: str, event: StoredEvent) -> _Project:
        cached = self._cache.get(project_id)
        if cached is not None:
            return cached
        row = await tx.fetchrow(
            "select name, owner, created_at, created_position, updated_at, version, position,"
            " doc_version, state_version from projects where project_id = $1",
            project_id,
        )
        if row is None:
            # Normally project.created; a stream begun some other way still gets a row.
            created = event.data if event.event_type == ProjectCreated.event_type else {}
            return _Project(
                project_id,
                DocumentTracker(),
                name=str(created.get("name", "")),
                owner=str(created.get("owner", event.metadata.get("actor", ""))),
                created_at=event.recorded_at,
                created_position=event.position,
                updated_at=event.recorded_at,
            )
        return _Project(
            project_id,
            await self._document(tx, project_id, int(row["doc_version"])),
            name=row["name"],
            owner=row["owner"],
            created_at=row["created_at"],
            created_position=row["created_position"],
            updated_at=row["updated_at"],
            version=row["version"],
            position=row["position"],
            doc_version=row["doc_version"],
            state_version=row["state_version"],
        )

    async def _document(self, tx: Sql, project_id: str, version: int) -> DocumentTracker:
        """The project's document as of ``version``, as this fold built it: its newest
        stored state plus the document events after it, without those it set aside."""
        state = await tx.fetchrow(
            "select version, state from project_states where project_id = $1 and version <= $2"
            " order by version desc limit 1",
            project_id,
            version,
        )
        return await replay(
            self._store,
            project_id,
            state=bytes(state["state"]) if state else None,
            after_version=int(state["version"]) if state else 0,
            to_version=version,
            skip=await quarantine.positions(tx, NAME, project_stream(project_id)),
        )

    # -- folding ---------------------------------------------------------------------------

    async def _fold(self, tx: Sql, batch: _Batch, project: _Project, event: StoredEvent) -> None:
        data = event.data
        records: list[Record] = []
        patch: list[list[Any]] | None = None
        summary: list[str]
        kind = event.event_type
        if kind == ProjectCreated.event_type:
            project.name = str(data["name"])
            project.owner = str(data["owner"])
            await tx.execute(
                "insert into project_members (project_id, member, role, granted_at)"
                " values ($1, $2, 'owner', $3) on conflict (project_id, member) do update"
                " set role = excluded.role, granted_at = excluded.granted_at",
                project.project_id,
                project.owner,
                event.recorded_at,
            )
            summary = [f'created project "{project.name}"']
        elif kind in DOCUMENT_EVENTS:
            records, summary, patch = await self._fold_document(tx, batch, project, event)
        elif kind == SnapshotTagged.event_type:
            await tx.execute(
                "insert into project_snapshots (project_id, name, description, version,"
                " position, daid, actor, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)"
                " on conflict (project_id, name) do nothing",
                project.project_id,
                data["name"],
                data.get("description", ""),
                data["version"],
                event.position,
                event.daid,
                str(event.metadata.get("actor", "")),
                event.recorded_at,
            )
            summary = [f'tagged snapshot "{data["name"]}" at version {data["version"]}']
        elif kind == MemberGranted.event_type:
            await tx.execute(
                "insert into project_members (project_id, member, role, granted_at)"
                " values ($1, $2, $3, $4) on conflict (project_id, member) do update"
                " set role = excluded.role, granted_at = excluded.granted_at",
                project.project_id,
                data["user"],
                data["role"],
                event.recorded_at,
            )
            summary = [f"granted {data['role']} to {data['user']}"]
        elif kind == MemberRevoked.event_type:
            await tx.execute(
                "delete from project_members where project_id = $1 and member = $2",
                project.project_id,
                data["user"],
            )
            summary = [f"revoked {data['user']}"]
        elif kind == AnalysisRecorded.event_type:
            await tx.execute(
                "insert into project_analyses (project_id, analysis_type, count, last_version)"
                " values ($1, $2, 1, $3) on conflict (project_id, analysis_type) do update"
                " set count = project_analyses.count + 1, last_version = excluded.last_version",
                project.project_id,
                data["analysis_type"],
                event.stream_version,
            )
            tool = data.get("tool", {})
            target = data.get("target", {})
            await tx.execute(
                "insert into project_analysis_results (project_id, position, event_version,"
                " daid, analysis_type, target_version, target_daid, track_id, clip_id, inputs,"
                " results, tool, actor, recorded_at) values ($1, $2, $3, $4, $5, $6, $7, $8,"
                " $9, $10::jsonb, $11::jsonb, $12::jsonb, $13, $14)",
                project.project_id,
                event.position,
                event.stream_version,
                event.daid,
                data["analysis_type"],
                target.get("version", 0),
                _target_daid(event),
                target.get("track_id"),
                target.get("clip_id"),
                jsontext.dumps(data.get("inputs", [])),
                jsontext.dumps(data.get("results", {})),
                jsontext.dumps(tool),
                str(event.metadata.get("actor", "")),
                event.recorded_at,
            )
            summary = [f"recorded {data['analysis_type']} analysis by {tool.get('agent_id', '?')}"]
        elif kind == ProvenanceRecorded.event_type:
            entity = data.get("entity", {})
            summary = [
                f"recorded provenance: {data.get('activity')} of {entity.get('type')}"
                f" {entity.get('id')}"
            ]
        else:
            summary = [kind]
        project.version = event.stream_version
        project.position = event.position
        project.updated_at = event.recorded_at
        batch.history.append(
            (
                project.project_id,
                event.stream_version,
                event.position,
                event.recorded_at,
                str(event.metadata.get("actor", "")),
                str(event.metadata.get("agent_id", "")),
                kind,
                event.daid,
                jsontext.dumps(records),
                [jsontext.clean(sentence) for sentence in summary],
                jsontext.dumps(patch) if patch is not None else None,
            )
        )

    async def _fold_document(
        self, tx: Sql, batch: _Batch, project: _Project, event: StoredEvent
    ) -> tuple[list[Record], list[str], list[list[Any]]]:
        records: list[Record] = []
        summary: list[str] = []
        patch: list[list[Any]] = []
        if event.payload and event.payload != EMPTY_UPDATE:
            try:
                changes = project.tracker.apply(event.payload)
            except updates.MalformedUpdate as exc:
                # Retrying cannot help: the bytes will never decode. Keep going.
                await self._set_aside(tx, project, event, f"update does not decode: {exc}")
                summary = ["update could not be decoded; ignored"]
            except UpdateRefused as exc:
                # Nor can it help an update the document refuses, which may have left
                # part of itself in the document: build that again without it.
                await self._set_aside(tx, project, event, f"update cannot be applied: {exc}")
                project.tracker = await self._document(tx, project.project_id, project.doc_version)
                summary = ["update could not be applied; ignored"]
            else:
                records = project.tracker.records(changes)
                patch = project.tracker.patch
                project.doc_changed = True
        project.doc_version = event.stream_version
        summary += summarize(records)
        if event.event_type == ProjectRolledBack.event_type:
            summary.insert(0, _rolled_back(event.data))
        elif event.event_type == ProjectReverted.event_type:
            summary.insert(0, _reverted(event.data))
        elif event.event_type == DocCorrected.event_type:
            summary.insert(0, _corrected(event.data))
        elif not summary:
            summary = ["no visible change"]
        if event.stream_version - project.state_version >= self._state_every:
            batch.states.append(
                (
                    project.project_id,
                    event.stream_version,
                    event.position,
                    project.tracker.doc.get_update(),
                    jsontext.dumps(project.tracker.view),
                )
            )
            project.state_version = event.stream_version
        return records, summary, patch

    async def _set_aside(self, tx: Sql, project: _Project, event: StoredEvent, why: str) -> None:
        """Record ``event`` as quarantined (its document change left out; its history
        row still written) in the batch's transaction."""
        log.warning(
            "document update set aside",
            project=project.project_id,
            version=event.stream_version,
            position=event.position,
            reason=why,
        )
        await quarantine.record(tx, NAME, event, why)

    # -- writing ---------------------------------------------------------------------------

    async def _write(self, tx: Sql, batch: _Batch) -> None:
        if not batch.projects:
            return
        rows = [_project_row(p) for p in batch.projects.values()]
        await tx.executemany(
            "insert into projects (project_id, name, owner, created_at, created_position,"
            " updated_at, version, position, doc_version, state_version, tempo, time_signature,"
            " key, sample_rate, document) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13, $14, $15::jsonb) on conflict (project_id) do update set"
            " name = excluded.name, owner = excluded.owner, updated_at = excluded.updated_at,"
            " version = excluded.version, position = excluded.position,"
            " doc_version = excluded.doc_version, state_version = excluded.state_version,"
            " tempo = excluded.tempo, time_signature = excluded.time_signature,"
            " key = excluded.key, sample_rate = excluded.sample_rate,"
            " document = excluded.document",
            rows,
        )
        changed = [p for p in batch.projects.values() if p.doc_changed]
        if changed:
            await project_parts.write_parts(tx, [(p.project_id, p.tracker.view) for p in changed])
        if batch.history:
            await tx.copy("project_history", _HISTORY_COLUMNS, batch.history)
        if batch.states:
            await tx.executemany(
                "insert into project_states (project_id, version, position, state, document)"
                " values ($1, $2, $3, $4, $5::jsonb) on conflict (project_id, version) do nothing",
                batch.states,
            )


_HISTORY_COLUMNS: Final = (
    "project_id",
    "version",
    "position",
    "recorded_at",
    "actor",
    "agent_id",
    "event_type",
    "daid",
    "changes",
    "summary",
    "patch",
)


def _target_daid(event: StoredEvent) -> str | None:
    """The analysed version's DAID: the parent that is not one of the inputs."""
    inputs = set(event.data.get("inputs", ()))
    return next((parent for parent in event.parents if parent not in inputs), None)


def _reverted(data: dict[str, Any]) -> str:
    who = data.get("actor") or f"agent {data.get('agent')}"
    changes = data.get("changes", 0)
    return (
        f"reverted {changes} change{'' if changes == 1 else 's'} by {who} made between"
        f" versions {data.get('from_version')} and {data.get('to_version')}"
    )


def _corrected(data: dict[str, Any]) -> str:
    reasons = [str(reason) for reason in data.get("reasons", ())]
    values = f"{len(reasons)} value{'' if len(reasons) == 1 else 's'}"
    return f"corrected {values} outside the document schema: {'; '.join(reasons[:3])}" + (
        f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
    )


def _rolled_back(data: dict[str, Any]) -> str:
    snapshot = data.get("target_snapshot")
    if snapshot:
        return f'rolled back to snapshot "{snapshot}" (version {data["target_version"]})'
    return f"rolled back to version {data['target_version']}"


def _project_row(project: _Project) -> tuple[Any, ...]:
    view = project.tracker.view
    meta = view.get(document.META) or {}
    return (
        project.project_id,
        jsontext.clean(project.name or str(meta.get("name") or "")),
        project.owner,
        project.created_at,
        project.created_position,
        project.updated_at,
        project.version,
        project.position,
        project.doc_version,
        project.state_version,
        project_parts.number(meta.get("tempo")),
        project_parts.text(meta.get("time_signature")),
        project_parts.text(meta.get("key")),
        project_parts.integer(meta.get("sample_rate")),
        jsontext.dumps(view),
    )
