"""The project document as a Standard MIDI File (type 1), with mido; no I/O (reading
one is :mod:`music.midi_import`).

What the export writes, and why (docs/interchange.md):

- 480 ticks per beat; one conductor track first (the project's name, its tempo, its
  time signature), then one MIDI track per project track in display order
  (``track_order``, then any track the order misses, by id), each named after it, with
  its volume (CC 7) and pan (CC 10) at tick 0;
- notes placed at their clip's start plus their own start, cut at the clip's end (a
  DAW plays a clip's notes only inside it); notes that are not numbers in range are
  left out, not guessed;
- drum tracks (``kind: drums``) on channel 10, the others on channels 1-9 and 11-16 in
  turn;
- what is heard: tracks muted, or not soloed while another track is, are left out unless
  ``include_silent``; then they are written too, each marked with a text event
  ``collab: muted`` (MIDI has no mute flag), so that nothing of the document is lost.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import mido

TICKS_PER_BEAT: Final = 480
DRUM_CHANNEL: Final = 9  # channel 10, counted from 1
MELODIC_CHANNELS: Final = tuple(c for c in range(16) if c != DRUM_CHANNEL)
MUTED_MARK: Final = "collab: muted"
#: the tempi a MIDI file can hold: set_tempo is at most 0xFFFFFF microseconds per beat
SLOWEST_BPM: Final = 60e6 / 0xFFFFFF
#: the largest tick a variable-length quantity holds (four bytes)
LAST_TICK: Final = 0x0FFFFFFF
_DENOMINATORS: Final = frozenset({1, 2, 4, 8, 16, 32, 64})


@dataclass(frozen=True, slots=True)
class Exported:
    data: bytes
    tracks: int
    notes: int
    left_out: tuple[str, ...]
    """ids of silent tracks not written"""


def export(document: Mapping[str, Any], *, include_silent: bool = False) -> Exported:
    """The document (its JSON view, ``music.document.to_json``) as MIDI file bytes."""
    meta = _mapping(document.get("meta"))
    tracks = _mapping(document.get("tracks"))
    ordered = _display_order(document.get("track_order"), tracks)
    soloed = any(_mapping(tracks[t]).get("solo") is True for t in ordered)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(_conductor(meta))
    left_out: list[str] = []
    notes = 0
    melodic = 0
    for track_id in ordered:
        track = _mapping(tracks[track_id])
        silent = track.get("mute") is True or (soloed and track.get("solo") is not True)
        if silent and not include_silent:
            left_out.append(track_id)
            continue
        if track.get("kind") == "drums":
            channel = DRUM_CHANNEL
        else:
            channel = MELODIC_CHANNELS[melodic % len(MELODIC_CHANNELS)]
            melodic += 1
        written, count = _track(track_id, track, channel, silent=silent)
        midi.tracks.append(written)
        notes += count
    out = io.BytesIO()
    midi.save(file=out)
    return Exported(out.getvalue(), len(midi.tracks) - 1, notes, tuple(left_out))


def _conductor(meta: Mapping[str, Any]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=_text(meta.get("name")) or "collab", time=0))
    tempo = _number(meta.get("tempo"))
    bpm = tempo if tempo is not None and SLOWEST_BPM <= tempo <= 1000 else 120.0
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    numerator, denominator = signature(meta.get("time_signature"))
    track.append(
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0)
    )
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def signature(value: object) -> tuple[int, int]:
    if isinstance(value, str):
        top, _, bottom = value.partition("/")
        if top.isdigit() and bottom.isdigit():
            numerator, denominator = int(top), int(bottom)
            if 1 <= numerator <= 255 and denominator in _DENOMINATORS:
                return numerator, denominator
    return 4, 4


def _track(
    track_id: str, track: Mapping[str, Any], channel: int, *, silent: bool
) -> tuple[mido.MidiTrack, int]:
    # (tick, order, message): note offs before note ons at one tick, so that a note
    # repeated back to back is not cut by its predecessor's end
    events: list[tuple[int, int, mido.Message]] = []
    for value in _mapping(track.get("clips")).values():
        clip = _mapping(value)
        start = _number(clip.get("start_beats"))
        length = _number(clip.get("length_beats"))
        if start is None or length is None or start < 0 or length <= 0:
            continue
        notes = clip.get("notes")
        for note in notes if isinstance(notes, list) else []:
            placed = _note(_mapping(note), start, length)
            if placed is None:
                continue
            on, off, pitch, velocity = placed
            events.append(
                (on, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
            )
            events.append(
                (off, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0))
            )
    events.sort(key=lambda e: (e[0], e[1]))
    written = mido.MidiTrack()
    written.append(mido.MetaMessage("track_name", name=_text(track.get("name")) or track_id))
    instrument = _text(track.get("instrument"))
    if instrument:
        written.append(mido.MetaMessage("instrument_name", name=instrument))
    if silent:
        written.append(mido.MetaMessage("text", text=MUTED_MARK))
    written.append(
        mido.Message(
            "control_change", channel=channel, control=7, value=_volume(track.get("volume_db"))
        )
    )
    written.append(
        mido.Message("control_change", channel=channel, control=10, value=_pan(track.get("pan")))
    )
    now = 0
    for tick, _, message in events:
        written.append(message.copy(time=tick - now))
        now = tick
    written.append(mido.MetaMessage("end_of_track", time=0))
    return written, len(events) // 2


def _note(
    note: Mapping[str, Any], clip_start: float, clip_length: float
) -> tuple[int, int, int, int] | None:
    pitch = _number(note.get("pitch"))
    start = _number(note.get("start"))
    duration = _number(note.get("duration"))
    velocity = _number(note.get("velocity"))
    if pitch is None or start is None or duration is None:
        return None
    if not (0 <= pitch <= 127 and pitch == int(pitch)) or start < 0 or duration <= 0:
        return None
    if start >= clip_length:
        return None
    end = min(start + duration, clip_length)
    on = round((clip_start + start) * TICKS_PER_BEAT)
    off = max(on + 1, round((clip_start + end) * TICKS_PER_BEAT))
    if off > LAST_TICK:
        return None  # past what a MIDI file can place (about 559,000 beats)
    level = 100 if velocity is None else min(127, max(1, round(velocity)))
    return on, off, int(pitch), level


def _volume(value: object) -> int:
    """CC 7 from decibels: the usual curve, gain = 40·log10(value / 127)."""
    db = _number(value)
    if db is None:
        return 100
    return min(127, max(0, round(127 * 10 ** (max(-144.0, min(24.0, db)) / 40))))


def _pan(value: object) -> int:
    pan = _number(value)
    if pan is None:
        return 64
    return min(127, max(0, round(64 + max(-1.0, min(1.0, pan)) * 63.5)))


def _display_order(order: object, tracks: Mapping[str, Any]) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for item in order if isinstance(order, list) else []:
        if isinstance(item, str) and item in tracks and item not in seen:
            seen.add(item)
            ids.append(item)
    ids.extend(sorted(t for t in tracks if t not in seen))
    return ids


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: object) -> str:
    # MIDI text is Latin-1 in mido; anything else is replaced rather than refused
    return value.encode("latin-1", "replace").decode("latin-1") if isinstance(value, str) else ""
