"""The audit log in the transparency-log standards, checked by a verifier we did not
write: C2SP signed-note checkpoints and tlog-proof@v1 receipts, verified by Go's
``golang.org/x/mod/sumdb/note`` and ``sumdb/tlog`` (``tests/go/verify.go``, built
against Debian's golang-golang-x-mod-dev), and by ``events.receipts``; the tamper
matrix of a receipt."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from collab.runtime.audit_key import load_or_create
from collab.runtime.config import AuditSettings
from events import bundle as bundle_module
from events import receipts
from events.checkpoints import Signer, parse_public_key
from events.receipts import ReceiptError
from tests.live import running_server
from tests.support import eventually, run_collab, timeout
from tests.test_audit_log import _event_hashes, _fill, collab
from tests.test_read_api import http

GO_SOURCE = Path(__file__).parent / "go" / "verify.go"
#: where Debian's golang-golang-x-mod-dev puts golang.org/x/mod
GO_PATH = "/usr/share/gocode"
ORIGIN = "collab.test/audit"


@pytest.fixture(scope="module")
def go_verify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go/verify.go, built (GOPATH mode, no network) against Debian's packages."""
    go = shutil.which("go")
    assert go is not None, "go is missing: apt-get install golang-go golang-golang-x-mod-dev"
    assert Path(GO_PATH, "src/golang.org/x/mod/sumdb/note").is_dir(), (
        "golang.org/x/mod is missing: apt-get install golang-golang-x-mod-dev"
    )
    work = tmp_path_factory.mktemp("go")
    binary = work / "verify"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GO_PATH,
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "",
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(300),
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return binary


def _go(binary: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )


def _audit(tmp_path: Path) -> AuditSettings:
    return AuditSettings(
        key_file=tmp_path / "key.pem",
        checkpoint_every=10,
        checkpoint_seconds=0.3,
        origin=ORIGIN,
    )


async def _newest(client: httpx.AsyncClient, size: int) -> dict[str, Any]:
    async def signed() -> bool:
        response = await client.get("/api/audit/checkpoint?format=json")
        return response.status_code == 200 and response.json()["tree_size"] >= size

    await eventually(signed, timeout(20), f"no checkpoint of {size} events")
    return dict((await client.get("/api/audit/checkpoint?format=json")).json())


async def test_checkpoints_are_signed_notes_that_gos_note_package_verifies(
    database_url: str, tmp_path: Path, go_verify: Path
) -> None:
    audit = _audit(tmp_path)
    async with running_server(database_url, audit=audit) as address, http(address) as client:
        _, head = await _fill(client, address, 12)
        checkpoint = await _newest(client, head)
        note = await client.get("/api/audit/checkpoint")
        assert note.headers["content-type"] == "text/plain; charset=utf-8"
        assert note.text == checkpoint["note"]
    # the verifier key as the operator prints it
    printed = run_collab(
        database_url,
        "audit",
        "public-key",
        COLLAB_AUDIT_KEY_FILE=str(audit.key_file),
        COLLAB_AUDIT_ORIGIN=ORIGIN,
    )
    assert printed.returncode == 0, printed.stderr
    vkey = printed.stdout.strip()
    assert vkey == checkpoint["verifier_key"]
    assert vkey.startswith(f"{ORIGIN}+")

    root64 = base64.b64encode(bytes.fromhex(checkpoint["root"])).decode()
    verified = _go(go_verify, "checkpoint", vkey, stdin=note.text)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.split() == [
        "OK",
        "checkpoint",
        ORIGIN,
        str(checkpoint["tree_size"]),
        root64,
    ]

    size = str(checkpoint["tree_size"])
    other = Signer(load_or_create(tmp_path / "other.pem"), ORIGIN)
    for name, text, key in [
        ("a changed size", note.text.replace(f"\n{size}\n", f"\n{int(size) + 1}\n", 1), vkey),
        ("a changed root", note.text.replace(root64, base64.b64encode(b"\0" * 32).decode()), vkey),
        ("another origin", note.text.replace(ORIGIN, "collab.test/other", 1), vkey),
        ("another key", note.text, other.verifier_key),
    ]:
        refused = _go(go_verify, "checkpoint", key, stdin=text)
        assert refused.returncode == 1, name
        assert refused.stdout.startswith("FAIL: "), name

    # and our own command-line check takes the printed key as it is
    result = collab(database_url, "audit", "verify", "--public-key", vkey)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_receipts_verify_in_go_and_python_and_every_tampering_is_caught(
    database_url: str, tmp_path: Path, go_verify: Path
) -> None:
    audit = _audit(tmp_path)
    async with running_server(database_url, audit=audit) as address, http(address) as client:
        project, head = await _fill(client, address, 12)
        checkpoint = await _newest(client, head)
        size = checkpoint["tree_size"]
        texts = {
            position: (await client.get("/api/audit/receipt", params={"position": position})).text
            for position in sorted({1, 2, size // 2, size})
        }
        beyond = await client.get("/api/audit/receipt", params={"position": size + 50})
        assert beyond.status_code in (404, 422), beyond.text
        bundle = (await client.get(f"/api/projects/{project}/audit-bundle")).json()
    key = load_or_create(audit.key_file).public_key()
    vkey = checkpoint["verifier_key"]
    hashes = await _event_hashes(database_url)
    for position, text in texts.items():
        event_hash = hashes[position - 1]
        assert text.startswith(f"c2sp.org/tlog-proof@v1\nindex {position - 1}\n")
        assert text.endswith(checkpoint["note"])
        ok = _go(go_verify, "receipt", vkey, event_hash.hex(), stdin=text)
        assert ok.returncode == 0, ok.stdout
        assert receipts.verify(text, event_hash, parse_public_key(vkey)).index == position - 1

    position = size // 2
    text, event_hash = texts[position], hashes[position - 1]
    lines = text.split("\n")
    fork = Signer(load_or_create(audit.key_file), ORIGIN).sign(size, b"\x07" * 32)
    tampered = {
        "another event (a field changed)": (text, hashes[position]),
        "a changed proof hash": (
            "\n".join([*lines[:2], base64.b64encode(b"\1" * 32).decode(), *lines[3:]]),
            event_hash,
        ),
        "another index": (text.replace(f"index {position - 1}", f"index {position}"), event_hash),
        "a truncated proof": ("\n".join([*lines[:2], *lines[3:]]), event_hash),
        "a forked log's checkpoint, signed with the same key": (
            text[: text.index("\n\n") + 2] + fork.note(key),
            event_hash,
        ),
    }
    for name, (bad, hashed) in tampered.items():
        refused = _go(go_verify, "receipt", vkey, hashed.hex(), stdin=bad)
        assert refused.returncode == 1, (name, refused.stdout)
        with pytest.raises(ReceiptError):
            receipts.verify(bad, hashed, key)

    # the exported bundle carries each covered event's receipt, and they verify
    covered = [e for e in bundle["events"] if e["position"] <= bundle["checkpoint"]["tree_size"]]
    assert covered
    assert all(e["receipt"] and e["receipt"].endswith(bundle["checkpoint_note"]) for e in covered)
    for item in covered:
        receipts.verify(item["receipt"], bytes.fromhex(item["hash"]), key)
    assert bundle_module.verify(bundle, key).ok
    covered[0]["receipt"] = covered[0]["receipt"].replace("index ", "index 1", 1)
    broken = bundle_module.verify(bundle, key).first_break
    assert broken is not None
    assert (broken.position, broken.check) == (covered[0]["position"], "receipt")


def test_an_origin_no_signed_note_can_carry_is_refused_at_start(
    database_url: str, tmp_path: Path
) -> None:
    refused = run_collab(
        database_url,
        "audit",
        "public-key",
        COLLAB_AUDIT_KEY_FILE=str(tmp_path / "key.pem"),
        COLLAB_AUDIT_ORIGIN="my log",
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "'my log' cannot be a log origin" in refused.stderr
