"""Where the database is: ``DATABASE_URL``, or an embedded PostgreSQL in the data dir."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("collab.database")


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
    counts the handles and stops PostgreSQL when the last process exits.
    """
    if database_url:
        return Database(database_url, embedded=False)
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (as under root);
        # pgserver then uses a folder in /tmp, which is what we want.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 - embedded mode only

        server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    url = str(server.get_uri())
    log.info("embedded postgresql ready", data_dir=str(data_dir), url=url)
    return Database(url, embedded=True, handle=server)
