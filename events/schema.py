"""The versioned SQL migrations, read from the ``migrations`` folder of each package
that owns tables (no I/O beyond reading them).

``events/migrations`` holds the event log's own tables; ``projections/migrations`` the
read models'. Both share one sequence of versions, as applied databases recorded
them before the read models' files moved out (2026-12-03): the folders are merged
by version, and two files with one version are refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

#: packages whose ``migrations`` folder is part of the schema, by name: ``projections``
#: sits above this package and is not imported here (its ``__init__`` imports
#: nothing); only its SQL files are read.
SCHEMA_PACKAGES: Final = ("events", "projections")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@cache
def migrations(packages: tuple[str, ...] = SCHEMA_PACKAGES) -> tuple[Migration, ...]:
    """All migrations of ``packages`` in version order (see :func:`merged`)."""
    files = []
    for package in packages:
        folder = resources.files(package).joinpath("migrations")
        files += [
            (f"{package}/migrations/{entry.name}", entry.read_text(encoding="utf-8"))
            for entry in folder.iterdir()
            if entry.is_file()
        ]
    return merged(files)


def merged(files: Iterable[tuple[str, str]]) -> tuple[Migration, ...]:
    """The migrations among ``files`` (path, SQL text), in version order.

    Versions must be 1, 2, 3, ... without gaps, and each belongs to one file only,
    whichever folder it is in. Files not named ``NNNN_name.sql`` are ignored.
    """
    found: dict[int, tuple[str, Migration]] = {}
    for path, sql in files:
        match = _NAME.match(path.rpartition("/")[2])
        if match is None:
            continue
        version = int(match["version"])
        if version in found:
            raise RuntimeError(
                f"migration {version:04d} is defined twice: {found[version][0]} and {path}"
            )
        found[version] = (path, Migration(version, match["name"], sql))
    ordered = [found[version][1] for version in sorted(found)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {expected:04d} is missing (found {migration.version})")
    return tuple(ordered)


def latest_version() -> int:
    return migrations()[-1].version
