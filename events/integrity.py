"""Integrity verification of the log from its raw rows (no I/O).

Recomputes every hash defined in ``events.records`` and checks that stream
versions, global positions and the stream heads agree with the events. The first
broken link is reported with the stream, the position, what was expected and
what was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from events import daid as daid_module
from events.canonical import UnknownScheme
from events.errors import DaidError
from events.records import (
    GENESIS_HASH,
    StoredEvent,
    chain_hash,
    daid_body,
    hashing,
    stored_content_hash,
)


def stored_daid_hash16(event: StoredEvent) -> str:
    """What the DAID of a stored row must end with, recomputed from the row in its
    hashing scheme."""
    return daid_module.content_hash16(daid_body(event), event.parents, hashing(event))


@dataclass(frozen=True, slots=True)
class Break:
    stream_id: str
    position: int
    check: str
    expected: str
    found: str

    def __str__(self) -> str:
        return (
            f"stream {self.stream_id} position {self.position}: {self.check}: "
            f"expected {self.expected}, found {self.found}"
        )


@dataclass(slots=True)
class _StreamState:
    version: int = 0
    hash: bytes = GENESIS_HASH
    position: int = 0


@dataclass(slots=True)
class ChainVerifier:
    """Feed events in position order, then call :meth:`finish`.

    ``check_positions`` is off when only some streams are verified (positions of
    other streams are then expected to be missing).
    """

    check_positions: bool = True
    events: int = 0
    last_position: int = 0
    first_break: Break | None = None
    _streams: dict[str, _StreamState] = field(default_factory=dict)

    def feed(self, event: StoredEvent) -> Break | None:
        if self.first_break is None:
            self.first_break = self._check(event)
        self.events += 1
        self.last_position = event.position
        return self.first_break

    def _check(self, event: StoredEvent) -> Break | None:
        def broken(check: str, expected: object, found: object) -> Break:
            return Break(event.stream_id, event.position, check, str(expected), str(found))

        if self.check_positions and event.position != self.last_position + 1:
            return broken("global position", self.last_position + 1, event.position)
        if event.position <= self.last_position:
            return broken("position order", f"> {self.last_position}", event.position)
        state = self._streams.setdefault(event.stream_id, _StreamState())
        if event.stream_version != state.version + 1:
            return broken("stream version", state.version + 1, event.stream_version)
        try:
            recomputed = stored_content_hash(event)
        except UnknownScheme as exc:
            return broken("hash scheme", "none or rfc8785", str(exc))
        except ValueError as exc:
            return broken("content hash", "canonical JSON", str(exc))
        if recomputed != event.content_hash:
            return broken("content hash", recomputed.hex(), event.content_hash.hex())
        try:
            parsed = daid_module.parse(event.daid)
        except DaidError as exc:
            return broken("daid", "a well-formed DAID", f"{event.daid!r} ({exc})")
        expected_hash16 = stored_daid_hash16(event)
        if parsed.hash16 != expected_hash16:
            return broken("daid hash", expected_hash16, parsed.hash16)
        if event.prev_hash != state.hash:
            return broken("previous-event hash", state.hash.hex(), event.prev_hash.hex())
        link = chain_hash(
            event.prev_hash,
            event.content_hash,
            event.stream_version,
            event.position,
            event.recorded_at,
        )
        if link != event.hash:
            return broken("event hash", link.hex(), event.hash.hex())
        state.version = event.stream_version
        state.hash = event.hash
        state.position = event.position
        return None

    def finish(
        self, heads: Mapping[str, tuple[int, bytes]], log_head: int | None = None
    ) -> Break | None:
        """Compare what the events imply with the recorded stream heads and log head.

        ``heads`` maps stream id to (version, last hash) for the streams verified.
        """
        if self.first_break is not None:
            return self.first_break
        for stream_id, (version, last_hash) in sorted(heads.items()):
            state = self._streams.get(stream_id, _StreamState())
            if version != state.version:
                self.first_break = Break(
                    stream_id,
                    state.position,
                    "stream head version",
                    str(version),
                    f"{state.version} (events end there)",
                )
                break
            if last_hash != state.hash:
                self.first_break = Break(
                    stream_id,
                    state.position,
                    "stream head hash",
                    last_hash.hex(),
                    state.hash.hex(),
                )
                break
        else:
            missing = sorted(set(self._streams) - set(heads))
            if missing:
                state = self._streams[missing[0]]
                self.first_break = Break(
                    missing[0], state.position, "stream head", "a recorded head", "none"
                )
            elif log_head is not None and log_head != self.last_position:
                self.first_break = Break(
                    "(log)",
                    self.last_position,
                    "log head position",
                    str(log_head),
                    str(self.last_position),
                )
        return self.first_break

    @property
    def streams(self) -> int:
        return len(self._streams)
