"""Where the database is: ``DATABASE_URL``, or an embedded PostgreSQL in the data dir."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil
import structlog

log = structlog.get_logger("collab.runtime.database")

#: seconds of leeway when comparing a process's start with a file's time: Linux gives
#: process start times to within a second
_CLOCK_SLACK: Final = 2.0


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    embedded: bool
    #: the pgserver handle; kept referenced so the embedded server lives while we do
    handle: Any = None


def resolve(database_url: str | None, data_dir: Path) -> Database:
    """Use ``database_url`` when given; otherwise start (or join) the embedded server.

    The embedded server lives in ``data_dir/pgdata`` and is kept across restarts.
    Several processes may share it (a server and ``collab audit verify``); pgserver
    counts the handles and stops PostgreSQL when the last process exits. Handles of
    processes that died without a word (``kill -9``) are dropped first, or they would
    keep PostgreSQL running after every later clean exit.
    """
    if database_url:
        return Database(database_url, embedded=False)
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (as under root);
        # pgserver then uses a folder in /tmp, which is what we want.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import (  # noqa: PLC0415 - embedded mode only
            PostgresServer,
            get_server,
        )

        with PostgresServer._lock:  # pgserver's inter-process lock over its handle lists
            _forget_dead_handles(data_dir / "pgdata")
        server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    url = str(server.get_uri())
    log.info("embedded postgresql ready", data_dir=str(data_dir), url=url)
    return Database(url, embedded=True, handle=server)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop from pgserver's list of the processes using ``pgdata`` those that are gone.

    A process counts as gone when no process has its id, or the one that has it is a
    zombie or started after the list was last written (the id was reused)."""
    from pgserver.utils import DiskList  # noqa: PLC0415 - embedded mode only

    handles = DiskList(pgdata / ".handle_pids.json")
    if not handles.path.exists():
        return
    written = handles.path.stat().st_mtime
    pids: list[int] = handles.get()
    alive = [pid for pid in pids if _running_since(pid, written)]
    if alive != pids:
        handles.put(alive)
        log.warning(
            "forgot handles of processes gone without stopping the embedded postgresql",
            pids=sorted(set(pids) - set(alive)),
        )


def _running_since(pid: int, written: float) -> bool:
    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.create_time() <= written + _CLOCK_SLACK
        )
    except psutil.Error:
        return False
