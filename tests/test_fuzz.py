"""The live socket under a seeded fuzzing campaign (``tests/fuzzing.py`` lists what is
checked afterwards); ``bench/fuzz.py`` runs the same campaign a million frames long."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz_frames import WEIGHTS, FrameGenerator
from tests.fuzzing import MAX_MESSAGE_BYTES, campaign
from tests.support import timeout

FRAMES = 3_000
SEED = 20261202


def test_the_same_seed_draws_the_same_frames() -> None:
    first = FrameGenerator(SEED, max_message_bytes=MAX_MESSAGE_BYTES)
    second = FrameGenerator(SEED, max_message_bytes=MAX_MESSAGE_BYTES)
    units = [next(first) for _ in range(FRAMES)]
    assert units == [next(second) for _ in range(FRAMES)]
    # a bounded run draws every kind of frame
    assert {unit.kind for unit in units} == set(WEIGHTS)


@pytest.mark.slow
async def test_thousands_of_fuzzed_frames_break_nothing(database_url: str, tmp_path: Path) -> None:
    # two projects in turn, each checked after its share, as the long campaign does
    report = await campaign(
        database_url,
        tmp_path,
        seed=SEED,
        frames=FRAMES,
        seconds=timeout(120),
        per_project=FRAMES // 2,
    )
    if report.findings:
        pytest.fail(report.summary(), pytrace=False)
    assert report.tally.frames >= FRAMES, report.summary()
    assert report.projects == 2, report.summary()
