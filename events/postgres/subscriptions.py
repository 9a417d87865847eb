"""Following the log (LISTEN plus polling) and NOTIFY payloads on other channels."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Final

import asyncpg
import structlog

from events.errors import CorruptLog, StoreUnavailable
from events.postgres.connection import CONNECTION_ERRORS, Database
from events.postgres.reads import Reads
from events.records import StoredEvent

log = structlog.get_logger("events.postgres")

NOTIFY_CHANNEL: Final = "collab_events"


class Subscriptions:
    def __init__(self, db: Database, reads: Reads, poll_interval: float) -> None:
        self._db = db
        self._reads = reads
        self._poll_interval = poll_interval

    async def subscribe(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """Every event after ``after_position``, in position order, exactly once, forever."""
        async for batch in self.subscribe_batches(after_position, batch_size=batch_size):
            for event in batch:
                yield event

    async def subscribe_batches(
        self, after_position: int = 0, *, batch_size: int = 1000
    ) -> AsyncGenerator[list[StoredEvent], None]:
        """Like :meth:`subscribe`, in the batches it reads (never empty).

        LISTEN is set up before each catch-up read; a notification only wakes the
        loop, and the loop also polls every ``poll_interval`` seconds, so a lost
        notification, a killed listening connection or a database restart delays
        delivery but never skips or repeats an event.
        """
        last = after_position
        wakeup = asyncio.Event()
        listener: asyncpg.Connection | None = None
        backoff = 0.05
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen(wakeup)
                wakeup.clear()
                try:
                    batch = await self._reads.read_all(last, batch_size)
                except StoreUnavailable as exc:
                    log.warning(
                        "subscription waiting for the database", error=str(exc), position=last
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                for event in batch:
                    if event.position != last + 1:
                        raise CorruptLog(
                            f"hole in the log: expected position {last + 1}, found {event.position}"
                        )
                    last = event.position
                if batch:
                    yield batch
                if len(batch) == batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._poll_interval)
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await listener.close(timeout=2)

    async def _listen(self, wakeup: asyncio.Event) -> asyncpg.Connection | None:
        def notified(*_args: object) -> None:
            wakeup.set()

        return await self._listener(NOTIFY_CHANNEL, notified, notified)

    async def _listener(
        self,
        channel: str,
        on_payload: Callable[[object, object, object, object], None],
        on_lost: Callable[[object], None],
    ) -> asyncpg.Connection | None:
        """A connection LISTENing on ``channel``, or None (logged) when there is none."""
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self._db.dsn, timeout=5)
        except CONNECTION_ERRORS as exc:
            log.warning("cannot LISTEN; polling until it can", error=f"{type(exc).__name__}")
            return None
        try:
            await conn.add_listener(channel, on_payload)
        except CONNECTION_ERRORS as exc:
            conn.terminate()
            log.warning("cannot LISTEN; polling until it can", error=f"{type(exc).__name__}")
            return None
        except BaseException:
            conn.terminate()  # cancelled while subscribing: do not leak the connection
            raise
        # A dropped listener wakes the loop at once, which reconnects it.
        conn.add_termination_listener(on_lost)
        return conn

    async def notifications(self, channel: str) -> AsyncGenerator[str | None, None]:
        """The payloads of NOTIFY on ``channel``, forever.

        ``None`` comes first and after every reconnection: notifications sent while no
        connection listened are lost, so the consumer should look at what they were
        about. While the database is away this retries every ``poll_interval``.
        """
        # payloads, or None once the connection is gone
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        listener: asyncpg.Connection | None = None

        def payload(_conn: object, _pid: object, _channel: object, text: object) -> None:
            queue.put_nowait(str(text))

        def dropped(_conn: object) -> None:
            queue.put_nowait(None)

        try:
            while True:
                listener = await self._listener(channel, payload, dropped)
                if listener is None:
                    await asyncio.sleep(self._poll_interval)
                    continue
                yield None
                while isinstance(item := await queue.get(), str):
                    yield item
                listener.terminate()
                listener = None
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await listener.close(timeout=2)
