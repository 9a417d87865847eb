"""Convergence under seeded interleavings of edits, disconnects, reconnects and server
restarts (``tests/convergence.py``); ``bench/convergence.py`` runs a thousand trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.convergence import SERVER_SETTINGS, trial
from tests.serving import log_alarms, serving


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_clients_room_and_log_converge_after_a_seeded_schedule(
    database_url: str, tmp_path: Path, node_client_script: Path, seed: int
) -> None:
    async with serving(database_url, tmp_path / "serve.log", **SERVER_SETTINGS) as server:
        result = await trial(server, seed, clients=3, steps=30, node_script=node_client_script)
    assert result.problem is None, result.describe()
    assert log_alarms(tmp_path / "serve.log") == (0, [])
    assert result.edits > 0


@pytest.mark.parametrize("seed", [11, 12])
async def test_values_outside_the_schema_are_corrected_and_everything_converges(
    database_url: str, tmp_path: Path, node_client_script: Path, seed: int
) -> None:
    async with serving(database_url, tmp_path / "serve.log", **SERVER_SETTINGS) as server:
        result = await trial(
            server, seed, clients=3, steps=30, node_script=node_client_script, invalid=12
        )
    assert result.problem is None, result.describe()
    assert log_alarms(tmp_path / "serve.log") == (0, [])
    assert result.invalid > 0
