"""Identity and access against a real server with authentication on: every route for
every kind of caller, bad tokens, project roles as events, read-only viewers on the
live socket, revocation and downgrade acting on open sockets, tokens that expire.

The tokens are HS256 tokens of the server's secret (``collab.access.issuing.issue``),
as ``collab token create`` makes them; tests/test_tokens.py covers the other key
sources (PEM, JWKS file and URL) and every way a token can be wrong.

Over 400 lines because the access matrix (every route for every kind of caller) is one
table run against one server setup; split, each part would repeat that setup.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pycrdt
import pytest
import websockets

from collab.access.issuing import issue
from collab.access.tokens import TokenSettings
from collab.live.closecodes import CloseCode
from collab.runtime.config import AuditSettings
from music import document
from tests.jwks import JwksServer
from tests.live import (
    NodeClient,
    YClient,
    close_code,
    log_document,
    metric,
    project_events,
    running_server,
)
from tests.support import eventually, timeout
from tests.test_tokens import jwk, new_key, sign

SECRET = b"s" * 32
AUTH = TokenSettings(secret=SECRET)
TOOL = {"agent_id": "audio-agent", "version": "1.0"}
SHA = "ab" * 32
_unique = itertools.count(1)


def token(user: str, *roles: str, agent: str | None = None, ttl: float | None = 3600) -> str:
    return issue(SECRET, user=user, roles=roles, agent_id=agent, ttl=ttl)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


#: every kind of caller, by name: (token or None, which of the groups below it is in)
CALLERS: dict[str, str | None] = {
    "owner": token("olivia"),
    "editor": token("eddie"),
    "viewer": token("vera"),
    "auditor": token("audrey", "auditor"),
    "admin": token("ada", "admin"),
    "service_granted": token("svc", agent="audio-agent"),
    "service_not_granted": token("svc", agent="other-agent"),
    "stranger": token("sam"),
    "anonymous": None,
}
READERS = {"owner", "editor", "viewer", "auditor", "admin", "service_granted"}
WRITERS = {"owner", "editor", "admin", "service_granted"}
MANAGERS = {"owner", "admin"}
CREATORS = {name for name in CALLERS if name not in ("auditor", "anonymous")}
AUTHENTICATED = {name for name in CALLERS if name != "anonymous"}


@dataclass
class Project:
    address: str
    id: str
    daid: str
    #: the log position of the fixture's last grant
    position: int


@pytest.fixture
async def project(database_url: str) -> AsyncIterator[Project]:
    audit = AuditSettings(checkpoint_seconds=0.05)
    async with running_server(database_url, auth=AUTH, audit=audit) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            created = await http.post(
                "/api/projects", json={"name": "Song"}, headers=bearer(CALLERS["owner"] or "")
            )
            assert created.status_code == 201, created.text
            project_id = created.json()["id"]
            for member, role in (
                ("eddie", "editor"),
                ("vera", "viewer"),
                ("audio-agent", "editor"),
            ):
                granted = await http.post(
                    f"/api/projects/{project_id}/members",
                    json={"member": member, "role": role},
                    headers=bearer(CALLERS["owner"] or ""),
                )
                assert granted.status_code == 201, granted.text

            async def signed() -> bool:
                admin = bearer(CALLERS["admin"] or "")
                return (
                    await http.get("/api/audit/checkpoint?format=json", headers=admin)
                ).status_code == 200

            await eventually(signed, 20, "no audit checkpoint was signed")
        yield Project(address, project_id, created.json()["daid"], granted.json()["position"])


Request = Callable[[Project], tuple[str, str, Any]]


def _edit(p: Project) -> tuple[str, str, Any]:
    track = f"t{next(_unique)}"
    body = {"operations": [{"op": "add_track", "track_id": track, "name": track}]}
    return "POST", f"/api/projects/{p.id}/edits", body


def _snapshot(p: Project) -> tuple[str, str, Any]:
    return "POST", f"/api/projects/{p.id}/snapshots", {"name": f"s{next(_unique)}"}


def _analysis(p: Project) -> tuple[str, str, Any]:
    body = {"type": "loudness", "results": {"lufs": -9.5}, "tool": TOOL}
    return "POST", f"/api/projects/{p.id}/analyses", body


def _provenance(p: Project) -> tuple[str, str, Any]:
    entity = {"type": "master", "id": f"m{next(_unique)}", "content_hash": SHA}
    body = {"project_id": p.id, "entity": entity, "activity": "render", "tool": TOOL}
    return "POST", "/api/provenance", body


def _grant(p: Project) -> tuple[str, str, Any]:
    body = {"member": f"guest{next(_unique)}", "role": "viewer"}
    return "POST", f"/api/projects/{p.id}/members", body


#: (name, request, who may) for every route of the API that needs a principal
ROUTES: list[tuple[str, Request, set[str]]] = [
    ("list projects", lambda p: ("GET", "/api/projects", None), AUTHENTICATED),
    ("create project", lambda p: ("POST", "/api/projects", {"name": "Mine"}), CREATORS),
    ("project", lambda p: ("GET", f"/api/projects/{p.id}", None), READERS),
    ("document", lambda p: ("GET", f"/api/projects/{p.id}/document", None), READERS),
    ("history", lambda p: ("GET", f"/api/projects/{p.id}/history", None), READERS),
    ("version", lambda p: ("GET", f"/api/projects/{p.id}/versions/1", None), READERS),
    ("diff", lambda p: ("GET", f"/api/projects/{p.id}/diff?from=1&to=2", None), READERS),
    ("snapshots", lambda p: ("GET", f"/api/projects/{p.id}/snapshots", None), READERS),
    ("analyses", lambda p: ("GET", f"/api/projects/{p.id}/analyses", None), READERS),
    ("members", lambda p: ("GET", f"/api/projects/{p.id}/members", None), READERS),
    ("daid", lambda p: ("GET", f"/api/daids/{p.daid}", None), READERS),
    ("lineage", lambda p: ("GET", f"/api/daids/{p.daid}/lineage", None), READERS),
    ("prov", lambda p: ("GET", f"/api/daids/{p.daid}/prov", None), READERS),
    ("contributors", lambda p: ("GET", f"/api/daids/{p.daid}/contributors", None), READERS),
    ("checkpoint", lambda p: ("GET", "/api/audit/checkpoint?format=json", None), AUTHENTICATED),
    ("edit", _edit, WRITERS),
    ("snapshot", _snapshot, WRITERS),
    ("rollback", lambda p: ("POST", f"/api/projects/{p.id}/rollback", {"version": 2}), WRITERS),
    ("analysis", _analysis, WRITERS),
    ("provenance", _provenance, WRITERS),
    ("grant", _grant, MANAGERS),
]


async def test_every_route_for_every_caller(project: Project) -> None:
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        # reads of read models wait for the grants to be folded
        head = (await http.get("/ready")).json()
        assert head["auth"] == "on"
        for (name, request, allowed), caller in itertools.product(ROUTES, CALLERS):
            method, path, body = request(project)
            value = CALLERS[caller]
            headers = bearer(value) if value is not None else {}
            # reads of the read models wait until they have folded the fixture's grants
            if method == "GET":
                path += f"{'&' if '?' in path else '?'}min_position={project.position}"
            response = await http.request(method, path, json=body, headers=headers)
            if caller in allowed:
                ok = response.status_code in (200, 201)
            elif caller == "anonymous":
                ok = response.status_code == 401 and "WWW-Authenticate" in response.headers
            else:
                ok = response.status_code == 403
            if not ok:
                wrong.append(f"{name} as {caller}: {response.status_code} {response.text[:120]}")
            elif response.status_code in (401, 403):
                assert response.json()["message"], (name, caller)
        # revocation is a route too: each manager revokes a member made for it
        for caller, value in CALLERS.items():
            member = f"leaving{next(_unique)}"
            admin = bearer(CALLERS["admin"] or "")
            await http.post(
                f"/api/projects/{project.id}/members",
                json={"member": member, "role": "viewer"},
                headers=admin,
            )
            response = await http.delete(
                f"/api/projects/{project.id}/members/{member}",
                headers=bearer(value) if value is not None else {},
            )
            expected = 200 if caller in MANAGERS else 401 if caller == "anonymous" else 403
            if response.status_code != expected:
                wrong.append(f"revoke as {caller}: {response.status_code} {response.text[:120]}")
    assert wrong == [], "\n".join(wrong)


async def test_the_project_list_shows_only_what_the_caller_may_see(project: Project) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:

        async def listed(caller: str, **params: str) -> list[str]:
            response = await http.get(
                "/api/projects", params=params, headers=bearer(CALLERS[caller] or "")
            )
            assert response.status_code == 200, response.text
            return [p["id"] for p in response.json()["projects"]]

        await eventually_listed(lambda: listed("viewer"), project.id)
        assert project.id in await listed("auditor")
        assert project.id in await listed("admin")
        assert project.id not in await listed("stranger")
        # asking for someone else's projects shows nothing of theirs
        assert await listed("stranger", member="vera") == []


async def eventually_listed(read: Callable[[], Any], project_id: str) -> None:
    async def shown() -> bool:
        return project_id in await read()

    await eventually(shown, 10, "the grant never reached the project list")


def _forged(claims: dict[str, Any], key: bytes = b"k" * 32, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "expired": token("olivia", ttl=-120),
    "not yet valid": _forged({"sub": "olivia", "nbf": int(time.time()) + 3600}, SECRET),
    "wrong signature": _forged({"sub": "olivia"}),
    "alg none": _unsigned({"sub": "olivia"}),
    "wrong audience": _forged({"sub": "olivia", "aud": "elsewhere"}, SECRET),
    "garbage": "not.a.token",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_tokens_get_401_and_close_4401(project: Project, kind: str) -> None:
    value = BAD_TOKENS[kind]
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        response = await http.get(f"/api/projects/{project.id}", headers=bearer(value))
        assert response.status_code == 401, response.text
        assert response.json()["message"]
    ws = await websockets.connect(f"ws://{project.address}/ws/{project.id}?token={value}")
    assert await close_code(ws) == CloseCode.UNAUTHENTICATED


async def test_socket_refusals_name_their_reason(project: Project) -> None:
    url = f"ws://{project.address}/ws/{project.id}"
    cases = [
        (url, CloseCode.UNAUTHENTICATED),
        (f"{url}?token={CALLERS['stranger']}", CloseCode.FORBIDDEN),
        (f"{url}?token={CALLERS['service_not_granted']}", CloseCode.FORBIDDEN),
    ]
    for target, code in cases:
        ws = await websockets.connect(target)
        assert await close_code(ws) == code
        assert ws.close_reason
    # the header works where a client can set one
    ws = await websockets.connect(url, additional_headers=bearer(CALLERS["editor"] or ""))
    assert ws.close_code is None
    await ws.close()


async def test_a_member_of_one_project_is_a_stranger_to_another(project: Project) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        other = await http.post(
            "/api/projects", json={"name": "Other"}, headers=bearer(CALLERS["stranger"] or "")
        )
        other_id = other.json()["id"]
        response = await http.get(
            f"/api/projects/{other_id}/document", headers=bearer(CALLERS["editor"] or "")
        )
        assert response.status_code == 403
        assert "eddie is not a member" in response.json()["message"]
    ws = await websockets.connect(f"ws://{project.address}/ws/{other_id}?token={CALLERS['editor']}")
    assert await close_code(ws) == CloseCode.FORBIDDEN


async def test_events_carry_the_token_s_actor_and_agent_never_a_header(
    project: Project, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        method, path, body = _edit(project)
        headers = {**bearer(CALLERS["service_granted"] or ""), "X-Actor": "mallory"}
        response = await http.request(method, path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        daid = response.json()["daid"]
    events = await project_events(database_url, project.id)
    made = next(e for e in events if e.daid == daid)
    assert made.metadata["actor"] == "audio-agent"
    assert made.metadata["agent_id"] == "audio-agent"
    created = events[0]
    assert (created.metadata["actor"], created.metadata["agent_id"]) == ("olivia", "collab-server")


async def test_membership_rules(project: Project) -> None:
    owner = bearer(CALLERS["owner"] or "")
    members = f"/api/projects/{project.id}/members"
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        last = await http.delete(f"{members}/olivia", headers=owner)
        assert last.status_code == 409, last.text
        assert "last owner" in last.json()["message"]
        demote = await http.post(
            members, json={"member": "olivia", "role": "editor"}, headers=owner
        )
        assert demote.status_code == 409
        unknown = await http.delete(f"{members}/nobody", headers=owner)
        assert unknown.status_code == 404
        bad = await http.post(members, json={"member": "x", "role": "god"}, headers=owner)
        assert bad.status_code == 422
        assert bad.json()["fields"][0]["field"] == "role"
        control = await http.post(members, json={"member": "a\nb", "role": "viewer"}, headers=owner)
        assert control.status_code == 422
        # a second owner, then the first may leave
        second = await http.post(members, json={"member": "eddie", "role": "owner"}, headers=owner)
        assert second.status_code == 201
        assert second.json()["previous_role"] == "editor"
        leave = await http.delete(f"{members}/olivia", headers=owner)
        assert leave.status_code == 200
        listed = await http.get(members, headers=bearer(CALLERS["editor"] or ""))
        assert listed.json()["members"] == [
            {"member": "audio-agent", "role": "editor"},
            {"member": "eddie", "role": "owner"},
            {"member": "vera", "role": "viewer"},
        ]
        gone = await http.get(f"/api/projects/{project.id}", headers=owner)
        assert gone.status_code == 403


async def test_a_member_granted_a_moment_ago_connects_at_once(project: Project) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        granted = await http.post(
            f"/api/projects/{project.id}/members",
            json={"member": "sam", "role": "editor"},
            headers=bearer(CALLERS["owner"] or ""),
        )
        assert granted.status_code == 201
    client = await YClient(project.address, project.id, token=CALLERS["stranger"]).connect()
    try:
        await client.wait_synced()
    finally:
        await client.disconnect()


def _set_tempo(client: YClient, tempo: float) -> None:
    client.doc.get(document.META, type=pycrdt.Map)["tempo"] = tempo


async def test_a_viewer_watches_live_but_its_edits_are_refused_and_never_stored(
    project: Project, database_url: str
) -> None:
    viewer = await YClient(project.address, project.id, token=CALLERS["viewer"]).connect()
    editor = await YClient(project.address, project.id, token=CALLERS["editor"]).connect()
    try:
        await viewer.wait_synced()
        await editor.wait_synced()
        before = len(await project_events(database_url, project.id))
        _set_tempo(viewer, 61.0)
        await eventually(lambda: viewer.denied, 10, "the viewer was not told")
        assert "permission denied" in viewer.denied[0]
        # the connection stays usable: it still receives what editors do
        # another key than the viewer's: where both wrote, the viewer's own (refused)
        # write may win in its copy, as a CRDT resolves concurrent writes
        editor.doc.get(document.META, type=pycrdt.Map)["key"] = "E minor"
        await eventually(
            lambda: viewer.doc.get(document.META, type=pycrdt.Map).get("key") == "E minor",
            10,
            "the viewer stopped receiving edits",
        )
        assert viewer.ws is not None
        assert viewer.ws.close_code is None
        events = await project_events(database_url, project.id)
        assert len(events) == before + 1
        assert all(e.metadata["actor"] != "vera" for e in events)
        room = await _document(project, "owner")
        assert room["meta"]["key"] == "E minor"
        assert room["meta"]["tempo"] == 120.0
    finally:
        await viewer.disconnect()
        await editor.disconnect()


async def _document(project: Project, caller: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        response = await http.get(
            f"/api/projects/{project.id}/document", headers=bearer(CALLERS[caller] or "")
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["document"])


async def test_revocation_closes_the_member_s_sockets_within_a_second(project: Project) -> None:
    editor = await YClient(project.address, project.id, token=CALLERS["editor"]).connect()
    other = await YClient(project.address, project.id, token=CALLERS["viewer"]).connect()
    try:
        await editor.wait_synced()
        await other.wait_synced()
        async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
            response = await http.delete(
                f"/api/projects/{project.id}/members/eddie", headers=bearer(CALLERS["owner"] or "")
            )
            assert response.status_code == 200
        started = time.monotonic()
        assert await editor.wait_closed(timeout(5)) == CloseCode.FORBIDDEN
        took = time.monotonic() - started
        assert took < timeout(1), took
        assert "revoked" in (editor.close_reason or "")
        assert other.ws is not None
        assert other.ws.close_code is None
        again = await websockets.connect(
            f"ws://{project.address}/ws/{project.id}?token={CALLERS['editor']}"
        )
        assert await close_code(again) == CloseCode.FORBIDDEN
    finally:
        await editor.disconnect()
        await other.disconnect()


async def test_a_downgraded_editor_becomes_read_only_at_once(
    project: Project, database_url: str
) -> None:
    editor = await YClient(project.address, project.id, token=CALLERS["editor"]).connect()
    try:
        await editor.wait_synced()
        _set_tempo(editor, 100.0)
        await eventually(
            lambda: _tempo_stored(database_url, project.id, 100.0), 10, "the edit was not stored"
        )
        async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
            response = await http.post(
                f"/api/projects/{project.id}/members",
                json={"member": "eddie", "role": "viewer"},
                headers=bearer(CALLERS["owner"] or ""),
            )
            assert response.status_code == 201
        _set_tempo(editor, 101.0)
        await eventually(lambda: editor.denied, 10, "the downgraded editor was not refused")
        assert (await _document(project, "owner"))["meta"]["tempo"] == 100.0
        assert editor.ws is not None
        assert editor.ws.close_code is None
    finally:
        await editor.disconnect()


async def _tempo_stored(database_url: str, project_id: str, tempo: float) -> bool:
    return bool((await log_document(database_url, project_id))["meta"].get("tempo") == tempo)


async def test_a_socket_closes_with_4401_when_its_token_expires(project: Project) -> None:
    short = token("eddie", ttl=2)
    client = await YClient(project.address, project.id, token=short).connect()
    try:
        await client.wait_synced()
        assert await client.wait_closed(timeout(10)) == CloseCode.UNAUTHENTICATED
        assert "expired" in (client.close_reason or "")
    finally:
        await client.disconnect()


async def test_auditors_read_every_project_and_change_nothing_live(project: Project) -> None:
    auditor = await YClient(project.address, project.id, token=CALLERS["auditor"]).connect()
    try:
        await auditor.wait_synced()
        _set_tempo(auditor, 1.0)
        await eventually(lambda: auditor.denied, 10, "the auditor's edit was not refused")
    finally:
        await auditor.disconnect()


async def test_a_viewer_on_the_stock_node_client_is_refused_and_keeps_watching(
    project: Project, database_url: str, node_client_script: Path
) -> None:
    viewer = await NodeClient.start(
        node_client_script, project.address, project.id, token=CALLERS["viewer"]
    )
    editor = await YClient(project.address, project.id, token=CALLERS["editor"]).connect()
    try:
        await viewer.wait_synced()
        await editor.wait_synced()
        before = len(await project_events(database_url, project.id))
        await viewer.edit(20, 7)  # the stock provider sends each as an update
        # a key the Node client's random edits never write
        editor.doc.get(document.META, type=pycrdt.Map)["key"] = "F major"

        async def watched() -> bool:
            return bool((await viewer.dump())["meta"].get("key") == "F major")

        await eventually(watched, 20, "the Node viewer stopped receiving edits")
        events = await project_events(database_url, project.id)
        assert len(events) == before + 1  # the editor's tempo, nothing of the viewer's
        assert {e.metadata["actor"] for e in events[before:]} == {"eddie"}
        assert not [e for e in viewer.seen if e.get("event") in ("closed", "stopped")]
        room = await _document(project, "owner")
        assert not [t for t in room["tracks"] if t.startswith("node-")]
        # the viewer did send them: the server refused each as read-only
        refused = await metric(project.address, 'collab_refused_messages_total{reason="read_only"}')
        assert refused >= 1
    finally:
        await viewer.stop()
        await editor.disconnect()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
async def test_an_identity_provider_s_tokens_through_its_jwks_url(
    database_url: str, jwks_server: JwksServer, algorithm: str
) -> None:
    """The server as it runs beside an external identity provider: its keys from a JWKS
    URL, issuer and audience checked, roles from a nested claim."""
    key = new_key(algorithm)
    jwks_server.keys = [jwk(key, "kid-1")]
    auth = TokenSettings(
        jwks_url=jwks_server.url,
        issuer="https://id.example",
        audience="collab",
        roles_claim="realm_access.roles",
    )

    def signed(user: str, *roles: str, audience: str = "collab") -> str:
        claims = {
            "sub": user,
            "iss": "https://id.example",
            "aud": audience,
            "exp": int(time.time()) + 600,
            "realm_access": {"roles": list(roles)},
        }
        return sign(key, algorithm, claims, kid="kid-1")

    async with running_server(database_url, auth=auth) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            created = await http.post(
                "/api/projects", json={"name": "IdP"}, headers=bearer(signed("ivy"))
            )
            assert created.status_code == 201, created.text
            project = created.json()["id"]
            listed = await http.get("/api/projects", headers=bearer(signed("root", "admin")))
            assert listed.status_code == 200
            elsewhere = await http.get(
                f"/api/projects/{project}", headers=bearer(signed("ivy", audience="other"))
            )
            assert elsewhere.status_code == 401
            # our own HS256 tokens mean nothing to this server
            ours = await http.get(f"/api/projects/{project}", headers=bearer(token("ivy")))
            assert ours.status_code == 401
        client = await YClient(address, project, token=signed("ivy")).connect()
        try:
            await client.wait_synced()
        finally:
            await client.disconnect()
    assert jwks_server.requests == 1


async def test_an_auditor_holding_a_project_role_still_changes_nothing(project: Project) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        granted = await http.post(
            f"/api/projects/{project.id}/members",
            json={"member": "audrey", "role": "editor"},
            headers=bearer(CALLERS["owner"] or ""),
        )
        assert granted.status_code == 201
        method, path, body = _edit(project)
        edit = await http.request(method, path, json=body, headers=bearer(CALLERS["auditor"] or ""))
        assert edit.status_code == 403
        assert "auditor" in edit.json()["message"]


async def test_a_service_records_only_as_itself(project: Project) -> None:
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        method, path, body = _analysis(project)
        posing = {**body, "tool": {"agent_id": "renderer", "version": "1"}}
        refused = await http.request(
            method, path, json=posing, headers=bearer(CALLERS["service_granted"] or "")
        )
        assert refused.status_code == 403
        assert "may not record as 'renderer'" in refused.json()["message"]
        # a person may record what a tool made
        allowed = await http.request(
            method, path, json=posing, headers=bearer(CALLERS["editor"] or "")
        )
        assert allowed.status_code == 201, allowed.text


async def test_parents_must_be_readable_to_be_named(project: Project) -> None:
    """Naming another project's DAID as a parent would put that project's records in
    the lineage the caller reads back."""
    async with httpx.AsyncClient(base_url=f"http://{project.address}") as http:
        entity = {"type": "master", "id": "stolen", "content_hash": SHA}
        body = {"entity": entity, "activity": "render", "tool": TOOL}
        stranger = {
            **body,
            "derived_from": [project.daid],
            "tool": {"agent_id": "x", "version": "1"},
        }
        refused = await http.post(
            "/api/provenance", json=stranger, headers=bearer(CALLERS["stranger"] or "")
        )
        assert refused.status_code == 403
        viewer = {**stranger, "tool": {"agent_id": "x", "version": "1"}}
        ok = await http.post(
            "/api/provenance", json=viewer, headers=bearer(CALLERS["viewer"] or "")
        )
        assert ok.status_code == 201, ok.text
