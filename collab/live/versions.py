"""Which stream versions a room has applied, so that each is applied once.

Updates reach a room from its own commits, from other nodes (the fan-out) and from
reads of the log, in any order and sometimes twice. The room keeps the highest version
it applied and the versions below it it has not applied yet (*missing*: another node or
a script wrote them, and their updates are on their way or to be read from the log). A
jump too long to list is kept as "everything after version N is to be read".
"""

from __future__ import annotations

from typing import Final

#: versions remembered as missing at most; a larger jump is read from the log at once
MAX_MISSING: Final = 10_000


class Versions:
    def __init__(self) -> None:
        #: the highest version applied
        self.top = 0
        #: versions below ``top`` whose updates have not been applied yet
        self.missing: set[int] = set()
        #: the jump was too long to list: everything after this version is to be read
        self._read_from: int | None = None

    def loaded(self, version: int) -> None:
        """The room was built from the cache and the log up to ``version``."""
        self.top = max(self.top, version)

    def wants(self, version: int) -> bool:
        """Whether the update of ``version`` has not been applied yet."""
        return version > self.top or version in self.missing or self._unread(version)

    def _unread(self, version: int) -> bool:
        return self._read_from is not None and version > self._read_from

    def take(self, version: int) -> tuple[bool, bool]:
        """Note that ``version`` is being applied: (whether it was wanted, whether it
        skipped versions that are now missing)."""
        if version > self.top:
            jumped = version > self.top + 1
            if jumped:
                if version - self.top > MAX_MISSING or self._read_from is not None:
                    start = self.top if self._read_from is None else self._read_from
                    self._read_from = min(self.top, start)
                else:
                    self.missing.update(range(self.top + 1, version))
            self.top = version
            return True, jumped
        if version in self.missing:
            self.missing.discard(version)
            return True, False
        return self._unread(version), False

    @property
    def gap(self) -> int | None:
        """The version after which the log is to be read for missing updates, if any."""
        if self._read_from is not None:
            return self._read_from
        return min(self.missing) - 1 if self.missing else None

    def settle(self, through: int) -> None:
        """The log was read up to ``through``: nothing at or below it is missing any more
        (versions the read did not return hold events other than document updates)."""
        self.missing = {v for v in self.missing if v > through}
        if self._read_from is not None:
            self._read_from = None if through >= self.top else max(self._read_from, through)
