"""kill -9 of the server at random moments (``tests/kill9.py``): no update any client
received as a broadcast is missing after the restart. ``bench/kill9.py`` runs a hundred."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.convergence import SERVER_SETTINGS
from tests.kill9 import kill_trial
from tests.serving import log_alarms, serving


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_broadcast_update_is_lost_to_kill_9(
    database_url: str, tmp_path: Path, seed: int
) -> None:
    async with serving(database_url, tmp_path / "serve.log", **SERVER_SETTINGS) as server:
        result = await kill_trial(server, seed)
    assert result.problem is None, result.describe()
    assert log_alarms(tmp_path / "serve.log") == (0, [])
    assert result.broadcasts > 0, result.describe()  # the kill came while edits flowed
