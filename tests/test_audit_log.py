"""The global Merkle log: signed checkpoints, RFC 6962 proofs checked by the test's
own verifier (``tests.test_merkle``), tampering caught against checkpoints, and
offline verification of exported bundles."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from collab.runtime.config import AuditSettings
from events import daid as daid_module
from events.integrity import stored_daid_hash16
from events.models import project_of
from events.postgres import PostgresEventStore
from events.records import chain_hash, stored_content_hash
from tests.live import running_server
from tests.support import eventually, run_collab, timeout
from tests.test_merkle import mth, root_from_path, roots_from_proof
from tests.test_read_api import TRACK, edit, http


def collab(
    database_url: str, *args: str, key_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"COLLAB_AUDIT_KEY_FILE": str(key_file)} if key_file is not None else {}
    return run_collab(database_url, *args, **env)


async def _event_hashes(database_url: str) -> list[bytes]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("select hash from events order by position")
        return [bytes(row["hash"]) for row in rows]
    finally:
        await conn.close()


async def _fill(client: httpx.AsyncClient, address: str, edits: int) -> tuple[str, int]:
    response = await client.post("/api/projects", json={"name": "Audit"})
    project = response.json()["id"]
    await edit(client, project, [TRACK])
    done: dict[str, Any] = {}
    for n in range(edits):
        done = await edit(
            client,
            project,
            [{"op": "update_track", "track_id": "bass", "fields": {"volume_db": -n}}],
        )
    return project, int(done["position"])


async def _checkpoint(client: httpx.AsyncClient, size: int) -> dict[str, Any]:
    async def signed() -> bool:
        response = await client.get("/api/audit/checkpoint?format=json")
        return response.status_code == 200 and response.json()["tree_size"] >= size

    await eventually(signed, timeout(20), f"no checkpoint of {size} events")
    return (await client.get("/api/audit/checkpoint?format=json")).json()


def _public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))


def _audit(tmp_path: Path, **changes: Any) -> AuditSettings:
    return replace(
        AuditSettings(key_file=tmp_path / "key.pem", checkpoint_every=10, checkpoint_seconds=0.3),
        **changes,
    )


async def test_checkpoints_and_proofs_verify_independently(database_url, tmp_path):
    async with (
        running_server(database_url, audit=_audit(tmp_path)) as address,
        http(address) as client,
    ):
        _project, head = await _fill(client, address, 24)
        checkpoint = await _checkpoint(client, head)
        size = checkpoint["tree_size"]
        hashes = await _event_hashes(database_url)
        # the signed root is the RFC 6962 root of the events' chain hashes
        assert bytes.fromhex(checkpoint["root"]) == mth(hashes[:size])
        key = _public_key(checkpoint["public_key"])
        # a C2SP checkpoint: the signature covers the origin, size and base64 root lines
        root64 = base64.b64encode(bytes.fromhex(checkpoint["root"])).decode()
        body = f"{checkpoint['origin']}\n{size}\n{root64}\n"
        key.verify(base64.b64decode(checkpoint["signature"]), body.encode())
        note = (await client.get("/api/audit/checkpoint")).text
        assert note.startswith(body + "\n\u2014 " + checkpoint["origin"] + " ")
        for position in sorted({1, 2, size // 2, size - 1, size}):
            proof = (
                await client.get("/api/audit/proof/inclusion", params={"position": position})
            ).json()
            leaf = bytes.fromhex(proof["leaf_hash"])
            assert leaf == hashlib.sha256(b"\x00" + hashes[position - 1]).digest()
            path = [bytes.fromhex(h) for h in proof["proof"]]
            assert root_from_path(position - 1, size, leaf, path) == mth(hashes[:size])
            assert proof["checkpoint"]["signature"] == checkpoint["signature"]
        small = (
            await client.get("/api/audit/proof/inclusion", params={"position": 3, "tree_size": 7})
        ).json()
        leaf = bytes.fromhex(small["leaf_hash"])
        assert root_from_path(2, 7, leaf, [bytes.fromhex(h) for h in small["proof"]]) == mth(
            hashes[:7]
        )
        for old in (1, 4, 10, size - 3, size):
            consistency = (
                await client.get("/api/audit/proof/consistency", params={"from": old})
            ).json()
            proof = [bytes.fromhex(h) for h in consistency["proof"]]
            old_root, new_root = mth(hashes[:old]), mth(hashes[:size])
            assert bytes.fromhex(consistency["from_root"]) == old_root
            assert roots_from_proof(old, size, proof, old_root) == (old_root, new_root)
        for params in (
            {"position": size + 1, "tree_size": size},
            {"position": 0},
            {"position": 1, "tree_size": 10**9},
            {},
        ):
            response = await client.get("/api/audit/proof/inclusion", params=params)
            assert response.status_code == 422, (params, response.text)
        response = await client.get("/api/audit/proof/consistency", params={"from": size + 1})
        assert response.status_code == 422


async def test_a_quiet_log_is_checkpointed_after_the_interval(database_url, tmp_path):
    audit = _audit(tmp_path, checkpoint_every=1000, checkpoint_seconds=0.5)
    async with running_server(database_url, audit=audit) as address, http(address) as client:
        assert (await client.get("/api/audit/checkpoint?format=json")).status_code == 404
        _project, head = await _fill(client, address, 3)
        checkpoint = await _checkpoint(client, head)
        assert checkpoint["tree_size"] == head
        assert checkpoint["signed_by_current_key"] is True


async def _tamper(url: str, *statements: str | tuple[str, list[Any]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("alter table events disable trigger user")
            for item in statements:
                text, args = (item, []) if isinstance(item, str) else item
                await conn.execute(text, *args)
            await conn.execute("alter table events enable trigger user")
    finally:
        await conn.close()


async def _signed_log(database_url: str, tmp_path: Path) -> tuple[int, str]:
    async with (
        running_server(database_url, audit=_audit(tmp_path)) as address,
        http(address) as client,
    ):
        _project, head = await _fill(client, address, 14)
        checkpoint = await _checkpoint(client, head)
        return head, checkpoint["public_key"]


async def test_a_truncated_tail_is_caught_against_an_older_checkpoint(database_url, tmp_path):
    head, public_key = await _signed_log(database_url, tmp_path)
    intact = await asyncio.to_thread(
        collab, database_url, "audit", "verify", "--public-key", public_key
    )
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "checkpoints verified (roots and signatures)" in intact.stdout
    # A careful truncation: the last three events go, and the stream head and the log
    # head are set back so that every chain link still holds.
    last_kept = head - 3
    await _tamper(
        database_url,
        f"delete from events where position > {last_kept}",
        f"update event_log_head set last_position = {last_kept}",
        "update streams s set version = e.stream_version, last_hash = e.hash"
        f" from events e where e.stream_id = s.stream_id and e.position = {last_kept}",
    )
    result = await asyncio.to_thread(
        collab, database_url, "audit", "verify", "--public-key", public_key
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the log lost its tail" in result.stdout
    assert f"found {last_kept} events" in result.stdout


async def test_a_consistent_rewrite_is_caught_by_the_signed_root(database_url, tmp_path):
    head, public_key = await _signed_log(database_url, tmp_path)
    store = await PostgresEventStore.connect(database_url)
    try:
        (last,) = await store.read_all(head - 1, 1)
    finally:
        await store.close()
    # Someone with the database rewrites the last event and recomputes every hash the
    # rows carry (DAID, content hash, chain link, stream head): only the signed
    # checkpoint, whose key is not in the database, can tell.
    forged = replace(last, data={**last.data, "client_id": 4242})
    parsed = daid_module.parse(forged.daid)
    forged = replace(forged, daid=str(replace(parsed, hash16=stored_daid_hash16(forged))))
    forged = replace(forged, content_hash=stored_content_hash(forged))
    link = chain_hash(
        forged.prev_hash,
        forged.content_hash,
        forged.stream_version,
        forged.position,
        forged.recorded_at,
    )
    await _tamper(
        database_url,
        (
            "update events set data = $1::jsonb, daid = $2, content_hash = $3, hash = $4"
            " where position = $5",
            [json.dumps(forged.data), forged.daid, forged.content_hash, link, head],
        ),
        ("update streams set last_hash = $1 where stream_id = $2", [link, forged.stream_id]),
    )
    chain_only = await asyncio.to_thread(
        collab,
        database_url,
        "audit",
        "verify",
        "--project",
        project_of(forged.stream_id),
    )
    assert chain_only.returncode == 0, chain_only.stdout + chain_only.stderr
    result = await asyncio.to_thread(
        collab, database_url, "audit", "verify", "--public-key", public_key
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"root of the first {head} events" in result.stdout
    # Rebuilding the Merkle log over the rewritten events refuses to go past the
    # checkpoint it no longer reproduces.
    rebuilt = await asyncio.to_thread(collab, database_url, "projections", "rebuild", "audit_log")
    assert rebuilt.returncode == 3, rebuilt.stdout + rebuilt.stderr
    assert f"the first {head} events no longer have the root" in rebuilt.stderr


async def test_a_forged_checkpoint_signature_is_caught(database_url, tmp_path):
    _head, _public_key_text = await _signed_log(database_url, tmp_path)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    result = await asyncio.to_thread(
        collab, database_url, "audit", "verify", "--public-key", base64.b64encode(other).decode()
    )
    assert result.returncode == 1
    assert "signed by key" in result.stdout
    bad = await asyncio.to_thread(collab, database_url, "audit", "verify", "--public-key", "xyz")
    assert bad.returncode == 2
    assert "not an Ed25519 public key" in bad.stderr


async def test_exported_bundle_verifies_offline_and_catches_changes(database_url, tmp_path):
    # Checkpoints every 10 events only: the last events of the bundle come after it.
    audit = _audit(tmp_path, checkpoint_seconds=600)
    async with running_server(database_url, audit=audit) as address, http(address) as client:
        project, _head = await _fill(client, address, 12)
        checkpoint = await _checkpoint(client, 10)
        # A few more (fewer than the next checkpoint needs) come after it, however the
        # audit log batched the first ones.
        for n in range(3):
            done = await edit(
                client,
                project,
                [{"op": "update_track", "track_id": "bass", "fields": {"pan": n / 10}}],
            )
        head = int(done["position"])
        assert (await client.get("/api/audit/checkpoint?format=json")).json() == checkpoint
        assert checkpoint["tree_size"] < head
        public_key = checkpoint["public_key"]
        exported = await asyncio.to_thread(
            collab, database_url, "audit", "export", project, key_file=tmp_path / "key.pem"
        )
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(exported.stdout)
    assert bundle["public_key"] == public_key
    path = tmp_path / "bundle.json"

    def verify(data: dict[str, Any], key: str = public_key) -> subprocess.CompletedProcess[str]:
        path.write_text(json.dumps(data))
        # no database: a URL that cannot be reached proves none is opened
        return collab(
            "postgresql://127.0.0.1:1/none",
            "audit",
            "verify",
            "--bundle",
            str(path),
            "--public-key",
            key,
        )

    ok = await asyncio.to_thread(verify, bundle)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    events = len(bundle["events"])
    newer = head - checkpoint["tree_size"]
    assert f"OK: bundle verified: {events} events, {events - newer} proven" in ok.stdout
    assert f"{newer} newer events chain-checked only" in ok.stdout

    changed = json.loads(json.dumps(bundle))
    changed["events"][2]["metadata"]["actor"] = "mallory"
    result = await asyncio.to_thread(verify, changed)
    assert result.returncode == 1
    assert "content hash" in result.stdout

    bad_proof = json.loads(json.dumps(bundle))
    bad_proof["events"][1]["inclusion_proof"][0] = "00" * 32
    result = await asyncio.to_thread(verify, bad_proof)
    assert result.returncode == 1
    assert "inclusion in the signed log" in result.stdout

    dropped = json.loads(json.dumps(bundle))
    del dropped["events"][1]
    result = await asyncio.to_thread(verify, dropped)
    assert result.returncode == 1
    assert "stream version" in result.stdout

    other = base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
    result = await asyncio.to_thread(verify, bundle, other)
    assert result.returncode == 1
    assert "signature" in result.stdout

    result = await asyncio.to_thread(verify, {"format": "something else"})
    assert result.returncode == 2
    assert "not a collab-audit-bundle/1 bundle" in result.stderr
