"""Seeded random edits of a project document in the layout of docs/document.md (for
property tests)."""

from __future__ import annotations

import random
from typing import Any

import pycrdt

from music import document


def _pick(rng: random.Random, keys: Any) -> Any:
    return rng.choice(sorted(keys))


def random_daw_edit(rng: random.Random, doc: pycrdt.Doc[Any]) -> None:  # noqa: PLR0915 - one branch per kind of edit
    """One transaction of a plausible DAW edit: tracks, mixer, clips, notes, effects,
    automation, sections, meta, reordering and removals."""
    meta = doc.get(document.META, type=pycrdt.Map)
    tracks = doc.get(document.TRACKS, type=pycrdt.Map)
    order = doc.get(document.TRACK_ORDER, type=pycrdt.Array)
    sections = doc.get(document.SECTIONS, type=pycrdt.Array)
    kind = rng.randrange(13)
    with doc.transaction():
        if kind == 0 or len(tracks) == 0:
            track_id = f"t{rng.randrange(10**6)}"
            tracks[track_id] = pycrdt.Map(
                {
                    "name": rng.choice(["Bass", "Drums", "Keys", "Vox"]) + str(rng.randrange(9)),
                    "kind": rng.choice(["audio", "midi", "drums"]),
                    "volume_db": 0.0,
                    "pan": 0.0,
                    "mute": False,
                    "clips": pycrdt.Map(),
                    "effects": pycrdt.Array(),
                    "automation": pycrdt.Map(),
                }
            )
            order.append(track_id)
            return
        track = tracks[_pick(rng, tracks.keys())]
        clips = track.get("clips")
        effects = track.get("effects")
        if kind == 1:
            meta["tempo"] = float(rng.randrange(60, 180))
        elif kind == 2:
            meta["key"] = rng.choice(["C major", "A minor", "F# minor"])
        elif kind == 3:
            track["volume_db"] = float(rng.randrange(-60, 6))
        elif kind == 4:
            track["mute"] = not track.get("mute", False)
        elif kind == 5 and isinstance(clips, pycrdt.Map):
            clip_id = f"c{rng.randrange(10**6)}"
            clips[clip_id] = pycrdt.Map(
                {
                    "name": f"Verse {rng.randrange(9)}",
                    "start_beats": float(rng.randrange(64)),
                    "length_beats": 4.0,
                    "notes": pycrdt.Array(),
                }
            )
        elif kind == 6 and isinstance(clips, pycrdt.Map) and len(clips) > 0:
            notes = clips[_pick(rng, clips.keys())].get("notes")
            if isinstance(notes, pycrdt.Array):
                for _ in range(rng.randrange(1, 4)):
                    notes.append(
                        pycrdt.Map(
                            {
                                "pitch": float(rng.randrange(128)),
                                "start": float(rng.randrange(16)),
                                "duration": 1.0,
                                "velocity": 100.0,
                            }
                        )
                    )
        elif kind == 7 and isinstance(clips, pycrdt.Map) and len(clips) > 0:
            notes = clips[_pick(rng, clips.keys())].get("notes")
            if isinstance(notes, pycrdt.Array) and len(notes) > 0:
                if rng.random() < 0.5:
                    del notes[rng.randrange(len(notes))]
                else:
                    notes[rng.randrange(len(notes))]["velocity"] = float(rng.randrange(1, 128))
        elif kind == 8 and isinstance(effects, pycrdt.Array):
            effects.append(
                pycrdt.Map(
                    {
                        "id": f"e{rng.randrange(10**6)}",
                        "type": rng.choice(["eq", "reverb", "compressor"]),
                        "enabled": True,
                        "params": pycrdt.Map({"mix": 0.5}),
                    }
                )
            )
        elif kind == 9 and isinstance(effects, pycrdt.Array) and len(effects) > 0:
            effect = effects[rng.randrange(len(effects))]
            params = effect.get("params")
            if isinstance(params, pycrdt.Map):
                params["mix"] = round(rng.random(), 2)
        elif kind == 10:
            automation = track.get("automation")
            if isinstance(automation, pycrdt.Map):
                if "volume_db" not in automation:
                    automation["volume_db"] = pycrdt.Array()
                automation["volume_db"].append(
                    pycrdt.Map({"time": float(rng.randrange(64)), "value": -6.0, "curve": "linear"})
                )
        elif kind == 11:
            if len(sections) > 0 and rng.random() < 0.3:
                del sections[rng.randrange(len(sections))]
            else:
                sections.append(
                    pycrdt.Map(
                        {
                            "name": rng.choice(["Intro", "Verse", "Chorus"]),
                            "start_beats": 0.0,
                            "length_beats": 16.0,
                        }
                    )
                )
        elif kind == 12:
            if rng.random() < 0.3 and len(order) > 1:
                moved = order[0]
                del order[0]
                order.append(moved)
            elif rng.random() < 0.2:
                track_id = _pick(rng, tracks.keys())
                del tracks[track_id]
                for index in reversed(range(len(order))):
                    if order[index] == track_id:
                        del order[index]
