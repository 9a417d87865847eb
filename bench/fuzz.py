"""Fuzzing campaign on the live socket: a million seeded frames against ``collab serve``.

    .venv/bin/python bench/fuzz.py --frames 1000000 --seed 1 [--seconds 3600] [--per-project 20000]
    .venv/bin/python bench/fuzz.py --seed 1 --show-unit 4711       # the frames of one unit

The campaign of ``tests/test_fuzz.py`` (``tests/fuzzing.py``), longer: one fuzzing
connection sends seeded units of frames (real updates, bit flips, poison updates, NUL
and NaN values, broken framing, bad awareness, oversized frames...) while an honest
pycrdt editor edits the same project; every ``--per-project`` frames a new project (and
honest editor) takes over, after the server, its log, the stored updates and the honest
editor of the one before are checked (see ``tests/fuzzing.py``). The server runs as its
own process on a fresh database of an embedded PostgreSQL (or ``DATABASE_URL``), with
its log at ``warning`` (kept in a temporary folder, whose path is printed).

Prints frames/s, closes by code, each kind's fate, and the findings; exits 1 when
there are findings. A server that dies is started again and the campaign goes on
(``--stop-on-crash`` ends it instead).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import fresh_database, machine_line, postgres_server  # noqa: E402
from tests.fuzz_frames import WEIGHTS, FrameGenerator  # noqa: E402
from tests.fuzzing import MAX_MESSAGE_BYTES, PER_PROJECT, campaign  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop sending after this")
    parser.add_argument(
        "--per-project", type=int, default=PER_PROJECT, help="frames before the next project"
    )
    parser.add_argument("--stop-on-crash", action="store_true")
    parser.add_argument("--skip", default="", help=f"kinds not to send, of: {','.join(WEIGHTS)}")
    parser.add_argument("--show-unit", type=int, help="print the frames of this unit and exit")
    return parser.parse_args()


def _show(seed: int, number: int, skip: frozenset[str]) -> None:
    generator = FrameGenerator(seed, max_message_bytes=MAX_MESSAGE_BYTES, skip=skip)
    for unit in generator:
        if unit.number == number:
            print(f"unit {number} of seed {seed}: {unit.kind}")
            for frame in unit.frames:
                print(f"  {'text' if isinstance(frame, str) else 'binary'}: {frame!r}")
            return


async def _run(arguments: argparse.Namespace, skip: frozenset[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="collab-fuzz-"))
    with postgres_server() as server_url:
        async with fresh_database(server_url, migrated=True) as database_url:
            report = await campaign(
                database_url,
                work,
                seed=arguments.seed,
                frames=arguments.frames,
                seconds=arguments.seconds,
                stop_on_crash=arguments.stop_on_crash,
                skip=skip,
                log_level="warning",
                per_project=arguments.per_project,
            )
    print(report.summary())
    print(f"server log: {work}")
    return 1 if report.findings else 0


def main() -> None:
    arguments = _arguments()
    skip = frozenset(k for k in arguments.skip.split(",") if k)
    if arguments.show_unit is not None:
        _show(arguments.seed, arguments.show_unit, skip)
        return
    print(machine_line(f", fuzz --frames {arguments.frames} --seed {arguments.seed}"))
    sys.exit(asyncio.run(_run(arguments, skip)))


if __name__ == "__main__":
    main()
