"""Forks: ``POST /api/projects/{id}/fork`` makes a new project of the caller's from a
version of another, its creation derived from that version's DAID (lineage and
PROV-JSON show the link); the source is unchanged."""

from __future__ import annotations

from typing import Any

import httpx

from collab.access.tokens import TokenSettings
from tests.live import log_document, running_server
from tests.support import eventually
from tests.test_auth import SECRET, bearer, token

AUTH = TokenSettings(secret=SECRET)


async def test_a_viewer_forks_an_old_version_and_owns_the_fork(database_url: str) -> None:
    ana, vic, zoe = token("ana"), token("vic"), token("zoe")
    async with (
        running_server(database_url, auth=AUTH) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):

        async def call(who: str, method: str, path: str, body: Any = None) -> httpx.Response:
            return await http.request(method, path, json=body, headers=bearer(who))

        created = await call(ana, "POST", "/api/projects", {"name": "Idea"})
        project = created.json()["id"]
        edits = f"/api/projects/{project}/edits"
        first = await call(
            ana, "POST", edits, {"operations": [{"op": "add_track", "track_id": "a", "name": "A"}]}
        )
        await call(
            ana, "POST", edits, {"operations": [{"op": "add_track", "track_id": "b", "name": "B"}]}
        )
        granted = await call(
            ana, "POST", f"/api/projects/{project}/members", {"member": "vic", "role": "viewer"}
        )
        assert granted.status_code == 201, granted.text
        version = first.json()["version"]

        refused = await call(zoe, "POST", f"/api/projects/{project}/fork", {"version": version})
        assert refused.status_code == 403, refused.text
        too_far = await call(vic, "POST", f"/api/projects/{project}/fork", {"version": 999})
        assert too_far.status_code == 404, too_far.text

        forked = await call(vic, "POST", f"/api/projects/{project}/fork", {"version": version})
        assert forked.status_code == 201, forked.text
        fork = forked.json()
        assert fork["source"]["project_id"] == project
        assert fork["source"]["version"] == version
        assert fork["source"]["daid"] == first.json()["daid"]

        fork_doc = await log_document(database_url, fork["id"])
        source_doc = await log_document(database_url, project)
        assert set(fork_doc["tracks"]) == {"a"}  # as of that version
        assert fork_doc["meta"]["name"] == "Idea (fork)"
        assert set(source_doc["tracks"]) == {"a", "b"}
        assert source_doc["meta"]["name"] == "Idea"

        async def owned() -> bool:
            view = await call(vic, "GET", f"/api/projects/{fork['id']}")
            return view.status_code == 200 and view.json()["owner"] == "vic"

        await eventually(owned, 15, "the fork is not vic's")
        # vic may edit the fork, not the source
        mine = await call(
            vic,
            "POST",
            f"/api/projects/{fork['id']}/edits",
            {"operations": [{"op": "set_meta", "fields": {"tempo": 90}}]},
        )
        assert mine.status_code == 200, mine.text

        lineage_path = f"/api/daids/{fork['daid']}/lineage?direction=ancestors&depth=5"

        async def linked() -> bool:
            lineage = await call(vic, "GET", lineage_path)
            if lineage.status_code != 200:
                return False
            edges = {(e["child"], e["parent"], e["relation"]) for e in lineage.json()["edges"]}
            return (fork["daid"], fork["source"]["daid"], "derived_from") in edges

        await eventually(linked, 15, "the fork's lineage does not reach its source")
        prov = (await call(vic, "GET", f"/api/daids/{fork['daid']}/prov")).json()
        derived = prov.get("wasDerivedFrom", {}).values()
        assert any(
            d.get("prov:generatedEntity") == fork["daid"]
            and d.get("prov:usedEntity") == fork["source"]["daid"]
            for d in derived
        ), prov.get("wasDerivedFrom")


async def test_a_project_file_may_only_derive_from_what_its_importer_reads(
    database_url: str,
) -> None:
    """An imported file names the version it came from as its parent: a stranger cannot
    hang their project on a private one (its lineage would lead into it)."""
    ana, zoe = token("ana"), token("zoe")
    async with (
        running_server(database_url, auth=AUTH) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        created = await http.post("/api/projects", json={"name": "Private"}, headers=bearer(ana))
        file = {
            "format": "collab-project/1",
            "project": {"id": "p", "name": "P", "version": 1, "daid": created.json()["daid"]},
            "document": {"meta": {"name": "Mine"}},
        }
        refused = await http.post("/api/imports/json", json=file, headers=bearer(zoe))
        assert refused.status_code == 403, refused.text
        allowed = await http.post("/api/imports/json", json=file, headers=bearer(ana))
        assert allowed.status_code == 201, allowed.text
