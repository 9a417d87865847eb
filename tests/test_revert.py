"""Revert one actor's changes (``POST /api/projects/{id}/revert``, ``music/revert.py``):
an agent's edits between two versions undone as one forward update, with people's
edits interleaved kept, live to a connected editor, told in the history and in the
lineage."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.live import YClient, log_document, project_events, running_server
from tests.support import eventually
from tests.test_auth import AUTH, bearer, token

Call = Callable[..., Awaitable[httpx.Response]]
ANA, BEN, VIC = token("ana"), token("ben"), token("vic")
AGENT = token("audio-agent", agent="audio-agent")


@contextlib.asynccontextmanager
async def _project(
    database_url: str, members: dict[str, str]
) -> AsyncIterator[tuple[str, Call, str]]:
    """A server with tokens, a caller, and ana's project with ``members`` granted."""
    async with (
        running_server(database_url, auth=AUTH) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):

        async def call(who: str, method: str, path: str, body: Any = None) -> httpx.Response:
            return await http.request(method, path, json=body, headers=bearer(who))

        project = (await call(ANA, "POST", "/api/projects", {"name": "Song"})).json()["id"]
        for member, role in members.items():
            body = {"member": member, "role": role}
            granted = await call(ANA, "POST", f"/api/projects/{project}/members", body)
            assert granted.status_code == 201, granted.text
        yield address, call, project


async def _edit(call: Call, project: str, who: str, *operations: dict[str, Any]) -> int:
    response = await call(
        who, "POST", f"/api/projects/{project}/edits", {"operations": list(operations)}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


async def _interleaved(call: Call, project: str) -> tuple[int, int]:
    """People and an agent editing by turns; the versions of the agent's first edit's
    range (from the edit before it to its last)."""
    start = await _edit(
        call, project, ANA, {"op": "add_track", "track_id": "drums", "name": "Drums"}
    )
    await _edit(call, project, AGENT, {"op": "set_meta", "fields": {"tempo": 140}})
    await _edit(call, project, AGENT, {"op": "add_track", "track_id": "pad", "name": "AI pad"})
    await _edit(
        call, project, BEN, {"op": "update_track", "track_id": "drums", "fields": {"name": "Kit"}}
    )
    await _edit(
        call,
        project,
        AGENT,
        {"op": "update_track", "track_id": "drums", "fields": {"volume_db": -12}},
    )
    await _edit(call, project, BEN, {"op": "add_track", "track_id": "bass", "name": "Bass"})
    end = await _edit(
        call,
        project,
        AGENT,
        {"op": "update_track", "track_id": "bass", "fields": {"name": "AI bass"}},
    )
    await _edit(
        call, project, BEN, {"op": "update_track", "track_id": "bass", "fields": {"pan": 0.5}}
    )
    return start, end


async def _refusals(call: Call, project: str) -> None:
    path = f"/api/projects/{project}/revert"
    refused = await call(VIC, "POST", path, {"actor": "audio-agent"})
    assert refused.status_code == 403, refused.text
    nothing = await call(ANA, "POST", path, {"actor": "zoe", "from_version": 1})
    assert nothing.status_code == 422, nothing.text
    assert "no document changes by zoe" in nothing.json()["message"]
    beyond = await call(ANA, "POST", path, {"actor": "ana", "to_version": 999})
    assert beyond.status_code == 404, beyond.text
    both = await call(ANA, "POST", path, {"actor": "ana", "agent": "x"})
    assert both.status_code == 422, both.text


async def test_an_agents_changes_are_reverted_and_the_peoples_kept(database_url: str) -> None:
    members = {"ben": "editor", "audio-agent": "editor", "vic": "viewer"}
    async with _project(database_url, members) as (address, call, project):
        start, end = await _interleaved(call, project)
        watcher = YClient(address, project, token=ANA)
        await watcher.connect()
        await watcher.wait_synced()
        await _refusals(call, project)

        reverted = await call(
            ANA,
            "POST",
            f"/api/projects/{project}/revert",
            {"actor": "audio-agent", "from_version": start, "to_version": end},
        )
        assert reverted.status_code == 200, reverted.text
        done = reverted.json()
        assert (done["from_version"], done["to_version"], done["changes"]) == (start, end, 4)

        logged = await log_document(database_url, project)
        assert logged["meta"]["tempo"] == 120.0  # the agent's tempo undone
        assert set(logged["tracks"]) == {"drums", "bass"}  # its track removed
        assert logged["track_order"] == ["drums", "bass"]
        drums, bass = logged["tracks"]["drums"], logged["tracks"]["bass"]
        assert (drums["name"], drums["volume_db"]) == ("Kit", 0.0)  # ben's name kept
        assert (bass["name"], bass["pan"]) == ("Bass", 0.5)  # ben's values back and kept
        await eventually(lambda: watcher.json() == logged, 10, "the editor missed the revert")
        await watcher.disconnect()
        await _told(call, project, done, f"versions {start} and {end}")


async def _told(call: Call, project: str, done: dict[str, Any], between: str) -> None:
    """The history's sentence and the lineage's edges to each undone change."""

    async def newest() -> dict[str, Any] | None:
        response = await call(ANA, "GET", f"/api/projects/{project}/history?limit=1")
        entries = response.json().get("entries", []) if response.status_code == 200 else []
        return entries[0] if entries and entries[0]["version"] == done["version"] else None

    await eventually(newest, 15, "the history does not show the revert")
    entry = await newest()
    assert entry is not None
    assert entry["summary"][0] == f"reverted 4 changes by audio-agent made between {between}"

    async def linked() -> bool:
        path = f"/api/daids/{done['daid']}/lineage?direction=ancestors&depth=1"
        response = await call(ANA, "GET", path)
        if response.status_code != 200:
            return False
        relations = [e["relation"] for e in response.json()["edges"]]
        return relations.count("reverts") == 4 and "previous_version" in relations

    await eventually(linked, 15, "the revert's lineage does not name what it undid")


async def test_a_later_change_of_the_same_value_is_kept_and_the_newest_edit_reverts(
    database_url: str,
) -> None:
    """Someone changed the value after the actor: the revert keeps that change. Then the
    actor's newest edit (the current version) is reverted on its own."""
    async with _project(database_url, {"ben": "editor", "audio-agent": "editor"}) as (
        _,
        call,
        project,
    ):
        for _ in range(3):  # several times: who wins a tie between two writers varies
            first = await _edit(call, project, AGENT, {"op": "set_meta", "fields": {"tempo": 140}})
            await _edit(call, project, BEN, {"op": "set_meta", "fields": {"tempo": 100}})
            reverted = await call(
                ANA,
                "POST",
                f"/api/projects/{project}/revert",
                {"actor": "audio-agent", "from_version": first, "to_version": first},
            )
            assert reverted.status_code == 200, reverted.text
            logged = await log_document(database_url, project)
            assert logged["meta"]["tempo"] == 100.0  # ben's later tempo stays
        newest = await _edit(call, project, AGENT, {"op": "set_meta", "fields": {"key": "Am"}})
        undo = await call(
            ANA,
            "POST",
            f"/api/projects/{project}/revert",
            {"actor": "audio-agent", "from_version": newest},
        )
        assert undo.status_code == 200, undo.text
        assert "key" not in (await log_document(database_url, project))["meta"]
        events = await project_events(database_url, project)
        (last,) = [e for e in events if e.daid == undo.json()["daid"]]
        assert last.data["undone"] == [e.daid for e in events if e.stream_version == newest]
