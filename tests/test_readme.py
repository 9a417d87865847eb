"""The README's two commands are the ones CI and users run."""

import os
import sys
from pathlib import Path

from collab.access.tokens import TokenSettings
from tests.support import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    run, test = _readme_commands()
    assert run.endswith("collab serve")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = _readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines


def _walkthrough() -> list[tuple[str, list[str]]]:
    """The README's history/snapshot/rollback session: (command, expected output lines)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("### History, snapshot, rollback\n", 1)[1].split("```sh\n", 1)[1]
    steps: list[tuple[str, list[str]]] = []
    continuing = False
    for line in block.split("```", 1)[0].splitlines():
        if line.startswith("$ ") or continuing:
            command = line.removeprefix("$ ")
            if continuing:
                steps[-1] = (steps[-1][0] + "\n" + command, [])
            else:
                steps.append((command, []))
            continuing = line.endswith("\\")
        else:
            steps[-1][1].append(line)
    return steps


async def test_the_readme_walkthrough_runs_as_written(database_url):
    import asyncio  # noqa: PLC0415
    import re  # noqa: PLC0415

    from tests.live import running_server  # noqa: PLC0415

    steps = _walkthrough()
    assert len(steps) >= 7
    secret = "readme-walkthrough-secret-of-32-bytes!"  # noqa: S105 - a test's own secret
    env = {
        **os.environ,
        "COLLAB_JWT_SECRET": secret,
        # the README calls the installed command by name
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    async with running_server(database_url, auth=TokenSettings(secret=secret.encode())) as address:
        marker = "---readme-step---"
        script = "set -e\n" + "".join(
            f"echo {marker}\n{command.replace('localhost:8000', address)}\necho\n"
            for command, _ in steps
        )
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    outputs = out.decode().split(marker + "\n")[1:]
    assert len(outputs) == len(steps)
    for (command, expected), output in zip(steps, outputs, strict=True):
        got = [line for line in output.splitlines() if line.strip()]
        assert len(got) == len(expected), (command, got)
        for want, line in zip(expected, got, strict=True):
            pattern = ".*".join(re.escape(part) for part in want.split("…"))
            assert re.fullmatch(pattern, line), (command, want, line)
