"""What preparing a live update for the log costs: ``Appender._prepare`` of ``doc.updated``
events in requests of 10, as the group commit hands them over (validation, canonical
JSON, the DAID against the stream's tip, both hashes). No database: process CPU time
per event.

    .venv/bin/python bench/prepare.py [--events 20000] [--runs 5]

Prints each run and the median, in microseconds per event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import machine_line
from events import EventMetadata, NewEvent
from events.models import DocUpdated
from events.postgres.appender import Appender
from events.store import ANY, AppendRequest

META = EventMetadata(actor="bench", agent_id="collab-server", client_id=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    appender = Appender(cast(Any, None), append_attempts=1, before_commit=None)  # no I/O here
    events = [
        NewEvent(DocUpdated(update=bytes(range(24)), client_id=7), META) for _ in range(args.events)
    ]
    print(machine_line(), flush=True)
    runs = []
    for run in range(1, args.runs + 1):
        appender._tips.clear()  # every run starts from streams it has not seen
        began = time.process_time()
        for start in range(0, len(events), 10):
            appender._prepare(AppendRequest("project-bench", events[start : start + 10], ANY))
        runs.append((time.process_time() - began) / len(events) * 1e6)
        print(f"  prepare, run {run}: {runs[-1]:.1f} us/event", flush=True)
    print(f"prepare: median {statistics.median(runs):.1f} us/event", flush=True)


if __name__ == "__main__":
    main()
