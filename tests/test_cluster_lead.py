"""One cluster, one audit log: two ``collab serve`` nodes on one database, one worker
leading (folding and sealing), the other standing by and taking over when the leader
dies; a node with another signing key refuses to seal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from collab.runtime.audit_key import load_or_create
from events.checkpoints import key_id, public_key_text
from tests.reading import TRACK, edit, http
from tests.serving import ServeProcess, serving
from tests.support import eventually, run_collab, timeout


def _node(tmp_path: Path, name: str, key_file: Path) -> dict[str, str]:
    """The settings of one node: a data dir of its own, the cluster's key file."""
    return {
        "COLLAB_DATA_DIR": str(tmp_path / name),
        "COLLAB_AUDIT_KEY_FILE": str(key_file),
        "COLLAB_CHECKPOINT_SECONDS": "0.3",
        "COLLAB_POLL_INTERVAL": "0.2",
        "COLLAB_LEADER_RETRY": "0.5",
    }


async def _ready(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/ready")
    body: dict[str, Any] = response.json()
    body["code"] = response.status_code
    return body


async def _roles(*clients: httpx.AsyncClient) -> list[str]:
    return [(await _ready(client))["projection_lead"]["role"] for client in clients]


async def _create(client: httpx.AsyncClient, name: str, actor: str) -> str:
    response = await client.post("/api/projects", json={"name": name}, headers={"X-Actor": actor})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _sealed_to_head(client: httpx.AsyncClient) -> bool:
    """Every projection is at the head of the log and the newest checkpoint covers it."""
    body = await _ready(client)
    projections = body["projections"]
    if body["code"] != 200 or any(p["lag"] for p in projections.values()):
        return False
    checkpoint = await client.get("/api/audit/checkpoint?format=json")
    return (
        checkpoint.status_code == 200
        and checkpoint.json()["tree_size"] == projections["audit_log"]["position"]
    )


def _verify(database_url: str, public_key: str) -> str:
    result = run_collab(database_url, "audit", "verify", "--public-key", public_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signatures" in result.stdout, result.stdout
    return result.stdout


def _log_lines(log: Path, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and wanted(entry):
                found.append(entry)
    return found


async def _kill_node(node: ServeProcess, worker_pid: int) -> None:
    """The node and its worker die at once, without a word (a machine lost)."""
    await node.kill()
    os.kill(worker_pid, signal.SIGKILL)


async def test_two_nodes_sign_one_log_and_a_standby_takes_over(database_url: str, tmp_path: Path):
    key_file = tmp_path / "cluster-audit.pem"
    public_key = public_key_text(load_or_create(key_file).public_key())
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    async with (
        serving(database_url, a_log, **_node(tmp_path, "a", key_file)) as a,
        serving(database_url, b_log, **_node(tmp_path, "b", key_file)) as b,
        http(a.address) as at_a,
        http(b.address) as at_b,
    ):

        async def one_leads() -> bool:
            return sorted(await _roles(at_a, at_b)) == ["leader", "standby"]

        await eventually(one_leads, 30, "not exactly one worker leads")
        # Writes through both nodes, folded and sealed by the one leader.
        for round_ in range(3):
            for client, actor in ((at_a, "ana"), (at_b, "ben")):
                project = await _create(client, f"{actor} {round_}", actor)
                await edit(client, project, [TRACK], actor)
        await eventually(lambda: _sealed_to_head(at_a), 30, "the log was not sealed to its head")
        first = _verify(database_url, public_key)
        bodies = [await _ready(at_a), await _ready(at_b)]
        assert all(body["code"] == 200 for body in bodies), bodies
        assert bodies[0]["projection_lead"]["leader"] == bodies[1]["projection_lead"]["leader"]
        assert all(body["audit_key"]["sealing"] == "ok" for body in bodies), bodies
        status = await asyncio.to_thread(run_collab, database_url, "projections", "status")
        leader = bodies[0]["projection_lead"]["leader"]
        assert status.stdout.splitlines()[-1] == f"lead: {leader} (this machine)", status.stdout

        # The leader's connection ends under it (a network cut, an operator): it stops
        # folding and asks again, like the standby; one of them leads.
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = $1",
                bodies[0]["projection_lead"]["leader"],
            )
        finally:
            await admin.close()

        def lost_it() -> bool:
            return any(
                _log_lines(log, lambda e: e.get("event", "").startswith("lost the lead"))
                for log in (a_log, b_log)
            )

        await eventually(lost_it, 10, "the leader did not notice it lost the lead")
        await eventually(one_leads, 15, "not exactly one worker leads again")
        project = await _create(at_b, "between", "dana")
        await edit(at_a, project, [TRACK], "dana")
        await eventually(lambda: _sealed_to_head(at_a), 30, "the log was not sealed again")
        bodies = [await _ready(at_a), await _ready(at_b)]

        # The leading node is lost with its worker; the other one takes over.
        leading, standby, at_standby = (
            (a, b, at_b) if bodies[0]["projection_lead"]["role"] == "leader" else (b, a, at_a)
        )
        leader_pid = (bodies[0] if leading is a else bodies[1])["projection_worker"]["pid"]
        killed_at = time.monotonic()
        await _kill_node(leading, leader_pid)

        async def took_over() -> bool:
            return (await _roles(at_standby)) == ["leader"]

        await eventually(took_over, 15, "the standby did not take the lead", interval=0.05)
        delay = time.monotonic() - killed_at
        # Kept beside the nodes' logs, for whoever reads how long a takeover took.
        (tmp_path / "takeover-seconds").write_text(f"{delay:.3f}\n")
        assert delay < timeout(10), f"the takeover took {delay:.1f} s"
        assert _log_lines(standby.log, lambda e: e.get("event", "").startswith("standby:"))

        for round_ in range(2):
            project = await _create(at_standby, f"after {round_}", "cleo")
            await edit(at_standby, project, [TRACK], "cleo")
        await eventually(
            lambda: _sealed_to_head(at_standby), 30, "the new leader did not seal the log"
        )
        second = _verify(database_url, public_key)
        assert first != second  # more events, more checkpoints, one key
        assert (await _ready(at_standby))["code"] == 200


async def test_a_node_with_another_key_refuses_to_seal_and_says_so(
    database_url: str, tmp_path: Path
):
    right_file, wrong_file = tmp_path / "right.pem", tmp_path / "wrong.pem"
    right, wrong = load_or_create(right_file), load_or_create(wrong_file)
    right_id, wrong_id = key_id(right.public_key()), key_id(wrong.public_key())
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    async with (
        serving(database_url, a_log, **_node(tmp_path, "a", right_file)) as a,
        http(a.address) as at_a,
    ):
        await _create(at_a, "Signed", "ana")
        await eventually(lambda: _sealed_to_head(at_a), 30, "the log was not sealed")
        async with (
            serving(database_url, b_log, **_node(tmp_path, "b", wrong_file)) as b,
            http(b.address) as at_b,
        ):
            # A standby with the wrong key says so before it ever leads, and is ready.
            body = await _ready(at_b)
            assert body["code"] == 200, body
            assert body["projection_lead"]["role"] == "standby"
            assert body["audit_key"]["key_id"] == wrong_id
            assert body["audit_key"]["log_key_id"] == right_id
            assert body["audit_key"]["sealing"].startswith("refused: ")
            assert "COLLAB_AUDIT_KEY_FILE" in body["audit_key"]["sealing"]
            assert "collab_audit_key_mismatch 1.0" in (await at_b.get("/metrics")).text
            assert "collab_audit_key_mismatch 0.0" in (await at_a.get("/metrics")).text

            await a.stop()

            async def b_leads() -> bool:
                return (await _roles(at_b)) == ["leader"]

            await eventually(b_leads, 15, "the wrong-key node did not take the lead")
            sealed = (await at_b.get("/api/audit/checkpoint?format=json")).json()["tree_size"]
            await _create(at_b, "Unsealed", "ben")

            def refused() -> bool:
                return bool(
                    _log_lines(
                        b_log,
                        lambda e: e.get("event", "").startswith("audit checkpoint NOT signed"),
                    )
                )

            await eventually(refused, 15, "the wrong-key leader did not say it refuses")
            (entry, *_) = _log_lines(b_log, lambda e: e.get("event", "").startswith("audit chec"))
            assert entry["level"] == "error"
            assert (entry["own_key_id"], entry["log_key_id"]) == (wrong_id, right_id)
            assert "COLLAB_AUDIT_KEY_FILE" in entry["reason"]

            # The events are folded, not signed: the log still verifies with its key.
            async def folded() -> bool:
                audit_log = (await _ready(at_b))["projections"]["audit_log"]
                return bool(audit_log["lag"] == 0 and audit_log["position"] > sealed)

            await eventually(folded, 15, "the wrong-key leader did not fold the audit log")
            await asyncio.sleep(timeout(1))  # several sealing rounds of 0.3 s
            assert (await at_b.get("/api/audit/checkpoint?format=json")).json()[
                "tree_size"
            ] == sealed
            _verify(database_url, public_key_text(right.public_key()))
            result = run_collab(
                database_url, "audit", "verify", "--public-key", public_key_text(wrong.public_key())
            )
            assert result.returncode == 1, result.stdout
