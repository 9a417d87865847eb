"""Tamper evidence: changes made by a superuser with the trigger disabled are caught."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

from events import EventMetadata, NewEvent
from events.models import DocUpdated, ProjectCreated
from events.postgres import PostgresEventStore
from tests.support import clean_env

META = EventMetadata(actor="alice")


async def _fill(store: PostgresEventStore) -> None:
    await store.append("project-p1", [NewEvent(ProjectCreated(name="One", owner="a"), META)])
    await store.append("project-p2", [NewEvent(ProjectCreated(name="Two", owner="b"), META)])
    for i in range(6):
        stream = "project-p1" if i % 2 == 0 else "project-p2"
        await store.append(stream, [NewEvent(DocUpdated(update=bytes([i + 1]), client_id=i), META)])


async def _tamper(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("alter table events disable trigger user")
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("alter table events enable trigger user")
    finally:
        await conn.close()


def _cli_verify(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", "audit", "verify", *args],
        env=clean_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_intact_log_verifies(store, database_url):
    await _fill(store)
    report = await store.verify()
    assert report.ok
    assert (report.events, report.streams, report.last_position) == (8, 2, 8)
    result = _cli_verify(database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: log verified: 8 events in 2 streams")
    result = _cli_verify(database_url, "--project", "p1")
    assert result.returncode == 0, result.stderr
    assert "4 events in 1 streams" in result.stdout


@pytest.mark.parametrize(
    ("statements", "position", "check"),
    [
        pytest.param(
            ["update events set data = jsonb_set(data, '{client_id}', '99') where position = 5"],
            5,
            "content hash",
            id="changed-data-field",
        ),
        pytest.param(
            ["update events set payload = '\\x07'::bytea where position = 4"],
            4,
            "content hash",
            id="changed-payload",
        ),
        pytest.param(
            ["delete from events where position = 5"],
            6,
            "global position",
            id="deleted-event",
        ),
        pytest.param(
            [
                "update events set position = 1003 where position = 3",
                "update events set position = 3 where position = 5",
                "update events set position = 5 where position = 1003",
            ],
            3,
            "stream version",
            id="swapped-events-same-stream",
        ),
        pytest.param(
            [
                "update events set position = 1004 where position = 4",
                "update events set position = 4 where position = 3",
                "update events set position = 3 where position = 1004",
            ],
            3,
            "event hash",
            id="swapped-events-two-streams",
        ),
    ],
)
async def test_tampering_is_detected(store, database_url, statements, position, check):
    await _fill(store)
    await _tamper(database_url, *statements)
    report = await store.verify()
    assert not report.ok
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.check) == (position, check)
    result = _cli_verify(database_url)
    assert result.returncode == 1
    assert result.stdout.startswith("BROKEN: stream project-p")
    assert f"position {position}: {check}: expected" in result.stdout


async def test_deleted_tail_of_a_stream_is_detected(store, database_url):
    await _fill(store)
    await _tamper(database_url, "delete from events where position = 8")
    report = await store.verify(stream_id="project-p2")
    assert report.first_break is not None
    assert report.first_break.check == "stream head version"
    result = _cli_verify(database_url, "--project", "p2")
    assert result.returncode == 1
    assert "stream head version" in result.stdout


async def test_unknown_project_is_an_error_not_a_pass(store, database_url):
    await _fill(store)
    result = _cli_verify(database_url, "--project", "nope")
    assert result.returncode == 3
    assert "no events for project 'nope'" in result.stderr
