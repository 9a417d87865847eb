"""The README's two commands are the ones CI and users run."""

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
