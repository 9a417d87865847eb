"""Typed edit operations for services and scripts, applied as one Yjs transaction.

``POST /api/projects/{id}/edits`` takes ``{"operations": [...]}``; each operation is
one of the models below, picked by its ``op`` field. Pydantic checks the shapes (422
naming the field); :func:`apply` checks them against the document (a missing track or
clip is an :class:`EditConflict`, also 422 with the operation's index) and changes
nothing unless every operation applies.

A little over 400 lines: each operation's model and the branch of :class:`_Editor` that
applies it change together, so the edit language stays in one module.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import pycrdt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from music import document

Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=500)]
Beats = Annotated[float, Field(ge=0, le=1e7)]
ParamValue = float | bool | Annotated[str, Field(max_length=500)]


class EditConflict(ValueError):
    """An operation that does not fit the current document."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"operations[{index}]: {message}")
        self.index = index


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetaFields(_Op):
    name: Text | None = None
    tempo: Annotated[float, Field(gt=0, le=1000)] | None = None
    time_signature: Annotated[str, Field(pattern=r"^[1-9][0-9]?/(1|2|4|8|16|32)$")] | None = None
    key: Annotated[str, Field(max_length=40)] | None = None
    sample_rate: Annotated[int, Field(ge=8000, le=384000)] | None = None


class TrackFields(_Op):
    name: Text | None = None
    kind: Literal["audio", "midi", "drums", "bus"] | None = None
    instrument: Text | None = None
    color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None
    volume_db: Annotated[float, Field(ge=-144, le=24)] | None = None
    pan: Annotated[float, Field(ge=-1, le=1)] | None = None
    mute: bool | None = None
    solo: bool | None = None
    armed: bool | None = None


class ClipFields(_Op):
    name: Text | None = None
    start_beats: Beats | None = None
    length_beats: Annotated[float, Field(gt=0, le=1e7)] | None = None
    source: Text | None = None


class Note(_Op):
    #: generated when absent; unique within the clip
    id: Id | None = None
    pitch: Annotated[int, Field(ge=0, le=127)]
    start: Beats
    duration: Annotated[float, Field(gt=0, le=1e7)]
    velocity: Annotated[int, Field(ge=1, le=127)] = 100


class AutomationPoint(_Op):
    time: Beats
    value: float
    curve: Literal["linear", "step", "exponential"] = "linear"


class SetMeta(_Op):
    op: Literal["set_meta"]
    fields: MetaFields


class AddTrack(TrackFields):
    op: Literal["add_track"]
    track_id: Id | None = None
    name: Text
    kind: Literal["audio", "midi", "drums", "bus"] = "midi"
    #: place in ``track_order`` (default: the end)
    index: Annotated[int, Field(ge=0)] | None = None


class UpdateTrack(_Op):
    op: Literal["update_track"]
    track_id: Id
    fields: TrackFields


class RemoveTrack(_Op):
    op: Literal["remove_track"]
    track_id: Id


class MoveTrack(_Op):
    op: Literal["move_track"]
    track_id: Id
    index: Annotated[int, Field(ge=0)]


class AddClip(ClipFields):
    op: Literal["add_clip"]
    track_id: Id
    clip_id: Id | None = None
    name: Text
    start_beats: Beats
    length_beats: Annotated[float, Field(gt=0, le=1e7)]


class UpdateClip(_Op):
    op: Literal["update_clip"]
    track_id: Id
    clip_id: Id
    fields: ClipFields


class RemoveClip(_Op):
    op: Literal["remove_clip"]
    track_id: Id
    clip_id: Id


class AddNotes(_Op):
    op: Literal["add_notes"]
    track_id: Id
    clip_id: Id
    notes: Annotated[list[Note], Field(min_length=1, max_length=10_000)]


class NoteChange(_Op):
    id: Id
    pitch: Annotated[int, Field(ge=0, le=127)] | None = None
    start: Beats | None = None
    duration: Annotated[float, Field(gt=0, le=1e7)] | None = None
    velocity: Annotated[int, Field(ge=1, le=127)] | None = None


class UpdateNotes(_Op):
    op: Literal["update_notes"]
    track_id: Id
    clip_id: Id
    notes: Annotated[list[NoteChange], Field(min_length=1, max_length=10_000)]


class RemoveNotes(_Op):
    op: Literal["remove_notes"]
    track_id: Id
    clip_id: Id
    #: the notes' ids
    ids: Annotated[list[Id], Field(min_length=1)] | None = None
    #: positions in the clip's ``notes`` array (racy when several people edit the clip:
    #: prefer ``ids``)
    indices: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> RemoveNotes:
        if (self.ids is None) == (self.indices is None):
            raise ValueError("give exactly one of ids or indices")
        return self


class AddEffect(_Op):
    op: Literal["add_effect"]
    track_id: Id
    effect_id: Id | None = None
    type: Annotated[str, Field(min_length=1, max_length=100)]
    enabled: bool = True
    params: dict[Id, ParamValue] = Field(default_factory=dict)
    index: Annotated[int, Field(ge=0)] | None = None


class UpdateEffect(_Op):
    op: Literal["update_effect"]
    track_id: Id
    effect_id: Id
    enabled: bool | None = None
    #: parameters to set (others stay as they are)
    params: dict[Id, ParamValue] = Field(default_factory=dict)
    remove_params: list[Id] = Field(default_factory=list)


class RemoveEffect(_Op):
    op: Literal["remove_effect"]
    track_id: Id
    effect_id: Id


class SetAutomation(_Op):
    op: Literal["set_automation"]
    track_id: Id
    parameter: Id
    #: replaces the parameter's points; an empty list clears them
    points: Annotated[list[AutomationPoint], Field(max_length=100_000)]


Operation = Annotated[
    SetMeta
    | AddTrack
    | UpdateTrack
    | RemoveTrack
    | MoveTrack
    | AddClip
    | UpdateClip
    | RemoveClip
    | AddNotes
    | UpdateNotes
    | RemoveNotes
    | AddEffect
    | UpdateEffect
    | RemoveEffect
    | SetAutomation,
    Field(discriminator="op"),
]


class EditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operations: Annotated[list[Operation], Field(min_length=1, max_length=1000)]


def _set_fields(target: pycrdt.Map[Any], fields: BaseModel) -> None:
    for name, value in fields.model_dump(exclude_none=True).items():
        target[name] = value


class _Editor:
    def __init__(self, doc: pycrdt.Doc[Any]) -> None:
        self.meta: pycrdt.Map[Any] = doc.get(document.META, type=pycrdt.Map)
        self.tracks: pycrdt.Map[Any] = doc.get(document.TRACKS, type=pycrdt.Map)
        self.order: pycrdt.Array[Any] = doc.get(document.TRACK_ORDER, type=pycrdt.Array)

    def track(self, index: int, track_id: str) -> pycrdt.Map[Any]:
        track = self.tracks.get(track_id)
        if not isinstance(track, pycrdt.Map):
            raise EditConflict(index, f"no track {track_id!r}")
        return track

    def child(self, index: int, parent: pycrdt.Map[Any], key: str, kind: type) -> Any:
        value = parent.get(key)
        if not isinstance(value, kind):
            value = kind()
            parent[key] = value
            value = parent[key]
        return value

    def clip(self, index: int, track_id: str, clip_id: str) -> pycrdt.Map[Any]:
        clips = self.child(index, self.track(index, track_id), "clips", pycrdt.Map)
        clip = clips.get(clip_id)
        if not isinstance(clip, pycrdt.Map):
            raise EditConflict(index, f"no clip {clip_id!r} in track {track_id!r}")
        return clip

    def effect(self, index: int, track_id: str, effect_id: str) -> tuple[pycrdt.Array[Any], int]:
        effects = self.child(index, self.track(index, track_id), "effects", pycrdt.Array)
        for position, effect in enumerate(effects):
            if isinstance(effect, pycrdt.Map) and effect.get("id") == effect_id:
                return effects, position
        raise EditConflict(index, f"no effect {effect_id!r} in track {track_id!r}")

    def order_index(self, track_id: str) -> int | None:
        for position, value in enumerate(self.order):
            if value == track_id:
                return position
        return None

    def apply(self, index: int, op: Any) -> None:  # noqa: PLR0915 - one branch per kind
        match op:
            case SetMeta(fields=fields):
                _set_fields(self.meta, fields)
            case AddTrack():
                track_id = op.track_id or uuid.uuid4().hex[:12]
                if track_id in self.tracks:
                    raise EditConflict(index, f"track {track_id!r} exists")
                fields = TrackFields.model_validate(
                    op.model_dump(include=set(TrackFields.model_fields))
                )
                track = pycrdt.Map(
                    {
                        "volume_db": 0.0,
                        "pan": 0.0,
                        "mute": False,
                        "solo": False,
                        "armed": False,
                        **fields.model_dump(exclude_none=True),
                        "effects": pycrdt.Array(),
                        "clips": pycrdt.Map(),
                        "automation": pycrdt.Map(),
                    }
                )
                self.tracks[track_id] = track
                at = len(self.order) if op.index is None else min(op.index, len(self.order))
                self.order.insert(at, track_id)
            case UpdateTrack(track_id=track_id, fields=fields):
                _set_fields(self.track(index, track_id), fields)
            case RemoveTrack(track_id=track_id):
                self.track(index, track_id)
                del self.tracks[track_id]
                position = self.order_index(track_id)
                if position is not None:
                    del self.order[position]
            case MoveTrack(track_id=track_id, index=target):
                self.track(index, track_id)
                position = self.order_index(track_id)
                if position is not None:
                    del self.order[position]
                self.order.insert(min(target, len(self.order)), track_id)
            case AddClip():
                clips = self.child(index, self.track(index, op.track_id), "clips", pycrdt.Map)
                clip_id = op.clip_id or uuid.uuid4().hex[:12]
                if clip_id in clips:
                    raise EditConflict(index, f"clip {clip_id!r} exists")
                fields = ClipFields.model_validate(
                    op.model_dump(include=set(ClipFields.model_fields))
                )
                clips[clip_id] = pycrdt.Map(
                    {**fields.model_dump(exclude_none=True), "notes": pycrdt.Array()}
                )
            case UpdateClip(track_id=track_id, clip_id=clip_id, fields=fields):
                _set_fields(self.clip(index, track_id, clip_id), fields)
            case RemoveClip(track_id=track_id, clip_id=clip_id):
                self.clip(index, track_id, clip_id)
                del self.track(index, track_id)["clips"][clip_id]
            case AddNotes(track_id=track_id, clip_id=clip_id, notes=notes):
                array = self.child(
                    index, self.clip(index, track_id, clip_id), "notes", pycrdt.Array
                )
                known = _note_ids(array)
                added = []
                for note in notes:
                    note_id = note.id or new_note_id()
                    if note_id in known:
                        raise EditConflict(index, f"note {note_id!r} exists")
                    known[note_id] = -1
                    added.append(pycrdt.Map({**note.model_dump(exclude={"id"}), "id": note_id}))
                array.extend(added)
            case UpdateNotes(track_id=track_id, clip_id=clip_id, notes=changes):
                array = self.child(
                    index, self.clip(index, track_id, clip_id), "notes", pycrdt.Array
                )
                known = _note_ids(array)
                for change in changes:
                    if change.id not in known:
                        raise EditConflict(index, f"no note {change.id!r}")
                    note = array[known[change.id]]
                    for field, value in change.model_dump(
                        exclude={"id"}, exclude_none=True
                    ).items():
                        note[field] = value
            case RemoveNotes(track_id=track_id, clip_id=clip_id, ids=ids, indices=indices):
                array = self.child(
                    index, self.clip(index, track_id, clip_id), "notes", pycrdt.Array
                )
                known = _note_ids(array)
                size = len(array)
                if ids is not None:
                    missing = [i for i in ids if i not in known]
                    if missing:
                        raise EditConflict(index, f"no note {missing[0]!r}")
                    positions = {known[i] for i in ids}
                else:
                    positions = set(indices or ())
                for position in sorted(positions, reverse=True):
                    if position >= size:
                        raise EditConflict(index, f"no note at index {position} (clip has {size})")
                    del array[position]
            case AddEffect():
                effects = self.child(index, self.track(index, op.track_id), "effects", pycrdt.Array)
                effect_id = op.effect_id or uuid.uuid4().hex[:12]
                if any(isinstance(e, pycrdt.Map) and e.get("id") == effect_id for e in effects):
                    raise EditConflict(index, f"effect {effect_id!r} exists")
                effect = pycrdt.Map(
                    {
                        "id": effect_id,
                        "type": op.type,
                        "enabled": op.enabled,
                        "params": pycrdt.Map(dict(op.params)),
                    }
                )
                at = len(effects) if op.index is None else min(op.index, len(effects))
                effects.insert(at, effect)
            case UpdateEffect(track_id=track_id, effect_id=effect_id):
                effects, position = self.effect(index, track_id, effect_id)
                effect = effects[position]
                if op.enabled is not None:
                    effect["enabled"] = op.enabled
                params = self.child(index, effect, "params", pycrdt.Map)
                for name, value in op.params.items():
                    params[name] = value
                for name in op.remove_params:
                    if name in params:
                        del params[name]
            case RemoveEffect(track_id=track_id, effect_id=effect_id):
                effects, position = self.effect(index, track_id, effect_id)
                del effects[position]
            case SetAutomation(track_id=track_id, parameter=parameter, points=points):
                automation = self.child(
                    index, self.track(index, track_id), "automation", pycrdt.Map
                )
                automation[parameter] = pycrdt.Array([pycrdt.Map(p.model_dump()) for p in points])
            case _:  # pragma: no cover - the discriminated union admits nothing else
                raise EditConflict(index, f"unknown operation {op!r}")


def apply(doc: pycrdt.Doc[Any], operations: list[Any]) -> bytes:
    """Apply ``operations`` to a copy of ``doc``; return the Yjs update they make.

    ``doc`` itself is not changed: the room applies the update once it is durable.
    Raises :class:`EditConflict` (and changes nothing) if any operation does not fit.
    """
    scratch = document.copy_of(doc)
    editor = _Editor(scratch)

    def change() -> None:
        for index, op in enumerate(operations):
            editor.apply(index, op)

    return document.transact(scratch, change)


def new_note_id() -> str:
    return "n" + uuid.uuid4().hex[:10]


def _note_ids(notes: pycrdt.Array[Any]) -> dict[str, int]:
    """Each note's id and place; a note without an id (documents written before notes
    had ids) or with one another note holds gets a new one, in the edit's transaction."""
    known: dict[str, int] = {}
    for place, note in enumerate(notes):
        if not isinstance(note, pycrdt.Map):
            continue
        note_id = note.get("id")
        if not isinstance(note_id, str) or not note_id or note_id in known:
            note_id = new_note_id()
            note["id"] = note_id
        known[note_id] = place
    return known
