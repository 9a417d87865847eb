"""The web studio in real headless Chromium against a real server: co-editing between
pages and a pycrdt client, presence, rollback, a viewer's read-only page, history,
lineage and the in-browser audit check, and the connection state.

Over 400 lines because every test drives the same browser and server fixtures; the
browser's start-up is paid once per module.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import pytest
from playwright.async_api import Browser

from collab.access.issuing import issue
from collab.access.tokens import TokenSettings
from collab.runtime.config import AuditSettings
from events import bundle as bundle_module
from events.checkpoints import parse_public_key
from music import document
from tests.browser import StudioPage, artifacts_dir, chromium, studio_page
from tests.live import YClient, log_document, project_events, running_server
from tests.support import eventually, free_port

pytestmark = pytest.mark.slow

SECRET = b"studio-test-secret-0123456789abcdef"
AUTH = TokenSettings(secret=SECRET)
AUDIT = AuditSettings(checkpoint_every=1, checkpoint_seconds=0.2)


def token(user: str, **extra: Any) -> str:
    return issue(SECRET, user=user, ttl=3600, **extra)


OWNER = token("ana")
EDITOR = token("ben")
VIEWER = token("vic")
STRANGER = token("zoe")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@contextlib.asynccontextmanager
async def studio_server(database_url: str, port: int | None = None) -> AsyncIterator[str]:
    async with running_server(database_url, auth=AUTH, audit=AUDIT, port=port) as address:
        yield address


async def api(address: str, who: str, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(
        base_url=f"http://{address}", headers={"Authorization": f"Bearer {who}"}
    ) as http:
        response = await http.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()


#: a track with one empty clip of four beats
BASS_RIFF = (
    {"op": "add_track", "track_id": "bass", "name": "Bass"},
    {
        "op": "add_clip",
        "track_id": "bass",
        "clip_id": "c1",
        "name": "Riff",
        "start_beats": 0,
        "length_beats": 4,
    },
)


async def edit(address: str, who: str, project: str, *operations: Any) -> Any:
    """Typed edits through ``POST /edits`` (docs/document.md)."""
    body = {"operations": list(operations)}
    return await api(address, who, "POST", f"/api/projects/{project}/edits", body)


async def shared_project(address: str) -> str:
    """A project of ana's, with ben as editor and vic as viewer."""
    created = await api(address, OWNER, "POST", "/api/projects", {"name": "Night Drive"})
    project = str(created["id"])
    for member, role in (("ben", "editor"), ("vic", "viewer")):
        await api(
            address,
            OWNER,
            "POST",
            f"/api/projects/{project}/members",
            {"member": member, "role": role},
        )
    return project


async def track_names(tab: StudioPage) -> list[str]:
    names: list[str] = await tab.page.eval_on_selector_all(
        ".lanes .track input.name", "inputs => inputs.map(i => i.value)"
    )
    return names


async def open_project(tab: StudioPage, who: str, project: str, view: str = "editor") -> None:
    await tab.sign_in(who, f"/p/{project}/{view}")
    await tab.synced()


def logged_names(doc: dict[str, Any]) -> list[str]:
    return [doc["tracks"][t]["name"] for t in doc["track_order"] if t in doc["tracks"]]


async def test_the_page_is_served_small_and_locked_down(database_url: str) -> None:
    async with (
        studio_server(database_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        total = 0
        for asset in ("/studio/studio.js", "/studio/studio.css"):
            response = await http.get(asset, headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            total += len(gzip.compress(response.content))
            again = await http.get(asset, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304
        assert total < 500_000, f"the studio's assets are {total} bytes compressed"


async def test_a_reader_fetches_the_audit_bundle_and_it_verifies(database_url: str) -> None:
    """``GET /api/projects/{id}/audit-bundle``: what `collab audit export` writes, for
    any reader of the project (the studio checks it in the browser), not for others."""
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        path = f"/api/projects/{project}/audit-bundle"

        async def sealed() -> bool:
            bundle = await api(address, VIEWER, "GET", path)
            return bool(bundle["checkpoint"]) and bundle["checkpoint"]["tree_size"] >= 3

        await eventually(sealed, 15, "no checkpoint covers the project")
        bundle = await api(address, VIEWER, "GET", path)
        checkpoint = await api(address, VIEWER, "GET", "/api/audit/checkpoint?format=json")
        report = bundle_module.verify(bundle, parse_public_key(checkpoint["public_key"]))
        assert report.ok, report.first_break
        assert report.proven == len(bundle["events"]) >= 3
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            stranger = await http.get(path, headers={"Authorization": f"Bearer {STRANGER}"})
            assert stranger.status_code == 403, stranger.text
            assert "zoe is not a member" in stranger.json()["message"]


async def test_the_project_view_says_who_asks_and_whether_their_edits_count(
    database_url: str,
) -> None:
    """``you`` in ``GET /api/projects/{id}``: the studio shows controls only to those
    whose edits the server stores (an auditor holding an editor role is not one)."""
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        auditor = token("audrey", roles=["auditor"])
        await api(
            address,
            OWNER,
            "POST",
            f"/api/projects/{project}/members",
            {"member": "audrey", "role": "editor"},
        )
        expected = {
            OWNER: {"user": "ana", "role": "owner", "may_edit": True},
            EDITOR: {"user": "ben", "role": "editor", "may_edit": True},
            VIEWER: {"user": "vic", "role": "viewer", "may_edit": False},
            auditor: {"user": "audrey", "role": "auditor", "may_edit": False},
            token("root", roles=["admin"]): {"user": "root", "role": "admin", "may_edit": True},
        }
        for who, you in expected.items():
            view = await api(address, who, "GET", f"/api/projects/{project}?min_position=1")
            assert view["you"] == you


async def test_two_pages_and_a_pycrdt_client_co_edit(
    database_url: str, browser: Browser, tmp_path: Path
) -> None:
    shots = artifacts_dir(tmp_path)
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        async with studio_page(browser, address) as a, studio_page(browser, address) as b:
            await open_project(a, OWNER, project)
            await open_project(b, EDITOR, project)
            # page A adds a track and names it; page B sees both
            await a.page.click("button.add-track")
            await b.page.wait_for_selector(".lanes .track")
            name = a.page.locator(".lanes .track input.name").first
            await name.fill("Bass")
            await name.press("Enter")
            await eventually(lambda: _names_are(b, ["Bass"]), 10, "B did not see the name")
            # a clip, then a note drawn in A's piano roll, seen in B's
            await a.page.click(".lanes .track button.add-clip")
            await a.page.wait_for_selector(".roll .grid")
            await a.page.locator(".roll .grid").click(position={"x": 10, "y": 200})
            await a.page.wait_for_selector(".roll .note")
            await b.page.click(".lanes .track .clip")
            await b.page.wait_for_selector(".roll .note")
            # a pycrdt client edits at the same time as page B
            client = YClient(address, project, token=OWNER)
            await client.connect()
            await client.wait_synced()
            meta = client.doc.get(document.META, type=pycrdt.Map)
            tracks = client.doc.get(document.TRACKS, type=pycrdt.Map)
            order = client.doc.get(document.TRACK_ORDER, type=pycrdt.Array)
            with client.doc.transaction():
                meta["tempo"] = 97.0
                tracks["keys"] = pycrdt.Map({"name": "Keys", "kind": "midi", "color": "#aa3355"})
                order.append("keys")
            await b.page.click("button.add-track")
            await eventually(lambda: _count(a, ".lanes .track", 3), 10, "A did not get 3 tracks")
            await eventually(lambda: _count(b, ".lanes .track", 3), 10, "B did not get 3 tracks")
            await eventually(lambda: _value(a, "input.tempo", "97"), 10, "A missed the tempo")
            await a.page.screenshot(path=shots / "studio-editor.png", full_page=True)

            async def converged() -> bool:
                logged = await log_document(database_url, project)
                names = logged_names(logged)
                return (
                    names == await track_names(a) == await track_names(b)
                    and client.json() == logged
                    and len(names) == 3
                )

            await eventually(converged, 15, "pages, pycrdt client and log differ")
            logged = await log_document(database_url, project)
            bass = next(t for t in logged["tracks"].values() if t["name"] == "Bass")
            (clip,) = bass["clips"].values()
            assert len(clip["notes"]) == 1
            await client.disconnect()
            await a.assert_no_errors()
            await b.assert_no_errors()


async def _names_are(tab: StudioPage, expected: list[str]) -> bool:
    return await track_names(tab) == expected


async def _count(tab: StudioPage, selector: str, expected: int) -> bool:
    return await tab.page.locator(selector).count() == expected


async def _value(tab: StudioPage, selector: str, expected: str) -> bool:
    return await tab.page.locator(selector).input_value() == expected


async def test_presence_shows_who_is_here_and_where(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        async with studio_page(browser, address) as a, studio_page(browser, address) as b:
            await open_project(a, OWNER, project)
            await a.page.click("button.add-track")
            await open_project(b, EDITOR, project)
            await b.page.wait_for_selector('.presence li:has-text("ana")')
            await a.page.locator(".lanes .track .head").first.click(position={"x": 300, "y": 60})
            await b.page.wait_for_selector(
                '.presence li:has-text("ana") .where:has-text("on Track")'
            )
            await b.page.wait_for_selector('.lanes .track .tag:has-text("ana")')
            await a.page.wait_for_selector('.presence li:has-text("ben")')
            await b.page.close()
            await a.page.wait_for_selector('.presence li:has-text("ben")', state="detached")
            await a.assert_no_errors()


async def test_a_rollback_in_one_page_reaches_the_other(
    database_url: str, browser: Browser, tmp_path: Path
) -> None:
    shots = artifacts_dir(tmp_path)
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        first = await edit(
            address, OWNER, project, {"op": "add_track", "track_id": "drums", "name": "Drums"}
        )
        await edit(address, OWNER, project, {"op": "add_track", "track_id": "pad", "name": "Pad"})
        async with studio_page(browser, address) as a, studio_page(browser, address) as b:
            await open_project(b, EDITOR, project)
            await eventually(lambda: _count(b, ".lanes .track", 2), 10, "B has not 2 tracks")
            await open_project(a, OWNER, project, "history")
            version = a.page.locator(f'.version[data-version="{first["version"]}"]')
            await a.page.uncheck("input.grouped")
            await a.page.wait_for_selector('ol.versions[data-loaded="every"]')
            await version.wait_for()
            await a.page.screenshot(path=shots / "studio-history.png", full_page=True)
            await version.locator("button.rollback").click()
            await version.locator("button.confirm-rollback").click()
            await a.page.wait_for_selector('.message.ok:has-text("rolled back")')
            await eventually(lambda: _names_are(b, ["Drums"]), 10, "B did not see the rollback")
            logged = await log_document(database_url, project)
            assert logged_names(logged) == ["Drums"]
            await a.assert_no_errors()
            await b.assert_no_errors()


async def test_history_previews_compares_and_tags(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        one = await edit(address, OWNER, project, {"op": "add_track", "name": "Guitar"})
        two = await edit(address, EDITOR, project, {"op": "set_meta", "fields": {"tempo": 132}})
        async with studio_page(browser, address) as tab:
            await open_project(tab, OWNER, project, "history")
            page = tab.page
            await page.uncheck("input.grouped")
            await page.wait_for_selector('ol.versions[data-loaded="every"]')
            for version in (one["version"], two["version"]):
                await page.locator(f'.version[data-version="{version}"] input.pick').check()
            await page.click("button.compare")
            await page.wait_for_selector('.diff li.changed:has-text("tempo")')
            assert "132" in await page.locator(".diff li.changed").inner_text()
            await page.fill("input.snapshot-name", "before the bridge")
            await page.click('.snapshot-form button[type="submit"]')
            await page.wait_for_selector('.snapshot:has-text("before the bridge")')
            await page.locator(f'.version[data-version="{one["version"]}"] button.preview').click()
            await page.wait_for_selector('.banner:has-text("read-only")')
            assert await page.locator("input.tempo").input_value() == "120"
            assert await page.locator("button.add-track").is_disabled()
            await page.click(".banner a.back-live")
            await tab.synced()
            await eventually(lambda: _value(tab, "input.tempo", "132"), 10, "not live again")
            await tab.assert_no_errors()
        snapshots = await api(address, OWNER, "GET", f"/api/projects/{project}/snapshots")
        assert [s["name"] for s in snapshots["snapshots"]] == ["before the bridge"]


async def test_a_viewer_page_changes_nothing(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        await edit(address, OWNER, project, *BASS_RIFF)
        before = await project_events(database_url, project)
        async with studio_page(browser, address) as viewer:
            sent: list[bytes] = []
            viewer.page.on(
                "websocket",
                lambda ws: ws.on(
                    "framesent",
                    lambda frame: sent.append(
                        frame if isinstance(frame, bytes) else frame.encode()
                    ),
                ),
            )
            await open_project(viewer, VIEWER, project)
            page = viewer.page
            await page.wait_for_selector(".lanes .track")
            assert "read-only" in await page.locator(".role").inner_text()
            assert await page.locator("button.add-track").is_disabled()
            assert await page.locator(".lanes .track input.name").is_disabled()
            assert await page.locator(".lanes .track button.remove").is_disabled()
            # what is not a form control: a clip dragged, a grid clicked
            clip = page.locator(".lanes .clip")
            box = await clip.bounding_box()
            assert box is not None
            await page.mouse.move(box["x"] + 10, box["y"] + 10)
            await page.mouse.down()
            await page.mouse.move(box["x"] + 120, box["y"] + 10, steps=5)
            await page.mouse.up()
            await page.wait_for_selector(".roll .grid")
            await page.locator(".roll .grid").click(position={"x": 30, "y": 100})
            await page.goto(f"{viewer.base}/#/p/{project}/history")
            await page.wait_for_selector(".version")
            assert await page.locator("button.rollback").count() == 0
            # y-protocols: a document update is a sync message (0) of subtype update (2)
            assert sent, "the page sent nothing at all (not even its sync step 1)"
            assert not [f for f in sent if f[:2] == b"\x00\x02"], "the viewer's page sent an update"
            assert await page.locator('.connection[data-state="read-only"]').count() == 0
            await viewer.assert_no_errors()
        after = await project_events(database_url, project)
        assert [e.position for e in after] == [e.position for e in before]


async def test_history_lineage_and_the_audit_check_render(
    database_url: str, browser: Browser, tmp_path: Path
) -> None:
    shots = artifacts_dir(tmp_path)
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        edited = await edit(
            address, EDITOR, project, {"op": "add_track", "track_id": "v", "name": "Vocals"}
        )
        analysis = await api(
            address,
            OWNER,
            "POST",
            f"/api/projects/{project}/analyses",
            {
                "type": "audio_analysis",
                "target": {"version": edited["version"]},
                "results": {"tempo_bpm": 126, "key": "A minor"},
                "tool": {
                    "agent_id": "collab-server",
                    "version": "1",
                    "model": "beat-net-7",
                    "ai_involved": True,
                },
            },
        )
        master = await api(
            address,
            OWNER,
            "POST",
            "/api/provenance",
            {
                "project_id": project,
                "version": edited["version"],
                "entity": {"type": "master", "id": "song.wav", "content_hash": "ab" * 32},
                "activity": "render",
                "tool": {"agent_id": "collab-server", "version": "1.0"},
                "derived_from": [analysis["daid"]],
            },
        )
        async with studio_page(browser, address) as tab:
            await open_project(tab, OWNER, project, "history")
            page = tab.page
            await page.wait_for_selector('.version:has-text("added track Vocals")')
            await page.wait_for_selector('.version:has-text("ben")')
            await page.goto(f"{tab.base}/#/p/{project}/provenance")
            await page.wait_for_selector('.analysis:has-text("beat-net-7")')
            await page.click("button.verify")
            result = page.locator(".verify-result .ok")
            await result.wait_for(timeout=20_000)
            assert (await result.inner_text()).startswith("OK:")
            await page.screenshot(path=shots / "studio-provenance.png", full_page=True)
            await page.goto(f"{tab.base}/#/daid/{master['daid']}")
            await page.wait_for_selector(".lineage-graph .node-box.root")
            boxes = await page.locator(".lineage-graph .node-box").count()
            assert boxes >= 4  # the master, the analysis, version 3 and its ancestors
            await page.wait_for_selector('.contributors li:has-text("ana")')
            await page.wait_for_selector('.contributors li:has-text("ben")')
            await page.wait_for_selector('.contributors li:has-text("beat-net-7")')
            await page.screenshot(path=shots / "studio-lineage.png", full_page=True)
            async with page.expect_download() as download_info:
                await page.click("button.prov")
            download = await download_info.value
            assert download.suggested_filename.endswith(".prov.json")
            await tab.assert_no_errors()


async def test_connection_loss_shows_and_recovers(database_url: str, browser: Browser) -> None:
    """The server stops under an open page: the page says it is reconnecting, keeps an
    edit made meanwhile, and sends it when the server is back on its port."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    async with studio_page(browser, address) as tab:
        page = tab.page
        async with studio_server(database_url, port):
            project = await shared_project(address)
            await open_project(tab, OWNER, project)
            await page.click("button.add-track")
            await eventually(lambda: _count(tab, ".lanes .track", 1), 10, "no track")
        state = page.locator('.connection[data-state="reconnecting"]')
        await state.wait_for()
        assert "reconnecting" in await state.inner_text()
        await page.click("button.add-track")  # made offline, kept by the page
        async with studio_server(database_url, port):
            await tab.synced()

            async def both_logged() -> bool:
                logged = await log_document(database_url, project)
                return len(logged["track_order"]) == 2

            await eventually(both_logged, 15, "the offline edit did not reach the log")
        await tab.assert_no_errors()


async def test_a_revoked_member_sees_why(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        async with studio_page(browser, address) as tab:
            await open_project(tab, EDITOR, project)
            await api(address, OWNER, "DELETE", f"/api/projects/{project}/members/ben")
            refused = tab.page.locator('.connection[data-state="refused"]')
            await refused.wait_for()
            assert "may not open this project" in await refused.inner_text()
            await tab.assert_no_errors()


async def test_a_stranger_is_refused_with_the_reason(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        async with studio_page(browser, address) as tab:
            await tab.sign_in(STRANGER, f"/p/{project}/editor")
            message = tab.page.locator(".message.error")
            await message.wait_for()
            assert "zoe is not a member of project" in await message.inner_text()
            await tab.page.goto(f"{tab.base}/#/")
            await tab.page.wait_for_selector('table.projects[data-loaded="true"]')
            assert await tab.page.locator("tr.project").count() == 0


async def test_sign_in_create_a_project_and_sign_out(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address, studio_page(browser, address) as tab:
        page = tab.page
        await page.goto(f"{tab.base}/")
        await page.fill("textarea.token", "not-a-token")
        await page.click("button.sign-in-button")
        refused = page.locator(".sign-in .message.error")
        await refused.wait_for()
        assert "token was refused" in await refused.inner_text()
        await page.fill("textarea.token", OWNER)
        await page.click("button.sign-in-button")
        await page.fill("input.new-name", "First Song")
        await page.click('form.create button[type="submit"]')
        await tab.synced()
        assert await page.locator(".project-title").inner_text() == "First Song"
        await page.click('header nav a[href="#/"]')
        await page.wait_for_selector('tr.project:has-text("First Song")')
        await page.click("button.sign-out")
        await page.wait_for_selector("textarea.token")
        assert await page.evaluate("() => localStorage.getItem('collab.token')") is None
        await tab.assert_no_errors()


async def test_clips_and_notes_work_from_the_keyboard(database_url: str, browser: Browser) -> None:
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        operations = [
            *BASS_RIFF,
            {
                "op": "add_notes",
                "track_id": "bass",
                "clip_id": "c1",
                "notes": [{"pitch": 60, "start": 0, "duration": 1, "velocity": 100}],
            },
        ]
        await edit(address, OWNER, project, *operations)
        async with studio_page(browser, address) as tab:
            await open_project(tab, OWNER, project)
            page = tab.page
            clip = page.locator('.clip[data-clip="c1"]')
            await clip.focus()
            await page.keyboard.press("ArrowRight")
            await page.keyboard.press("Shift+ArrowRight")
            await page.keyboard.press("Enter")
            await page.wait_for_selector(".roll .note")
            await page.locator(".roll .note").focus()
            await page.keyboard.press("Delete")
            await page.wait_for_selector(".roll .note", state="detached")

            async def logged() -> bool:
                doc = await log_document(database_url, project)
                c1 = doc["tracks"]["bass"]["clips"]["c1"]
                return (c1["start_beats"], c1["length_beats"], c1["notes"]) == (1.0, 5.0, [])

            await eventually(logged, 10, "the keyboard's edits did not reach the log")
            await tab.assert_no_errors()


async def test_export_fork_and_import_from_the_page(
    database_url: str, browser: Browser, tmp_path: Path
) -> None:
    """A version downloaded as MIDI and as a project file, forked into a project of the
    user's, and both files imported back into new projects from the projects page."""
    async with studio_server(database_url) as address:
        project = await shared_project(address)
        await edit(address, OWNER, project, *BASS_RIFF)
        await edit(
            address,
            OWNER,
            project,
            {
                "op": "add_notes",
                "track_id": "bass",
                "clip_id": "c1",
                "notes": [{"pitch": 40, "start": 0, "duration": 1, "velocity": 100}],
            },
        )
        async with studio_page(browser, address) as tab:
            await open_project(tab, EDITOR, project)
            page = tab.page
            saved: dict[str, Path] = {}
            for button, suffix in (("button.export-midi", ".mid"), ("button.export-json", ".json")):
                async with page.expect_download() as info:
                    await page.click(f".project-actions {button}")
                download = await info.value
                assert download.suggested_filename.endswith(suffix), download.suggested_filename
                saved[suffix] = tmp_path / download.suggested_filename
                await download.save_as(saved[suffix])
            assert saved[".mid"].read_bytes().startswith(b"MThd")
            assert json.loads(saved[".json"].read_text())["format"] == "collab-project/1"

            await page.click(".project-actions button.fork")
            await page.wait_for_selector('.project-title:has-text("Night Drive (fork)")')
            await tab.synced()
            assert "you edit as owner" in await page.locator(".role").inner_text()
            await eventually(lambda: _names_are(tab, ["Bass"]), 10, "the fork has not the track")

            for suffix, title in ((".mid", "Night-Drive"), (".json", "Night Drive")):
                await page.goto(f"{tab.base}/#/")
                await page.wait_for_selector('table.projects[data-loaded="true"]')
                await page.set_input_files("input.import-file", saved[suffix])
                await page.wait_for_selector(f'.project-title:has-text("{title}")')
                await tab.synced()
                await eventually(lambda: _count(tab, ".lanes .track", 1), 10, "no imported track")
            await tab.assert_no_errors()
