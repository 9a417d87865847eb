"""The fan-out through Redis pub/sub (redis-py's asyncio client): the adapter of
:class:`collab.live.fanout.FanOut`.

One channel per project (``{prefix}:room:{id}``), subscribed by the nodes that host its
room, one for the cluster (``{prefix}:cluster``: access changes, heartbeats), and one per
node (``{prefix}:node:{id}``: forwarded updates and their outcomes). Pub/sub keeps
nothing: a node that is not listening misses the message, which is why the rooms check
versions and read the log for what they miss, and why a forwarded update that has no
outcome in time is appended by the node that forwarded it (``collab.live.forwarding``).

A project's home (the node that appends its updates) is a key ``{prefix}:home:{id}``
naming the node, set by the first node that hosts the room and kept alive by its
heartbeat (``HOME_LEASE_MS``); every hosting node reads it with the same beat. A node
that unloads the room or stops lets go of it; one that dies leaves it to expire.

Publishing never waits for Redis: messages go to a bounded outbox that one task sends
in pipelined batches. When Redis is unreachable the batch is dropped and counted
(``collab_fanout_dropped_total``), the listener retries with a growing pause (up to
``MAX_BACKOFF``), and the rooms' follower carries updates through the log meanwhile.
When the connection returns, the rooms read the log once at once
(``Receiver.fast_path_resumed``). The messages of one channel in one send go bundled in
one publish (a Redis message costs more to publish and to receive than its bytes).

Why this module is a little over 400 lines: publishing, listening, the homes and the
heartbeat share one client, one connection state and one shutdown order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Final

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from collab.live.fanout import (
    HEARTBEAT_SECONDS,
    NODE_TIMEOUT_SECONDS,
    BadMessage,
    Farewell,
    Forward,
    ForwardOutcome,
    Heartbeat,
    Message,
    Receiver,
    bundle,
    decode,
    encode,
    new_node_id,
    unbundle,
)
from collab.runtime.metrics import Metrics

log = structlog.get_logger("collab.live.redis_fanout")

#: messages waiting to be published at most; older ones are dropped beyond it
OUTBOX_LIMIT: Final = 50_000
#: messages sent in one pipeline
BATCH: Final = 500
#: longest pause between two attempts to reach Redis
MAX_BACKOFF: Final = 5.0
#: seconds a Redis command may take before the connection counts as lost
COMMAND_TIMEOUT: Final = 5.0
#: milliseconds a project's home key lives unless its node renews it (every heartbeat)
HOME_LEASE_MS: Final = int(NODE_TIMEOUT_SECONDS * 1000)
#: the home of KEYS[1]: kept or taken by ARGV[1] when it is free or already theirs
#: (renewed for ARGV[2] ms), else the node that holds it
_CLAIM = """
local home = redis.call('GET', KEYS[1])
if home == false or home == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return home
"""
#: let go of KEYS[1] if ARGV[1] holds it
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisFanOut:
    def __init__(self, url: str, metrics: Metrics, *, prefix: str = "collab") -> None:
        self.node = new_node_id()
        self._url = url
        self._metrics = metrics
        self._prefix = prefix
        self._cluster = f"{prefix}:cluster"
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=COMMAND_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            health_check_interval=10,
            # One quick retry covers a pooled connection Redis closed (a restart); more,
            # with redis-py's default growing pauses, would hold the outbox for seconds
            # while the message is no longer worth much: the log has it.
            retry=Retry(ConstantBackoff(0.05), 1),
        )
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        #: set while nothing waits in the outbox or in a pipeline being sent
        self._sent = asyncio.Event()
        self._sent.set()
        #: the projects whose rooms this node hosts (their channels are subscribed)
        self._watched: set[str] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._receiver: Receiver | None = None
        self._heard: dict[str, float] = {}
        self._connected = False
        #: publishing failed last time (said once per outage)
        self._dropping = False
        #: when this node last heard its own heartbeat back: the subscription works
        self._echo = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_subscriptions: set[asyncio.Task[None]] = set()
        #: the home of each watched project, as Redis last said
        self._homes: dict[str, str] = {}
        self._claim = self._client.register_script(_CLAIM)
        self._release = self._client.register_script(_RELEASE)

    @property
    def connected(self) -> bool:
        return self._connected

    def _channel(self, project_id: str) -> str:
        return f"{self._prefix}:room:{project_id}"

    def _node_channel(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"

    def _home_key(self, project_id: str) -> str:
        return f"{self._prefix}:home:{project_id}"

    # -- publishing -----------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        if isinstance(message, Forward):
            channel = self._node_channel(message.home)
        elif isinstance(message, ForwardOutcome):
            channel = self._node_channel(message.origin)
        elif (project_id := getattr(message, "project_id", None)) is not None:
            channel = self._channel(project_id)
        else:
            channel = self._cluster
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self._metrics.fanout_dropped.inc()
        self._outbox.append((channel, encode(self.node, message)))
        self._wake.set()
        self._sent.clear()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                self._sent.clear()
                batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
                # One publish per channel: its messages in their order, bundled.
                channels: dict[str, list[bytes]] = {}
                for channel, data in batch:
                    channels.setdefault(channel, []).append(data)
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for channel, frames in channels.items():
                            pipe.publish(channel, bundle(frames))
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    # The log has every update; the others' followers find them.
                    self._metrics.fanout_dropped.inc(len(batch))
                    if not self._dropping:
                        log.warning(
                            "fan-out messages dropped: Redis does not take them",
                            error=str(exc) or type(exc).__name__,
                        )
                    self._dropping = True
                    break
                self._dropping = False
                self._metrics.fanout_messages.labels("out").inc(len(batch))
            if not self._outbox:
                self._sent.set()

    async def _beat(self) -> None:
        while True:
            # Only a node that listens says it is there: whoever hears it may at once
            # ask it for its clients' presence (Receiver.node_joined).
            if self._pubsub is not None:
                self.publish(Heartbeat())
                await self._claim_homes(list(self._watched))
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._forget_silent_nodes()

    # -- homes ----------------------------------------------------------------------------

    def home(self, project_id: str) -> str | None:
        home = self._homes.get(project_id)
        if home is None or home == self.node or not self._connected or home not in self._heard:
            return None
        return home

    async def _claim_homes(self, projects: list[str]) -> None:
        """Take or renew the homes of ``projects`` that are free or this node's, and
        learn who holds the others."""
        if not projects:
            return
        try:
            # Within a beat: a slow Redis must not hold up the heartbeat itself.
            async with asyncio.timeout(HEARTBEAT_SECONDS):
                async with self._client.pipeline(transaction=False) as pipe:
                    for project_id in projects:
                        await self._claim(
                            keys=[self._home_key(project_id)],
                            args=[self.node, HOME_LEASE_MS],
                            client=pipe,
                        )
                    homes = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            # Each node appends its own until Redis answers again; whether the
            # connection is lost is the listener's to find out.
            self._homes.clear()
            log.debug("project homes not read", error=str(exc) or type(exc).__name__)
            return
        for project_id, home in zip(projects, homes, strict=True):
            if project_id in self._watched:
                self._homes[project_id] = home.decode() if isinstance(home, bytes) else str(home)

    def _claim_soon(self, project_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._claim_homes([project_id]))
        self._pending_subscriptions.add(task)
        task.add_done_callback(self._pending_subscriptions.discard)

    def _release_soon(self, project_id: str) -> None:
        async def release() -> None:
            with contextlib.suppress(RedisError, OSError):
                await self._release(keys=[self._home_key(project_id)], args=[self.node])

        task = asyncio.get_running_loop().create_task(release())
        self._pending_subscriptions.add(task)
        task.add_done_callback(self._pending_subscriptions.discard)

    # -- listening ------------------------------------------------------------------------

    def watch(self, project_id: str) -> None:
        self._watched.add(project_id)
        self._subscription(self._channel(project_id), subscribe=True)
        if self._connected:
            self._claim_soon(project_id)

    def unwatch(self, project_id: str) -> None:
        self._watched.discard(project_id)
        self._subscription(self._channel(project_id), subscribe=False)
        if self._homes.pop(project_id, None) == self.node and self._connected:
            self._release_soon(project_id)

    def _subscription(self, channel: str, *, subscribe: bool) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._connected:
            return  # the listener subscribes to everything watched when it connects

        async def change() -> None:
            try:
                if subscribe:
                    await pubsub.subscribe(channel)
                else:
                    await pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                self._lost(exc)

        task = asyncio.get_running_loop().create_task(change())
        self._pending_subscriptions.add(task)
        task.add_done_callback(self._pending_subscriptions.discard)

    async def _listen(self, receiver: Receiver) -> None:
        backoff = 0.1
        resumed = False
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(
                    self._cluster,
                    self._node_channel(self.node),
                    *(self._channel(project_id) for project_id in self._watched),
                )
                self._pubsub = pubsub
                self._up()
                backoff = 0.1
                if resumed:
                    receiver.fast_path_resumed()
                resumed = True
                self._echo = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                    if message is not None and message["type"] == "message":
                        self._deliver_all(receiver, message["data"])
                    if time.monotonic() - self._echo > NODE_TIMEOUT_SECONDS:
                        # Our own heartbeats stopped coming back: whatever the client
                        # believes, this subscription is not working.
                        raise RedisConnectionError("own heartbeats not heard back")
            except (RedisError, OSError) as exc:
                self._lost(exc)
            finally:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _deliver_all(self, receiver: Receiver, data: bytes) -> None:
        try:
            frames = unbundle(data)
        except BadMessage as exc:
            self._metrics.fanout_bad.inc()
            log.warning("fan-out messages dropped: not ours", error=str(exc), size=len(data))
            return
        for frame in frames:
            self._deliver(receiver, frame)

    def _deliver(self, receiver: Receiver, data: bytes) -> None:
        try:
            envelope = decode(data)
        except (BadMessage, ValueError) as exc:
            self._metrics.fanout_bad.inc()
            log.warning("fan-out message dropped: not ours", error=str(exc), size=len(data))
            return
        if envelope.node == self.node:
            self._echo = time.monotonic()
            return
        if isinstance(envelope.message, Farewell):
            if self._heard.pop(envelope.node, None) is not None:
                receiver.node_lost(envelope.node)
            return
        joined = envelope.node not in self._heard
        self._heard[envelope.node] = time.monotonic()
        if joined:
            log.info("node joined the cluster", node=envelope.node)
            receiver.node_joined(envelope.node)
        if isinstance(envelope.message, Heartbeat):
            return
        self._metrics.fanout_messages.labels("in").inc()
        try:
            receiver.received(envelope)
        except BadMessage as exc:
            self._metrics.fanout_bad.inc()
            log.warning("fan-out message dropped", node=envelope.node, error=str(exc))

    def _forget_silent_nodes(self) -> None:
        limit = time.monotonic() - NODE_TIMEOUT_SECONDS
        for node in [n for n, heard in self._heard.items() if heard < limit]:
            del self._heard[node]
            log.warning("node silent: its clients' presence is dropped", node=node)
            if self._receiver is not None:
                self._receiver.node_lost(node)

    def _up(self) -> None:
        if not self._connected:
            log.info("fan-out connected", redis=_safe(self._url), node=self.node)
        self._connected = True
        self._metrics.fanout_connected.set(1)

    def _lost(self, exc: BaseException) -> None:
        if self._connected:
            log.warning(
                "fan-out lost; updates reach other nodes through the log until it returns",
                redis=_safe(self._url),
                error=str(exc) or type(exc).__name__,
            )
            if self._receiver is not None:
                self._receiver.fast_path_lost()
        self._connected = False
        self._homes.clear()
        self._metrics.fanout_connected.set(0)

    # -- lifetime -------------------------------------------------------------------------

    async def start(self, receiver: Receiver) -> None:
        """Run until closed (``Live`` runs this as a background task)."""
        self._receiver = receiver
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send(), name="fanout-send"),
            loop.create_task(self._listen(receiver), name="fanout-listen"),
            loop.create_task(self._beat(), name="fanout-heartbeat"),
        ]
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """Send what is queued, let go of this node's homes, say goodbye (each best
        effort, within about a second) and stop."""
        beat = next((task for task in self._tasks if task.get_name() == "fanout-heartbeat"), None)
        if beat is not None:
            beat.cancel()  # no heartbeat may follow the farewell
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if self._connected:
            # The outcomes of what this node appended for others go out first: told
            # "gone" before them, the others would append those again.
            self._wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sent.wait(), 0.5)
            ours = [p for p, home in self._homes.items() if home == self.node]
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                async with asyncio.timeout(0.5):
                    async with self._client.pipeline(transaction=False) as pipe:
                        for project_id in ours:
                            await self._release(
                                keys=[self._home_key(project_id)], args=[self.node], client=pipe
                            )
                        pipe.publish(self._cluster, encode(self.node, Farewell()))
                        await pipe.execute()
        for task in (*self._tasks, *self._pending_subscriptions):
            task.cancel()
        for task in (*self._tasks, *self._pending_subscriptions):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"
