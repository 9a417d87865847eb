"""deploy/nginx.conf run by a real nginx (Debian's nginx-light) in front of nodes on
loopback ports, for the balancer and deployment tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support import ROOT, free_port, timeout


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise AssertionError("nginx is not installed (.ci/run installs Debian's nginx-light)")
    return found


def await_answer(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout(30)
    last = "none"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=timeout(5))
        except httpx.TransportError as exc:
            last = repr(exc)
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"{what} did not answer within 30 s (last: {last})")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout(30))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout(30))


@contextlib.contextmanager
def nginx_in_front(folder: Path, ports: dict[str, int]) -> Iterator[int]:
    """deploy/nginx.conf with ``node1`` and ``node2`` at these loopback ports, running;
    yields the port it listens on."""
    nginx = nginx_binary()
    listen = free_port()
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    for name, port in ports.items():
        assert config.count(f"server {name}:8000") == 1
        config = config.replace(f"server {name}:8000", f"server 127.0.0.1:{port}")
    assert config.count("listen 8000;") == 1
    config = config.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    # nginx started by root would create (and chown) its temporary folders and write its
    # access log in the system's places; here they stay in the test's folder
    temporary = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = config.replace("http {\n", f"http {{\n    access_log off;\n{temporary}", 1)
    (folder / "nginx.conf").write_text(config)
    command = [nginx, "-e", "stderr", "-p", str(folder), "-c", str(folder / "nginx.conf")]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=timeout(30), check=False
    )
    assert checked.returncode == 0, checked.stderr
    server = subprocess.Popen(
        [*command, "-g", f"daemon off; pid {folder / 'nginx.pid'};"], stdin=subprocess.DEVNULL
    )
    try:
        await_answer(f"http://127.0.0.1:{listen}/health", server, "nginx")
        yield listen
    finally:
        stop(server)
