"""A Standard MIDI File (types 0 and 1) read into tracks of notes, and those turned into
typed edits (``music.edits``); no I/O. The writing side is :mod:`music.midi`; what is
read and how is in docs/interchange.md.
"""

from __future__ import annotations

import io
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import mido

from music.midi import DRUM_CHANNEL, signature

#: the largest file ``read`` takes
MAX_FILE_BYTES: Final = 1024 * 1024
#: notes per ``add_notes`` operation (music.edits.AddNotes allows 10,000)
NOTES_PER_OPERATION: Final = 10_000


class MidiError(ValueError):
    """A file that is not a Standard MIDI File this server can read; the message says
    why, in words for the person who sent it."""


@dataclass(frozen=True, slots=True)
class ReadNote:
    pitch: int
    start: float
    duration: float
    velocity: int


@dataclass(frozen=True, slots=True)
class ReadTrack:
    name: str
    kind: str
    volume_db: float
    pan: float
    notes: tuple[ReadNote, ...]


@dataclass(frozen=True, slots=True)
class ReadFile:
    type: int
    tempo: float
    time_signature: str
    tracks: tuple[ReadTrack, ...]

    @property
    def notes(self) -> int:
        return sum(len(t.notes) for t in self.tracks)


def read(data: bytes) -> ReadFile:
    """A Standard MIDI File (type 0 or 1) as tracks of notes in beats. Type 0 files are
    split by channel; in a type 1 file every track with notes is one track (the
    conductor track gives the first tempo and time signature). Raises MidiError."""
    if len(data) > MAX_FILE_BYTES:
        raise MidiError(f"the file is {len(data)} bytes; at most {MAX_FILE_BYTES} are taken")
    if not data.startswith(b"MThd"):
        raise MidiError("not a Standard MIDI File (it does not start with MThd)")
    try:
        parsed = mido.MidiFile(file=io.BytesIO(data), clip=False)
    except EOFError:
        raise MidiError("the file is truncated") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise MidiError(f"not a readable Standard MIDI File: {exc}") from None
    if parsed.type == 2:
        raise MidiError("type 2 files (independent sequences) are not imported")
    per_beat = parsed.ticks_per_beat
    if not isinstance(per_beat, int) or per_beat <= 0:
        raise MidiError("timing in SMPTE frames is not supported; only ticks per beat")
    tempo: float | None = None
    signature: str | None = None
    tracks: list[ReadTrack] = []
    for index, track in enumerate(parsed.tracks):
        found = _read_track(track, per_beat)
        tempo = tempo if tempo is not None else found.tempo
        signature = signature if signature is not None else found.signature
        for channel, notes in sorted(found.notes.items()):
            if not notes:
                continue
            name = found.name or f"Track {index + 1}"
            if parsed.type == 0 or len(found.notes) > 1:
                name = f"{name} (channel {channel + 1})"
            tracks.append(
                ReadTrack(
                    name=name[:500],
                    kind="drums" if channel == DRUM_CHANNEL else "midi",
                    volume_db=found.volume_db.get(channel, 0.0),
                    pan=found.pan.get(channel, 0.0),
                    notes=tuple(sorted(notes, key=lambda n: (n.start, n.pitch))),
                )
            )
    return ReadFile(parsed.type, tempo or 120.0, signature or "4/4", tuple(tracks))


@dataclass
class _TrackRead:
    name: str
    tempo: float | None
    signature: str | None
    notes: dict[int, list[ReadNote]]
    volume_db: dict[int, float]
    pan: dict[int, float]


def _read_track(track: Any, per_beat: int) -> _TrackRead:
    now = 0
    found = _TrackRead("", None, None, {}, {}, {})
    # sounding notes per (channel, pitch), first in first out, as most players pair them
    sounding: dict[tuple[int, int], deque[tuple[int, int]]] = {}
    for message in track:
        now += message.time
        kind = message.type
        if kind == "track_name" and not found.name:
            # NUL is common in files' names, and no value the document may hold
            found.name = str(message.name).replace("\x00", "").strip()
        elif kind == "set_tempo" and found.tempo is None and message.tempo > 0:
            found.tempo = round(float(mido.tempo2bpm(message.tempo)), 3)
        elif kind == "time_signature" and found.signature is None:
            found.signature = f"{message.numerator}/{message.denominator}"
        elif kind == "control_change" and message.control == 7:
            found.volume_db.setdefault(message.channel, _decibels(message.value))
        elif kind == "control_change" and message.control == 10:
            found.pan.setdefault(message.channel, max(-1.0, min(1.0, (message.value - 64) / 63.5)))
        elif kind == "note_on" and message.velocity > 0:
            sounding.setdefault((message.channel, message.note), deque()).append(
                (now, message.velocity)
            )
            found.notes.setdefault(message.channel, [])
        elif kind in ("note_off", "note_on"):
            started = sounding.get((message.channel, message.note))
            if started:
                begin, velocity = started.popleft()
                if now > begin:
                    found.notes.setdefault(message.channel, []).append(
                        ReadNote(
                            message.note,
                            round(begin / per_beat, 6),
                            round((now - begin) / per_beat, 6),
                            velocity,
                        )
                    )
    return found


def _decibels(value: int) -> float:
    """The inverse of ``_volume``: CC 7 to decibels, at least -60."""
    if value <= 0:
        return -60.0
    return max(-60.0, round(40 * math.log10(value / 127), 2))


def operations(read_file: ReadFile, new_id: Any) -> list[dict[str, Any]]:
    """Typed edits (music.edits) adding ``read_file``'s tracks, one clip each from beat
    0 to the bar after its last note; ``new_id(prefix)`` names tracks and clips."""
    beats_per_bar = _bar(read_file.time_signature)
    ops: list[dict[str, Any]] = []
    for track in read_file.tracks:
        track_id, clip_id = new_id("t"), new_id("c")
        end = max(n.start + n.duration for n in track.notes)
        length = max(beats_per_bar, math.ceil(end / beats_per_bar) * beats_per_bar)
        ops.append(
            {
                "op": "add_track",
                "track_id": track_id,
                "name": track.name,
                "kind": track.kind,
                "volume_db": track.volume_db,
                "pan": track.pan,
            }
        )
        ops.append(
            {
                "op": "add_clip",
                "track_id": track_id,
                "clip_id": clip_id,
                "name": track.name,
                "start_beats": 0,
                "length_beats": length,
            }
        )
        for first in range(0, len(track.notes), NOTES_PER_OPERATION):
            chunk = track.notes[first : first + NOTES_PER_OPERATION]
            ops.append(
                {
                    "op": "add_notes",
                    "track_id": track_id,
                    "clip_id": clip_id,
                    "notes": [
                        {
                            "pitch": n.pitch,
                            "start": n.start,
                            "duration": n.duration,
                            "velocity": max(1, n.velocity),
                        }
                        for n in chunk
                    ],
                }
            )
    return ops


def _bar(time_signature: str) -> float:
    numerator, denominator = signature(time_signature)
    return numerator * 4 / denominator
