"""The web studio in headless Chromium: first load, and a large project live.

    .venv/bin/python bench/studio.py [--runs 3] [--tracks 64 --clips 50 --notes 100]

Against ``collab serve`` as its own process (its own PostgreSQL database, a token
secret given in the environment), driven by Playwright on Debian's Chromium:

  first load   a fresh browser context (empty cache) opens ``/#token=…`` and waits for
               the project list; the figures are the time from navigation start to
               the list drawn, the page's load event, and the bytes transferred
               (compressed, from Resource Timing), per run
  large        a project of ``--tracks`` tracks x ``--clips`` clips x ``--notes`` notes
               (written through ``POST /edits``, one request per track) opened in the
               editor: time from navigation to every track row drawn; then, while a
               pycrdt client makes 10 edits/s for 10 s (tempo, a clip moved, a track
               renamed), the page's frame intervals (requestAnimationFrame), its long
               tasks (PerformanceObserver), and the time from each tempo edit sent to
               its value shown in the page (both clocks are this machine's)

Each figure is printed per run and as the median over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pycrdt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    collab_server,
    fresh_database,
    machine_line,
    percentile,
    postgres_server,
)
from collab.access.issuing import issue  # noqa: E402
from music import document  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.live import YClient  # noqa: E402

SECRET = "bench-studio-secret-0123456789abcdef"  # noqa: S105 - the benchmark's own

#: collects frame intervals and long tasks in the page until told to stop
PROBE = """() => {
  window.__frames = [];
  window.__long = [];
  let last = performance.now();
  const tick = (now) => { window.__frames.push(now - last); last = now;
    if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
  window.__shown = [];
  new MutationObserver(() => {
    const tempo = document.querySelector("input.tempo");
    const at = performance.timeOrigin + performance.now();
    if (tempo) window.__shown.push([Number(tempo.value), at]);
  }).observe(document.querySelector(".transport"), { childList: true, subtree: true });
}"""


async def first_load(browser: Any, base: str, token: str) -> dict[str, float]:
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{base}/#token={token}")
        await page.wait_for_selector("table.projects tbody tr", timeout=30_000)
        drawn = await page.evaluate("() => performance.now()")
        timing = await page.evaluate(
            """() => {
              const nav = performance.getEntriesByType("navigation")[0];
              const res = performance.getEntriesByType("resource");
              const assets = res.filter((r) => r.name.includes("/studio/"));
              return { load: nav.loadEventEnd, bytes: nav.transferSize
                + assets.reduce((sum, r) => sum + r.transferSize, 0) };
            }"""
        )
        return {"drawn_ms": drawn, "load_ms": timing["load"], "bytes": timing["bytes"]}
    finally:
        await context.close()


async def fill(base: str, token: str, tracks: int, clips: int, notes: int) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        created = await http.post("/api/projects", json={"name": "Large", "tempo": 120})
        created.raise_for_status()
        project = str(created.json()["id"])
        rng = random.Random(7)
        for t in range(tracks):
            operations: list[dict[str, Any]] = [
                {"op": "add_track", "track_id": f"t{t}", "name": f"Track {t}", "kind": "midi"}
            ]
            for c in range(clips):
                operations.append(
                    {
                        "op": "add_clip",
                        "track_id": f"t{t}",
                        "clip_id": f"c{c}",
                        "name": f"C{c}",
                        "start_beats": c * 4,
                        "length_beats": 4,
                    }
                )
                operations.append(
                    {
                        "op": "add_notes",
                        "track_id": f"t{t}",
                        "clip_id": f"c{c}",
                        "notes": [
                            {
                                "pitch": rng.randrange(36, 84),
                                "start": (n % 16) / 4,
                                "duration": 0.25,
                                "velocity": 90,
                            }
                            for n in range(notes)
                        ],
                    }
                )
            response = await http.post(
                f"/api/projects/{project}/edits", json={"operations": operations}
            )
            response.raise_for_status()
        return project


async def edits(
    address: str, project: str, token: str, seconds: float
) -> list[tuple[float, float]]:
    """Edit for ``seconds``; returns (tempo written, wall-clock ms) of every tempo edit,
    each tempo value written once."""
    client = YClient(address, project, token=token)
    await client.connect()
    await client.wait_synced(120)
    meta = client.doc.get(document.META, type=pycrdt.Map)
    tracks = client.doc.get(document.TRACKS, type=pycrdt.Map)
    rng = random.Random(3)
    sent = 0
    tempos: list[tuple[float, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kind = sent % 3
        if kind == 0:
            tempo = round(60 + sent * 0.1, 1)
            tempos.append((tempo, time.time() * 1000))
            meta["tempo"] = tempo
        elif kind == 1:
            track = tracks[f"t{rng.randrange(len(tracks))}"]
            clip = track["clips"][f"c{rng.randrange(len(track['clips']))}"]
            clip["start_beats"] = float(rng.randrange(0, 400))
        else:
            tracks[f"t{rng.randrange(len(tracks))}"]["name"] = f"Renamed {sent}"
        sent += 1
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    await client.disconnect()
    return tempos


async def large(browser: Any, base: str, token: str, project: str, tracks: int) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    try:
        await page.goto(f"{base}/#token={token}")
        await page.wait_for_selector("header.top", timeout=30_000)
        started = await page.evaluate("() => performance.now()")
        await page.goto(f"{base}/#/p/{project}/editor")
        await page.wait_for_function(
            f"() => document.querySelectorAll('.lanes .track').length === {tracks}",
            timeout=120_000,
        )
        rendered = await page.evaluate("() => performance.now()") - started
        await page.evaluate(PROBE)
        address = base.removeprefix("http://")
        tempos = await edits(address, project, token, 10.0)
        frames: list[float] = await page.evaluate(
            "() => { window.__stop = true; return window.__frames; }"
        )
        long_tasks: list[float] = await page.evaluate("() => window.__long")
        shown: list[list[float]] = await page.evaluate("() => window.__shown")
        first_shown: dict[float, float] = {}
        for value, at in shown:
            first_shown.setdefault(round(value, 1), at)
        delays = [first_shown[v] - at for v, at in tempos if v in first_shown]
        return {
            "render_ms": rendered,
            "edits": len(tempos) * 3,
            "tempo_shown": len(delays) / max(1, len(tempos)),
            "show_p50_ms": percentile(delays, 0.5) if delays else float("nan"),
            "show_p95_ms": percentile(delays, 0.95) if delays else float("nan"),
            "frame_p50_ms": percentile(frames, 0.5),
            "frame_p95_ms": percentile(frames, 0.95),
            "frame_max_ms": max(frames),
            "long_tasks": len(long_tasks),
            "long_task_max_ms": max(long_tasks, default=0.0),
        }
    finally:
        await context.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--notes", type=int, default=100)
    args = parser.parse_args()
    print(machine_line(f" studio --runs {args.runs} {args.tracks}x{args.clips}x{args.notes}"))
    token = issue(SECRET.encode(), user="bench", roles=["admin"], ttl=6 * 3600)
    loads: list[dict[str, float]] = []
    bigs: list[dict[str, float]] = []
    with postgres_server() as server_url:
        async with (
            fresh_database(server_url) as database_url,
            collab_server(database_url, COLLAB_JWT_SECRET=SECRET) as (base, _),
            chromium() as browser,
        ):
            filled = time.monotonic()
            project = await fill(base, token, args.tracks, args.clips, args.notes)
            took = time.monotonic() - filled
            print(f"filled {args.tracks}x{args.clips}x{args.notes} in {took:.1f} s")
            for run in range(args.runs):
                load = await first_load(browser, base, token)
                loads.append(load)
                print(f"run {run + 1} first load: {_line(load)}")
                big = await large(browser, base, token, project, args.tracks)
                bigs.append(big)
                print(f"run {run + 1} large project: {_line(big)}")
    print("median first load: " + _line(_median(loads)))
    print("median large project: " + _line(_median(bigs)))


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def _line(row: dict[str, float]) -> str:
    return ", ".join(
        f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in row.items()
    )


if __name__ == "__main__":
    asyncio.run(main())
