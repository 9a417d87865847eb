"""A log written before the live path checked updates: events no fold could handle.

The log is append-only, so what it already holds stays: a Yjs update that decodes but
cannot be applied (``tests/poison.py``), strings with NUL characters, NaN and infinity.
Appended here straight through the store, as such a log holds them; then the read
models must fold on past them (quarantining the poison update, with a record /ready,
``collab projections status``, the metrics and a rebuild show), reads with
``?min_position=`` must answer, the rebuilt read models must equal the live ones, and a
real pycrdt client must get the project's document without the poison update (also when
another writer appends it while the room is loaded).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pycrdt

from collab.runtime.config import ReadSettings
from events import EventMetadata, NewEvent
from events.models import DocUpdated, ProjectCreated, project_stream
from events.postgres import PostgresEventStore
from music import document
from projections.projects import TABLES
from tests.live import (
    YClient,
    create_project,
    project_events,
    projections_running,
    running_server,
    synced_clients,
)
from tests.poison import find_poison
from tests.support import eventually, run_collab, timeout

READ = ReadSettings(state_every=10, projection_wait=timeout(30))
META = EventMetadata(actor="old-client")


def _update(change: Callable[[pycrdt.Doc[Any]], None]) -> bytes:
    doc = document.new_document()
    return document.transact(doc, lambda: change(doc))


def _nul(doc: pycrdt.Doc[Any]) -> None:
    # What `POST /edits` with a track named "a\u0000b" wrote before it refused NUL.
    doc.get(document.TRACKS, type=pycrdt.Map)["t\x00nul"] = pycrdt.Map(
        {"name": "a\x00b", "kind": "audio", "clips": pycrdt.Map({"c\x00": pycrdt.Map({})})}
    )
    doc.get(document.TRACK_ORDER, type=pycrdt.Array).append("t\x00nul")
    doc.get(document.META, type=pycrdt.Map)["key"] = "C\x00 minor"


def _nan(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.META, type=pycrdt.Map)["tempo"] = math.nan
    doc.get(document.TRACKS, type=pycrdt.Map)["tnan"] = pycrdt.Map(
        {
            "name": "Infinite",
            "volume_db": math.inf,
            "pan": -math.inf,
            "automation": pycrdt.Map(
                {"volume_db": pycrdt.Array([pycrdt.Map({"time": 0.0, "value": math.nan})])}
            ),
        }
    )


def _take(number: int, doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.META, type=pycrdt.Map)[f"take {number}"] = float(number)


def _later(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.TRACKS, type=pycrdt.Map)["later"] = pycrdt.Map({"name": "Later"})
    doc.get(document.TRACK_ORDER, type=pycrdt.Array).append("later")


async def _append_old_log(database_url: str) -> tuple[str, dict[str, int]]:
    """A project whose log holds such events, appended with the store's own API (no live
    path): its id, and the events' positions by name."""
    project_id = await _new_project(database_url)
    poison = find_poison(1)
    updates = [
        *((f"base {i}", u) for i, u in enumerate(poison.base)),
        ("poison", poison.update),
        ("nul", _update(_nul)),
        ("nan", _update(_nan)),
        # enough versions after the poison for a stored state (every 10), which later
        # loads of the document start from
        *((f"take {i}", _update(functools.partial(_take, i))) for i in range(10)),
        ("later", _update(_later)),
    ]
    return project_id, await _append(database_url, project_id, updates)


async def _new_project(database_url: str) -> str:
    """A project with no document content yet (the poison is refused on top of its base
    updates alone)."""
    project_id = str(uuid.uuid4())
    await _append(
        database_url, project_id, [("created", None)], ProjectCreated(name="Old log", owner="o")
    )
    return project_id


async def _append(
    database_url: str,
    project_id: str,
    updates: list[tuple[str, bytes | None]],
    created: ProjectCreated | None = None,
) -> dict[str, int]:
    """Each update appended as a doc.updated event by the store's own API (or ``created``);
    their positions by name."""
    store = await PostgresEventStore.connect(database_url, min_size=1, max_size=1)
    try:
        positions = {}
        for name, update in updates:
            event = created if update is None else DocUpdated(update=update)
            assert event is not None
            result = await store.append(project_stream(project_id), [NewEvent(event, META)])
            positions[name] = result.position
        return positions
    finally:
        await store.close()


async def _document_without(database_url: str, project_id: str, position: int) -> str:
    """The project's document from its log, applied update by update, without the one at
    ``position``; as JSON text (NaN stays NaN)."""
    doc = document.new_document()
    for event in await project_events(database_url, project_id):
        if event.payload and event.position != position:
            doc.apply_update(event.payload)
    return json.dumps(document.to_json(doc), sort_keys=True)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


async def _dump(database_url: str) -> dict[str, list[Any]]:
    """The projects read model and its quarantine (without times), row by row."""
    conn = await asyncpg.connect(database_url)
    try:
        tables: dict[str, list[Any]] = {}
        for table in TABLES:
            if table == "project_states":
                continue
            rows = await conn.fetch(f"select to_jsonb(t)::text as r from {table} t order by r")
            tables[table] = [json.loads(row["r"]) for row in rows]
        states = []
        for row in await conn.fetch(
            "select project_id, version, state from project_states order by project_id, version"
        ):
            doc = document.new_document()
            doc.apply_update(row["state"])
            states.append((str(row["project_id"]), row["version"], document.to_json(doc)))
        tables["project_states"] = [json.dumps(s, sort_keys=True) for s in states]
        rows = await conn.fetch(
            "select projection, position, stream_id, event_type, reason"
            " from projection_quarantine order by projection, position"
        )
        tables["quarantine"] = [tuple(row.values()) for row in rows]
        return tables
    finally:
        await conn.close()


def _collab(database_url: str, *args: str) -> Any:
    return run_collab(database_url, *args, COLLAB_STATE_EVERY=str(READ.state_every))


async def test_an_old_log_with_poison_nul_and_nan_folds_on_and_loads(database_url):
    async with (
        running_server(database_url, read=READ) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=timeout(60)) as http,
    ):
        await projections_running(address)
        project, at = await _append_old_log(database_url)
        await _reads_answer(http, project, at)
        reason = await _quarantine_is_reported(http, database_url, project, at)
        await _room_loads_without_the_poison(http, address, database_url, project, at)

    incremental = await _dump(database_url)
    stream = project_stream(project)
    assert incremental["quarantine"] == [("projects", at["poison"], stream, "doc.updated", reason)]
    summaries = {row["position"]: row["summary"] for row in incremental["project_history"]}
    assert summaries[at["poison"]] == ["update could not be applied; ignored"]

    rebuilt = await asyncio.to_thread(_collab, database_url, "projections", "rebuild", "projects")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "projects: 1 events quarantined (they cannot be folded)" in rebuilt.stdout
    assert f"  quarantined: position {at['poison']}, doc.updated in {stream}" in rebuilt.stdout
    assert await _dump(database_url) == incremental

    parallel = await asyncio.to_thread(
        _collab, database_url, "projections", "rebuild", "projects", "--jobs", "2"
    )
    assert parallel.returncode == 0, parallel.stderr
    assert "projects: 1 events quarantined" in parallel.stdout
    assert await _dump(database_url) == incremental


async def _reads_answer(http: httpx.AsyncClient, project: str, at: dict[str, int]) -> None:
    """The projection folded past all of it: the later event is in the read model, NUL
    characters as U+FFFD, numbers JSON has no form for as null."""
    view = await http.get(f"/api/projects/{project}", params={"min_position": at["later"]})
    assert view.status_code == 200, view.text
    tracks = {t["id"]: t for t in view.json()["tracks"]}
    assert tracks["later"]["name"] == "Later"
    assert tracks["t\ufffdnul"]["name"] == "a\ufffdb"
    assert tracks["t\ufffdnul"]["clips"][0]["id"] == "c\ufffd"
    assert tracks["tnan"]["mixer"]["volume_db"] is None
    assert tracks["tnan"]["mixer"]["pan"] is None
    assert view.json()["meta"]["tempo"] is None
    assert view.json()["meta"]["key"] == "C\ufffd minor"
    listed = await http.get("/api/projects", params={"min_position": at["later"]})
    assert listed.status_code == 200, listed.text
    (row,) = [p for p in listed.json()["projects"] if p["id"] == project]
    assert row["tempo"] is None


async def _quarantine_is_reported(
    http: httpx.AsyncClient, database_url: str, project: str, at: dict[str, int]
) -> str:
    """/ready stays 200 and names the quarantined event (the NUL and NaN events were
    folded, not set aside), and so does ``collab projections status``; its reason."""
    ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    projects = ready.json()["projections"]["projects"]
    assert projects["state"] == "running"
    assert projects["quarantined"]["count"] == 1
    (event,) = projects["quarantined"]["events"]
    stream = project_stream(project)
    assert (event["position"], event["stream"], event["type"]) == (
        at["poison"],
        stream,
        "doc.updated",
    )
    assert event["reason"].startswith("update cannot be applied: RuntimeError: Cannot apply")
    status = await asyncio.to_thread(_collab, database_url, "projections", "status")
    assert status.returncode == 0, status.stderr
    assert ", running, 1 events quarantined" in status.stdout
    assert (
        f"  quarantined: position {at['poison']}, doc.updated in {stream}:"
        " update cannot be applied: RuntimeError" in status.stdout
    )
    metrics = (await http.get("/metrics")).text
    assert _metric(metrics, 'collab_projection_quarantined_events{projection="projects"}') == 1
    return str(event["reason"])


async def _room_loads_without_the_poison(
    http: httpx.AsyncClient, address: str, database_url: str, project: str, at: dict[str, int]
) -> None:
    """A real client gets the document the log holds, without the poison update; edits
    go on, and reads of them answer."""
    client = YClient(address, project)
    await client.connect()
    await client.wait_synced()
    expected = await _document_without(database_url, project, at["poison"])
    assert json.dumps(client.json(), sort_keys=True) == expected
    assert client.json()[document.TRACKS]["t\x00nul"]["name"] == "a\x00b"
    metrics = (await http.get("/metrics")).text
    assert _metric(metrics, "collab_room_load_skipped_updates_total") == 1

    edit = await http.post(
        f"/api/projects/{project}/edits",
        json={"operations": [{"op": "set_meta", "fields": {"key": "E"}}]},
    )
    assert edit.status_code == 200, edit.text
    await eventually(
        lambda: client.json()[document.META].get("key") == "E", 10, "edit not received"
    )
    after = await http.get(
        f"/api/projects/{project}", params={"min_position": edit.json()["position"]}
    )
    assert after.status_code == 200, after.text
    assert after.json()["meta"]["key"] == "E"
    await client.disconnect()


async def test_a_poison_update_another_writer_appends_is_skipped_by_a_loaded_room(database_url):
    project = await _new_project(database_url)
    poison = find_poison(1)
    async with (
        running_server(database_url, read=READ) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=timeout(60)) as http,
    ):
        client = YClient(address, project)
        await client.connect()
        await client.wait_synced()
        # Another writer (a script, an old node) appends behind the room's back...
        at = await _append(
            database_url,
            project,
            [
                *((f"base {i}", u) for i, u in enumerate(poison.base)),
                ("poison", poison.update),
                ("later", _update(_later)),
            ],
        )
        # ...which the room learns of at its next commit, and fills in from the log.
        client.doc.get(document.META, type=pycrdt.Map)["key"] = "live"
        await eventually(
            lambda: "later" in client.json()[document.TRACKS], 30, "the gap was not filled"
        )
        expected = await _document_without(database_url, project, at["poison"])
        assert json.dumps(client.json(), sort_keys=True) == expected
        metrics = (await http.get("/metrics")).text
        assert _metric(metrics, "collab_room_load_skipped_updates_total") == 1
        await client.disconnect()


async def test_anything_an_editor_puts_into_the_track_order_is_folded(database_url):
    """A map, a number and an unknown id in ``track_order`` (a CRDT editor may write
    them; the fuzzing campaign did): the read model lists the real tracks, in order,
    and sets nothing aside."""
    async with running_server(database_url, read=READ) as address:
        await projections_running(address)
        project = await create_project(address)
        (editor,) = await synced_clients(address, project, 1)
        tracks = editor.doc.get(document.TRACKS, type=pycrdt.Map)
        order = editor.doc.get(document.TRACK_ORDER, type=pycrdt.Array)
        with editor.doc.transaction():
            tracks["drums"] = pycrdt.Map({"name": "Drums"})
            tracks["bass"] = pycrdt.Map({"name": "Bass"})
            order.extend(["bass"])
            order.append(pycrdt.Map({"not": "an id"}))
            order.extend([7.0, "ghost", "drums"])
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:

            async def listed() -> bool:
                view = await http.get(f"/api/projects/{project}")
                names = [t["name"] for t in view.json().get("tracks", [])]
                return view.status_code == 200 and names == ["Bass", "Drums"]

            await eventually(listed, 20, "the read model did not show the two tracks")
            ready = (await http.get("/ready")).json()
            assert "quarantined" not in ready["projections"]["projects"], ready
        await editor.disconnect()
