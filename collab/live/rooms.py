"""The rooms of one node: loaded once, shared by everyone who joins, unloaded when idle.

``acquire`` creates a room and starts loading it; everyone acquiring it meanwhile
waits for the same load (ten clients connecting at once to a fresh room all get the
loaded document, never an empty one). A load reads the derived state cache, then the
document events after it, merged. If the document refuses them (the log holds an update
stored before the live path checked them by applying), the room is built again from
the updates that can be applied (:mod:`music.salvage`); the others are logged with
their position and counted (``collab_room_load_skipped_updates``). ``release`` of the
last holder starts a grace period; a room still unused at its end waits for its
pending writes, saves its state to the cache and is dropped.

Other writers (nodes, scripts, rollbacks elsewhere) reach a loaded room three ways: the
fan-out (:mod:`collab.live.fanout`, milliseconds), the versions its own commits come
back with, and the follower, which asks the log for every loaded room's stream version
every ``follow_seconds`` (one query for all). Whatever a room learns is missing it reads
from the log (:meth:`Rooms.fill_gaps`); the log is the truth, the rest only makes it
sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import structlog

from collab.live.fanout import Alone, AwarenessQuery, CommittedUpdate, FanOut
from collab.live.room import Room, RoomWriter
from collab.live.writer import Committed
from collab.runtime.metrics import Metrics
from events.errors import EventStoreError
from events.models import DOCUMENT_EVENTS, project_stream
from events.store import CachedState, EventStore, PayloadRecord
from music import salvage
from music.updates import EMPTY_UPDATE

log = structlog.get_logger("collab.live.rooms")

_READ_BATCH = 5000
#: seconds between two reads of the loaded rooms' stream versions (one query for all):
#: how soon a room learns of what another writer appended when nothing else told it
FOLLOW_SECONDS = 1.0
#: seconds a room with missing versions waits for them from the fan-out before reading
#: the log (another node's message may be on its way)
GAP_WAIT_SECONDS = 0.2


class UnknownProject(LookupError):
    """No project with this id (close code 4404, HTTP 404)."""


class _CannotApply(Exception):
    """Some update read from the log cannot be applied to the room's document."""


def _load(room: Room, updates: list[bytes], version: int, position: int) -> None:
    """``room.load``; raises :class:`_CannotApply` when pycrdt refuses the updates."""
    try:
        room.load(updates, version, position)
    except BaseException as exc:
        if not salvage.apply_error(exc):
            raise
        raise _CannotApply(str(exc)) from exc


class Rooms:
    def __init__(
        self,
        store: EventStore,
        writer: RoomWriter,
        metrics: Metrics,
        *,
        grace: float = 10.0,
        cache_every: int = 1000,
        fanout: FanOut | None = None,
        follow_seconds: float = FOLLOW_SECONDS,
    ) -> None:
        self._store = store
        self._fanout: FanOut = fanout or Alone()
        self._follow_seconds = follow_seconds
        #: rooms whose missing versions are being read from the log
        self._filling: set[str] = set()
        self._writer = writer
        self._metrics = metrics
        self._grace = grace
        self._cache_every = cache_every
        self._rooms: dict[str, Room] = {}
        self._loads: dict[str, asyncio.Future[Room]] = {}
        self._unloads: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        #: per room, the stream version the log had when it was last read for the room
        self._seen: dict[str, int] = {}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep(), name="presence")
        self._follower = loop.create_task(self._follow(), name="follow")

    def __len__(self) -> int:
        return len(self._rooms)

    def loaded(self, project_id: str) -> Room | None:
        return self._rooms.get(project_id)

    def all(self) -> list[Room]:
        return list(self._rooms.values())

    async def acquire(self, project_id: str) -> Room:
        """The loaded room of ``project_id``, held until :meth:`release`.

        Raises UnknownProject, or EventStoreError when the log cannot be read.
        """
        try:
            project_id = str(uuid.UUID(project_id))
        except ValueError:
            raise UnknownProject(f"no project {project_id!r} (project ids are UUIDs)") from None
        timer = self._unloads.pop(project_id, None)
        if timer is not None:
            timer.cancel()
        room = self._rooms.get(project_id)
        if room is not None:
            room.holds += 1
            return room
        loading = self._loads.get(project_id)
        if loading is None:
            loading = asyncio.get_running_loop().create_future()
            self._loads[project_id] = loading
            self._spawn(self._load(project_id, loading))
        room = await asyncio.shield(loading)
        room.holds += 1
        return room

    def release(self, room: Room) -> None:
        room.holds -= 1
        if room.holds > 0 or self._rooms.get(room.project_id) is not room:
            return
        loop = asyncio.get_running_loop()
        self._unloads[room.project_id] = loop.call_later(
            self._grace, lambda: self._spawn(self._unload(room))
        )

    async def _load(self, project_id: str, loading: asyncio.Future[Room]) -> None:
        started = time.perf_counter()
        try:
            room = await self._read_room(project_id)
        except BaseException as exc:
            del self._loads[project_id]
            loading.set_exception(exc)
            loading.exception()  # the acquirers have it; nothing else must log it
            if not isinstance(exc, Exception):
                raise
            return
        self._rooms[project_id] = room
        del self._loads[project_id]
        self._fanout.watch(project_id)
        # The other nodes' clients show up now, not at their next renewal.
        self._fanout.publish(AwarenessQuery(project_id))
        self._metrics.rooms.set(len(self._rooms))
        self._metrics.room_load_seconds.observe(time.perf_counter() - started)
        log.info(
            "room loaded",
            project=project_id,
            version=room.version,
            seconds=round(time.perf_counter() - started, 3),
        )
        loading.set_result(room)
        # Nobody may be holding it any more (all acquirers gave up); unload it then.
        if room.holds == 0:
            room.holds = 1
            self.release(room)

    async def _read_room(self, project_id: str) -> Room:
        stream_id = project_stream(project_id)
        if await self._store.stream_version(stream_id) == 0:
            raise UnknownProject(f"no project {project_id}")
        room = self._new_room(project_id)
        cached = await self._store.load_state(stream_id)
        try:
            if cached is not None:
                _load(room, [cached.state], cached.version, cached.position)
                room.loaded_from_cache(cached.version)
            await self._catch_up(room)
        except _CannotApply:
            # The log holds an update the document refuses (stored before the live path
            # checked them): the room's document may hold part of it. Start over, one
            # update at a time where needed.
            room = await self._salvage(project_id, cached)
        return room

    def _new_room(self, project_id: str) -> Room:
        return Room(
            project_id,
            self._writer,
            self._metrics,
            save_state=self._save_state,
            cache_every=self._cache_every,
            publish=self._fanout.publish,
            on_gap=self._gap_found,
        )

    async def _catch_up(self, room: Room) -> None:
        while True:
            records = await self._store.read_payloads(
                room.stream_id, DOCUMENT_EVENTS, after_version=room.version, limit=_READ_BATCH
            )
            if not records:
                return
            updates = [r.payload for r in records if r.payload and r.payload != EMPTY_UPDATE]
            _load(room, updates, records[-1].version, records[-1].position)
            if len(records) < _READ_BATCH:
                return

    async def _salvage(self, project_id: str, cached: CachedState | None) -> Room:
        """The room of ``project_id`` with every stored update that can be applied; the
        others are logged, counted, and left out."""
        room = self._new_room(project_id)
        state: bytes | None = None
        version = position = 0
        if cached is not None and not salvage.salvage([cached.state]).refused:
            state, version, position = cached.state, cached.version, cached.position
            room.loaded_from_cache(version)

        async def read(after_version: int) -> list[PayloadRecord]:
            return await self._store.read_payloads(
                room.stream_id, DOCUMENT_EVENTS, after_version=after_version, limit=_READ_BATCH
            )

        loaded = await salvage.load(
            read, base=state, version=version, position=position, batch=_READ_BATCH
        )
        for record, reason in loaded.refused:
            self._skipped(project_id, record, reason)
        room.load([loaded.state] if loaded.state else [], loaded.version, loaded.position)
        return room

    def committed_elsewhere(self, message: CommittedUpdate) -> None:
        """Another node committed an update to ``message.project_id``: apply it to the
        room if this node hosts it and has not applied that version yet."""
        room = self._rooms.get(message.project_id)
        if room is None:
            return
        # apply_committed drops a version it has applied already
        room.apply_committed(message.update, Committed(message.version, message.position, ""), None)

    def _gap_found(self, room: Room) -> None:
        if room.project_id in self._filling:
            return
        self._filling.add(room.project_id)
        self._spawn(self._fill_soon(room))

    async def _fill_soon(self, room: Room) -> None:
        try:
            if self._fanout.connected:
                await asyncio.sleep(GAP_WAIT_SECONDS)
            await self.fill_gaps(room)
        except EventStoreError as exc:
            log.warning("gap not filled yet", project=room.project_id, error=str(exc))
        finally:
            self._filling.discard(room.project_id)

    async def fill_gaps(self, room: Room) -> None:
        """Read the versions ``room`` misses from the log, apply and broadcast them."""
        while (gap := room.versions.gap) is not None:
            self._metrics.gap_reads.inc()
            # Every version up to the room's was committed before it: one read to the
            # end of the log covers them all.
            through = room.version
            last = await self._read_into(room, gap)
            room.versions.settle(through if last is None else last)

    async def _read_into(self, room: Room, after_version: int) -> int | None:
        """Apply and broadcast the document events after ``after_version`` that the room
        has not applied; the version read last if a full batch came back (there may be
        more), else None."""
        records = await self._store.read_payloads(
            room.stream_id, DOCUMENT_EVENTS, after_version=after_version, limit=_READ_BATCH
        )
        for record in records:
            update = record.payload
            if not update or not room.versions.wants(record.version):
                continue
            refused = salvage.salvage([update], room.doc.get_update()).refused
            if refused:
                # Applied to the live document, it could leave part of itself there:
                # tried on a copy first, and if refused only the version moves on.
                self._skipped(room.project_id, record, refused[0][1])
                update = b""
            room.apply_committed(update, Committed(record.version, record.position, ""), None)
        return records[-1].version if len(records) == _READ_BATCH else None

    def _skipped(self, project_id: str, record: PayloadRecord, reason: str) -> None:
        self._metrics.room_load_skipped.inc()
        log.warning(
            "stored update left out of the room: it cannot be applied",
            project=project_id,
            version=record.version,
            position=record.position,
            reason=reason,
        )

    async def _unload(self, room: Room) -> None:
        self._unloads.pop(room.project_id, None)
        if room.holds > 0 or self._rooms.get(room.project_id) is not room:
            return
        while room.pending:
            await self._writer.flush()
        if room.holds > 0:
            return
        del self._rooms[room.project_id]
        self._fanout.unwatch(room.project_id)
        self._seen.pop(room.project_id, None)
        self._metrics.rooms.set(len(self._rooms))
        room.save_cache()
        log.info("room unloaded", project=room.project_id, version=room.version)

    def _save_state(self, cached: CachedState) -> None:
        async def save() -> None:
            try:
                await self._store.save_state(cached)
            except EventStoreError as exc:
                # Only a cache: the next load reads more of the log instead.
                log.warning("state cache not saved", stream=cached.stream_id, error=str(exc))

        self._spawn(save())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            for room in list(self._rooms.values()):
                room.presence.expire()
                room.expire_held()
                if room.versions.gap is not None:
                    self._gap_found(room)  # a read that failed before is tried again

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._follow_seconds)
            try:
                await self.follow()
            except EventStoreError as exc:
                log.warning("rooms not followed this time", error=str(exc))

    async def follow(self) -> None:
        """Bring each loaded room up to what the log holds, if another writer (a node, a
        script, a rollback elsewhere) appended to its stream since it last looked.

        Rooms with their own updates on the way to the log are left to the next round:
        their commits show any jump in versions themselves.
        """
        idle = {r.stream_id: r for r in self._rooms.values() if r.pending == 0}
        if not idle:
            return
        versions = await self._store.stream_versions(list(idle))
        for stream_id, version in versions.items():
            room = idle[stream_id]
            seen = max(room.version, self._seen.get(room.project_id, 0))
            if version <= seen or room.pending:
                continue
            while (read := await self._read_into(room, room.version)) is not None:
                room.versions.settle(read)
            self._seen[room.project_id] = version

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Save every room's state; stop timers and background work."""
        for timer in self._unloads.values():
            timer.cancel()
        self._unloads.clear()
        for task in (self._sweeper, self._follower):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for room in self._rooms.values():
            room.save_cache()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        self._rooms.clear()
        self._metrics.rooms.set(0)
