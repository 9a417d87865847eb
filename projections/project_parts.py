"""The ``projects`` read model's rows for a document's parts: ``project_tracks``,
``project_clips`` and ``project_effects``, and the columns' values read from the
document (which editors may fill with anything).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from events.sql import Sql
from music import document
from projections import jsontext


async def write_parts(tx: Sql, views: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Replace the track, clip and effect rows of each ``(project_id, view)``."""
    ids = [project_id for project_id, _ in views]
    for table in ("project_tracks", "project_clips", "project_effects"):
        await tx.execute(f"delete from {table} where project_id = any($1::uuid[])", ids)
    tracks: list[tuple[Any, ...]] = []
    clips: list[tuple[Any, ...]] = []
    effects: list[tuple[Any, ...]] = []
    for project_id, view in views:
        raw_tracks = view.get(document.TRACKS)
        all_tracks: dict[str, Any] = raw_tracks if isinstance(raw_tracks, dict) else {}
        raw_order = view.get(document.TRACK_ORDER)
        # A client may put anything into the order (a map, found by the fuzzing
        # campaign of 2026-12-04, stopped this fold): only the ids of tracks count.
        order = [
            t
            for t in (raw_order if isinstance(raw_order, list) else [])
            if isinstance(t, str) and t in all_tracks
        ]
        order = list(dict.fromkeys(order))
        order += sorted(t for t in all_tracks if t not in order)
        for ordinal, track_id in enumerate(order):
            track = all_tracks[track_id] if isinstance(all_tracks[track_id], dict) else {}
            track_clips = track.get("clips") if isinstance(track.get("clips"), dict) else {}
            track_effects = track.get("effects") if isinstance(track.get("effects"), list) else []
            note_total = 0
            for clip_id, raw_clip in (track_clips or {}).items():
                clip = raw_clip if isinstance(raw_clip, dict) else {}
                notes = clip.get("notes") if isinstance(clip.get("notes"), list) else []
                note_total += len(notes or [])
                clips.append(
                    (
                        project_id,
                        jsontext.clean(track_id),
                        jsontext.clean(clip_id),
                        text(clip.get("name")),
                        number(clip.get("start_beats")),
                        number(clip.get("length_beats")),
                        text(clip.get("source")),
                        len(notes or []),
                    )
                )
            for effect_ordinal, raw_effect in enumerate(track_effects or []):
                effect = raw_effect if isinstance(raw_effect, dict) else {}
                params = effect.get("params") if isinstance(effect.get("params"), dict) else {}
                effects.append(
                    (
                        project_id,
                        jsontext.clean(track_id),
                        effect_ordinal,
                        text(effect.get("id")),
                        text(effect.get("type")),
                        boolean(effect.get("enabled")),
                        jsontext.dumps(params or {}),
                    )
                )
            tracks.append(
                (
                    project_id,
                    jsontext.clean(track_id),
                    ordinal,
                    text(track.get("name")),
                    text(track.get("kind")),
                    text(track.get("instrument")),
                    text(track.get("color")),
                    number(track.get("volume_db")),
                    number(track.get("pan")),
                    boolean(track.get("mute")),
                    boolean(track.get("solo")),
                    boolean(track.get("armed")),
                    len(track_clips or {}),
                    note_total,
                    len(track_effects or []),
                )
            )
    if tracks:
        await tx.copy("project_tracks", _TRACK_COLUMNS, tracks)
    if clips:
        await tx.copy("project_clips", _CLIP_COLUMNS, clips)
    if effects:
        await tx.copy("project_effects", _EFFECT_COLUMNS, effects)


_TRACK_COLUMNS: Final = (
    "project_id",
    "track_id",
    "ordinal",
    "name",
    "kind",
    "instrument",
    "color",
    "volume_db",
    "pan",
    "mute",
    "solo",
    "armed",
    "clip_count",
    "note_count",
    "effect_count",
)
_CLIP_COLUMNS: Final = (
    "project_id",
    "track_id",
    "clip_id",
    "name",
    "start_beats",
    "length_beats",
    "source",
    "note_count",
)
_EFFECT_COLUMNS: Final = (
    "project_id",
    "track_id",
    "ordinal",
    "effect_id",
    "type",
    "enabled",
    "params",
)


# Editors may write anything into the shared document: a column gets a value only
# when it has the right kind, and one it can hold (text without NUL characters, a
# finite number: readers answer JSON, which has no NaN).
def text(value: Any) -> str | None:
    return jsontext.clean(value) if isinstance(value, str) else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def integer(value: Any) -> int | None:
    as_float = number(value)
    if as_float is None or not as_float.is_integer() or abs(as_float) > 2**31 - 1:
        return None
    return int(as_float)


def boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
