"""The installed ``collab`` command, run as a real process."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from collab.runtime.audit_key import load_or_create
from events import EventMetadata, NewEvent
from events.checkpoints import key_id
from events.models import DocUpdated, ProjectCreated
from events.postgres import PostgresEventStore
from events.schema import latest_version
from tests.support import (
    answers_200,
    clean_env,
    free_port,
    ready_and_running,
    stop_serve,
    timeout,
    wait_ready,
)

COLLAB = [sys.executable, "-m", "collab.cli"]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COLLAB, *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout(120),
        check=False,
    )


async def _wait_ready(
    port: int, process: subprocess.Popen[str], *, folding: bool = False
) -> httpx.Response:
    """/ready once it answers 200 (and, with ``folding``, every projection runs)."""
    return await wait_ready(
        f"http://127.0.0.1:{port}",
        ready_and_running if folding else answers_200,
        seconds=120,
        message="serve never became ready",
        process=process,
        interval=0.2,
    )


def _niceness(pid: int) -> int:
    # /proc/PID/stat: the 19th field; the command name (2nd) is in parentheses
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def _serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    """``collab serve`` as the README's first command runs it: authentication and rate
    limits on."""
    return subprocess.Popen(
        [*COLLAB, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=clean_env(COLLAB_LOG_FORMAT="json", COLLAB_AUTH="on", COLLAB_RATE_LIMITS="on"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _append_some(data_dir: Path, count: int) -> None:
    url = f"postgresql://postgres:@/postgres?host={data_dir / 'pgdata'}"
    store = await PostgresEventStore.connect(url)
    meta = EventMetadata(actor="alice")
    try:
        await store.append("project-p", [NewEvent(ProjectCreated(name="S", owner="a"), meta)])
        for i in range(count - 1):
            await store.append("project-p", [NewEvent(DocUpdated(update=bytes([i + 1])), meta)])
    finally:
        await store.close()


def test_serve_with_embedded_database(tmp_path):
    data_dir = (tmp_path / "data").resolve()
    port = free_port()
    process = _serve(data_dir, port)
    try:
        ready = asyncio.run(_wait_ready(port, process, folding=True))
        body = ready.json()
        worker = body.pop("projection_worker")
        embedded = body.pop("embedded_database")
        assert body == {
            "status": "ready",
            "database": "ok",
            "auth": "on",
            "schema_version": latest_version(),
            "projections_run": "worker",
            "projections": {
                name: {"state": "running", "position": 0, "lag": 0, "error": None, "failures": 0}
                for name in ("projects", "lineage", "audit_log")
            },
            # the only worker on the database leads; nothing was signed yet
            "projection_lead": {
                "role": "leader",
                "leader": f"collab-projections {socket.gethostname()[:40]}:{worker['pid']}",
            },
            "audit_key": {
                "key_id": key_id(load_or_create(data_dir / "audit-ed25519.pem").public_key()),
                "log_key_id": None,
                "sealing": "ok",
            },
        }
        # the server watches the embedded PostgreSQL (and has not had to restart it)
        postmaster = (data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
        assert embedded == {"pid": int(postmaster), "restarts": 0}
        # the projections fold in a process of their own, at a lower CPU priority
        assert worker["last_exit_code"] is None
        assert _niceness(worker["pid"]) == _niceness(process.pid) + 10
        health = httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-Request-ID": "req-42"})
        assert health.json() == {"status": "ok"}
        assert health.headers["x-request-id"] == "req-42"
        assert len(ready.headers["x-request-id"]) == 32

        _sign_in(data_dir, port)
        asyncio.run(_append_some(data_dir, 5))
        # a second process on the same data dir while the server runs
        verify = _run("audit", "verify", COLLAB_DATA_DIR=str(data_dir))
        assert verify.returncode == 0, verify.stderr
        # 5 appended here, and the 2 of the project created while signing in
        assert verify.stdout.startswith("OK: log verified: 7 events in 2 streams")
        assert asyncio.run(_wait_ready(port, process)).status_code == 200
        # the signing key was created in the data dir, for the owner's eyes only
        key_file = data_dir / "audit-ed25519.pem"
        assert key_file.stat().st_mode & 0o777 == 0o600
        _check_public_key(data_dir, key_file)
    finally:
        code, stderr = stop_serve(process)
    assert code == 0, stderr[-3000:]
    _check_printed_token(stderr, data_dir)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, stderr[-3000:]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert any(
        line["request_id"] == "req-42" and line["path"] == "/health" and line["status"] == 200
        for line in request_lines
    )
    # the last handle stopped the embedded PostgreSQL, and the worker is gone
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    assert not Path(f"/proc/{worker['pid']}").exists()
    assert any(line.get("event") == "projections stopped" for line in lines)

    # the data survives a restart of the server
    process = _serve(data_dir, port)
    try:
        asyncio.run(_wait_ready(port, process))
        verify = _run("audit", "verify", "--project", "p", COLLAB_DATA_DIR=str(data_dir))
        assert verify.returncode == 0, verify.stderr
        assert "5 events in 1 streams" in verify.stdout
    finally:
        code, stderr = stop_serve(process)
    assert code == 0, stderr[-3000:]


def _status(port: int, path: str, token: str | None) -> int | None:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers).status_code
    except httpx.ConnectError:
        return None


def _check_printed_token(stderr: str, data_dir: Path) -> None:
    """``serve`` prints an admin token of its secret for the first minute (not a log line)."""
    printed = re.search(r"admin token for this machine \(valid 24 h\):\n  (\S+)", stderr)
    assert printed is not None, stderr[-3000:]
    secret = bytes.fromhex((data_dir / "auth-secret").read_text())
    claims = jwt.decode(printed[1], secret, ["HS256"])
    assert (claims["sub"], claims["roles"]) == ("admin", ["admin"])
    assert 23 * 3600 < claims["exp"] - time.time() <= 24 * 3600
    assert not any(printed[1] in line for line in stderr.splitlines() if line.startswith("{"))
    # the studio's sign-in link carries the same token, in the fragment
    assert re.search(r"studio: http://127\.0\.0\.1:\d+/#token=" + re.escape(printed[1]), stderr)


def _sign_in(data_dir: Path, port: int) -> None:
    """Auth is on by default: no token, 401; a token of the server's secret (created in
    the data dir on first start), 200; a new user creates a project of their own."""
    assert _status(port, "/api/projects", None) == 401
    secret = data_dir / "auth-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    made = _run("token", "create", "--user", "ana", COLLAB_DATA_DIR=str(data_dir), COLLAB_AUTH="on")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert _status(port, "/api/projects", token) == 200
    created = httpx.post(
        f"http://127.0.0.1:{port}/api/projects",
        json={"name": "Mine"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    assert _status(port, "/api/projects", "forged." + token) == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "owner"], "--role must be admin or auditor"),
        (["--ttl", "soon"], "--ttl must look like"),
    ],
)
def test_token_create_refuses_bad_options(tmp_path, args, message):
    made = _run(
        "token", "create", "--user", "ana", *args, COLLAB_DATA_DIR=str(tmp_path), COLLAB_AUTH="on"
    )
    assert made.returncode == 2
    assert message in made.stderr


def test_token_create_needs_a_secret_of_the_server(tmp_path):
    off = _run("token", "create", "--user", "ana", COLLAB_DATA_DIR=str(tmp_path))
    assert off.returncode == 2
    assert "no secret of its own" in off.stderr
    made = _run(
        "token",
        "create",
        "--user",
        "ada",
        "--role",
        "admin",
        "--agent",
        "bot",
        "--ttl",
        "0",
        COLLAB_DATA_DIR=str(tmp_path),
        COLLAB_AUTH="on",
    )
    assert made.returncode == 0, made.stderr
    claims = jwt.decode(
        made.stdout.strip(), bytes.fromhex((tmp_path / "auth-secret").read_text()), ["HS256"]
    )
    assert claims["sub"] == "ada"
    assert claims["roles"] == ["admin"]
    assert claims["agent_id"] == "bot"
    assert "exp" not in claims


def test_migrate_command(tmp_path):
    first = _run("migrate", "--data-dir", str(tmp_path / "d"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"migrations applied: {list(range(1, latest_version() + 1))}"
    again = _run("migrate", COLLAB_DATA_DIR=str(tmp_path / "d"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "schema is up to date"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ((), {"COLLAB_PORT": "abc"}, "COLLAB_PORT"),
        (("--port", "70000"), {}, "--port"),
        ((), {"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ((), {"COLLAB_LOG_LEVEL": "loud"}, "COLLAB_LOG_LEVEL"),
    ],
)
def test_invalid_settings_exit_2_with_one_line(args, env, named):
    result = _run("serve", *args, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"collab: invalid setting {named}:")


def test_unreachable_database_is_a_clear_error():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    result = _run("migrate", DATABASE_URL=url)
    assert result.returncode == 3
    assert "database unavailable" in result.stderr
    served = _run("serve", "--port", str(free_port()), DATABASE_URL=url)
    assert served.returncode == 3
    assert "database unavailable" in served.stderr


async def test_serve_uses_database_url_when_given(database_url, tmp_path):
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - spawning returns at once; waits are threaded
        [*COLLAB, "serve", "--port", str(port), "--data-dir", str(tmp_path / "unused")],
        env=clean_env(DATABASE_URL=database_url, COLLAB_LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = await _wait_ready(port, process)
        assert ready.json()["status"] == "ready"
    finally:
        code, stderr = await asyncio.to_thread(stop_serve, process)
    assert code == 0, stderr[-3000:]
    assert '"embedded": false' in stderr
    # no embedded database was started in the data dir
    assert not (tmp_path / "unused" / "pgdata").exists()


def _check_public_key(data_dir: Path, key_file: Path) -> None:
    """``collab audit public-key`` prints a signed-note verifier key:
    name+keyid+base64(0x01 || the 32-byte key); ``--base64`` the raw key."""
    public = _run("audit", "public-key", COLLAB_DATA_DIR=str(data_dir))
    assert public.returncode == 0, public.stderr
    # a signed-note verifier key: name+keyid+base64(0x01 || the 32-byte key)
    name, key_hint, typed = public.stdout.strip().split("+", 2)
    assert (name, len(key_hint)) == (
        f"collab.audit/{key_id(load_or_create(key_file).public_key())}",
        8,
    )
    assert base64.b64decode(typed)[:1] == b"\x01"
    assert len(base64.b64decode(typed)) == 33
    raw = _run("audit", "public-key", "--base64", COLLAB_DATA_DIR=str(data_dir))
    assert len(base64.b64decode(raw.stdout.strip())) == 32
