"""The deployment files: the image's start conditions, without a Docker engine, and
compose.yaml's shape.

There is no Docker engine where the tests run, so the image is rebuilt the way its
Dockerfile says, by hand: the files its COPY lines name, in a root-owned folder, the
project installed from there (not editable), and ``collab serve`` started in that folder
as a user that is not root, with the Dockerfile's environment.

Over 400 lines because the image's start conditions and the compose file are checked
together: the compose checks refer to what the image test builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML comes with uvicorn[standard], a dependency of the server
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.support import ROOT, clean_env, free_port, stop_serve, timeout, wait_ready

#: the system user the image's user stands for here
USER = "collab-image-test"


@dataclass
class Dockerfile:
    workdir: str = "/"
    #: (sources, destination) of each COPY
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    volumes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def _dockerfile() -> Dockerfile:
    """The instructions of the Dockerfile this test relies on (not a general parser)."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        if (pending + raw).strip():
            lines.append(pending + raw)
        pending = ""
    parsed = Dockerfile()
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        match instruction.upper():
            case "WORKDIR":
                parsed.workdir = words[0]
            case "COPY":
                parsed.copies.append((words[:-1], words[-1]))
            case "ENV":
                parsed.env.update(word.split("=", 1) for word in words)
            case "USER":
                parsed.user = words[0]
            case "VOLUME":
                parsed.volumes.extend(words)
            case "RUN":
                parsed.runs.append(rest)
    return parsed


def _packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])


def test_the_dockerfile_copies_every_package_pyproject_builds():
    copied = {source.rstrip("/") for sources, _ in _dockerfile().copies for source in sources}
    missing = sorted(set(_packages()) - copied)
    assert not missing, f"the Dockerfile does not COPY {missing}: pip install . would lack them"
    assert {"pyproject.toml", "README.md"} <= copied  # the build reads both


def test_the_image_runs_as_a_user_with_its_own_data_volume():
    dockerfile = _dockerfile()
    assert dockerfile.user not in ("root", "0")
    data = dockerfile.env["COLLAB_DATA_DIR"]
    assert data in dockerfile.volumes
    # the folder must belong to the user before the volume is declared, or a new named
    # volume starts root-owned
    assert any(f"chown {dockerfile.user}" in run and data in run for run in dockerfile.runs)


# --- the image's start conditions, as a user that is not root -------------------------


@dataclass(frozen=True)
class Image:
    root: Path
    app: Path
    collab: Path
    user: pwd.struct_passwd
    env: dict[str, str]

    def folder(self, name: str, *, owned: bool) -> Path:
        path = self.root / name
        path.mkdir(mode=0o755)
        if owned:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.collab), *args],
            cwd=self.app,
            env={**self.env, **env},
            # extra_groups=[]: root's own groups would let the user read what it may not
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        process = self.popen(*args, **env)
        try:
            stdout, stderr = process.communicate(timeout=timeout(60))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError(f"collab {' '.join(args)} did not exit within 60 s") from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _system_user() -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(USER)
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        capture_output=True,
        text=True,
        timeout=timeout(30),
        check=False,
    )
    # 9: another test run on this machine created it first
    assert made.returncode in (0, 9), made.stderr
    return pwd.getpwnam(USER)


def _interpreter_for(user: pwd.struct_passwd) -> str:
    """A Python >= 3.11 that ``user`` may run. Often not the one running the tests: a
    pyenv or a venv under /root (mode 0700) is out of its reach, so the image's
    stand-in gets a virtual environment of its own on an interpreter it can reach."""
    candidates = [
        getattr(sys, "_base_executable", sys.executable),
        shutil.which("python3"),
        "/usr/bin/python3",
        "/usr/local/bin/python3",
    ]
    tried = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                timeout=timeout(30),
                check=False,
            )
        except OSError as exc:
            tried.append(f"{candidate}: {exc.strerror}")
            continue
        if probe.returncode == 0:
            return candidate
        tried.append(f"{candidate}: exit {probe.returncode}")
    pytest.fail(f"no Python >= 3.11 that user {user.pw_name} may run: {'; '.join(tried)}")


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    if os.geteuid() != 0:
        pytest.skip(
            "needs root, to create a system user and start collab serve as it (CI runs as root)"
        )
    dockerfile = _dockerfile()
    user = _system_user()
    # not pytest's tmp_path: its folders are 0700, out of the user's reach like /root
    root = Path(tempfile.mkdtemp(prefix="collab-image-"))
    try:
        root.chmod(0o755)
        app = root / "app"
        app.mkdir(mode=0o755)
        for sources, destination in dockerfile.copies:
            for source in sources:
                target = (
                    app / destination / (Path(source).name if destination.endswith("/") else "")
                )
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy(ROOT / source, target)
        venv = root / "venv"
        subprocess.run(
            [_interpreter_for(user), "-m", "venv", "--without-pip", str(venv)],
            check=True,
            timeout=timeout(60),
        )
        # `pip install .` of the Dockerfile: not editable, from the copied files only
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--quiet",
                "--no-cache-dir",
                "--disable-pip-version-check",
                str(app),
            ],
            capture_output=True,
            text=True,
            timeout=timeout(600),
            check=False,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]
        env = {k: v for k, v in clean_env(**dockerfile.env).items() if not k.startswith("XDG_")}
        # the image's defaults, not the test suite's: authentication and rate limits on
        env.update(COLLAB_AUTH="on", COLLAB_RATE_LIMITS="on", HOME=user.pw_dir)
        yield Image(root, app, venv / "bin" / "collab", user, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_the_image_serves_as_its_user_from_a_root_owned_folder(image):
    data = image.folder("data", owned=True)
    port = free_port()
    # the embedded database: the harshest case, everything lives in the data folder
    process = image.popen(
        "serve", COLLAB_HOST="127.0.0.1", COLLAB_PORT=str(port), COLLAB_DATA_DIR=str(data)
    )
    try:
        ready = await wait_ready(
            f"http://127.0.0.1:{port}",
            seconds=120,
            message="the image's collab serve never became ready",
            process=process,
            interval=0.2,
        )
        assert ready.json()["auth"] == "on"
    finally:
        code, stderr = await asyncio.to_thread(stop_serve, process)
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    kept = {p.name for p in data.iterdir()}
    assert {"pgdata", "auth-secret", "audit-ed25519.pem"} <= kept
    assert not (image.app / ".collab").exists()
    assert all(p.stat().st_uid == image.user.pw_uid for p in data.iterdir())


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_a_data_folder_the_user_cannot_write_is_one_line_and_exit_2(image):
    # what the image did before it had /data: the default .collab in the root-owned /app
    env = {k: v for k, v in image.env.items() if k != "COLLAB_DATA_DIR"}
    process = subprocess.run(
        [str(image.collab), "serve", "--port", str(free_port())],
        cwd=image.app,
        env=env,
        user=image.user.pw_uid,
        group=image.user.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )
    assert process.returncode == 2
    line = _one_line(process)
    assert f"{image.app / '.collab'}" in line
    assert "COLLAB_DATA_DIR" in line
    assert "--data-dir" in line

    # a folder that exists but is root's, by setting and by flag
    theirs = image.folder(f"root-{uuid.uuid4().hex[:6]}", owned=False)
    for result in (
        image.run("serve", "--port", str(free_port()), COLLAB_DATA_DIR=str(theirs)),
        image.run("serve", "--port", str(free_port()), "--data-dir", str(theirs / "below")),
        # another command on the embedded database says the same
        image.run("migrate", COLLAB_DATA_DIR=str(theirs)),
    ):
        assert result.returncode == 2, result.stderr[-3000:]
        assert "COLLAB_DATA_DIR" in _one_line(result)
        assert str(theirs) in result.stderr
    assert list(theirs.iterdir()) == []


@pytest.mark.slow
def test_an_audit_key_the_user_cannot_read_is_one_line_and_exit_2(image):
    key = image.root / f"audit-{uuid.uuid4().hex[:6]}.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    key.write_bytes(pem)
    key.chmod(0o600)  # root's, as a compose secret from a host file of another owner
    # nothing else in the data folder: the database, the token secret and the key are given
    result = image.run(
        "serve",
        "--port",
        str(free_port()),
        COLLAB_AUDIT_KEY_FILE=str(key),
        COLLAB_JWT_SECRET="s" * 32,
        DATABASE_URL="postgresql://collab@127.0.0.1:1/never",
    )
    assert result.returncode == 2
    line = _one_line(result)
    assert str(key) in line
    assert "COLLAB_AUDIT_KEY_FILE" in line


# --- compose.yaml -----------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def test_compose_validates_with_docker_compose():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")

    def config(**env: str) -> subprocess.CompletedProcess[str]:
        # `config` reads and checks the file against the compose schema; it needs no engine
        return subprocess.run(
            [binary, "-f", str(ROOT / "compose.yaml"), "config", "-q"],
            cwd=ROOT,
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout(60),
            check=False,
        )

    valid = config(COLLAB_JWT_SECRET="s" * 32)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    unset = config()
    assert unset.returncode != 0
    assert "COLLAB_JWT_SECRET" in unset.stderr


def test_compose_wires_every_node_alike():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "node1", "node2", "balancer"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    data = _dockerfile().env["COLLAB_DATA_DIR"]
    declared = set(compose["volumes"])
    node_volumes = []
    for name in ("node1", "node2"):
        node = services[name]
        env = node["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "COLLAB_JWT_SECRET", "COLLAB_AUDIT_KEY_FILE"} <= set(
            env
        )
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:" in env["DATABASE_URL"]
        # one shared key, given as a secret every node mounts
        (secret,) = node["secrets"]
        assert env["COLLAB_AUDIT_KEY_FILE"] == f"/run/secrets/{secret}"
        assert "file" in compose["secrets"][secret]
        assert node["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert "/ready" in " ".join(node["healthcheck"]["test"])
        (mount,) = [v for v in node["volumes"] if v.split(":")[1] == data]
        node_volumes.append(mount.split(":")[0])
    assert services["node1"]["environment"] == services["node2"]["environment"]
    assert len(set(node_volumes)) == 2, "each node needs a data volume of its own"
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert {v for v in used if not v.startswith(".")} <= declared
    assert {"pgdata", "redisdata"} <= declared

    balancer = services["balancer"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in balancer["volumes"]
    assert balancer["depends_on"] == {
        "node1": {"condition": "service_healthy"},
        "node2": {"condition": "service_healthy"},
    }
