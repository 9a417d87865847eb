"""Updates forwarded to their project's home node (``collab/live/forwarding.py``),
without I/O: the fan-out and the store are scripted here, so each ordering case can be
driven step by step. ``tests/test_cluster.py`` runs the same on real nodes and Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from collab.live.fanout import (
    CommittedUpdate,
    FanOut,
    Forward,
    ForwardOutcome,
    Message,
)
from collab.live.forwarding import Forwarder
from collab.live.writer import Committed, GroupCommitWriter
from collab.runtime.metrics import Metrics
from events import EventMetadata, NewEvent
from events.errors import EventStoreError
from events.models import DocUpdated, project_stream
from events.store import AppendRequest, AppendResult, EventStore
from tests.support import timeout

PROJECT = "00000000-0000-0000-0000-000000000007"
OTHER = "00000000-0000-0000-0000-000000000008"
STREAM = project_stream(PROJECT)
HOME = "11111111-1111-1111-1111-111111111111"
ELSEWHERE = "22222222-2222-2222-2222-222222222222"


@dataclass
class Appended:
    request: AppendRequest
    decided: Any
    alone: bool

    @property
    def event_id(self) -> UUID:
        return self.request.events[0].event_id


@dataclass
class Store:
    """The store's ``append_soon``, answered by the test."""

    appended: list[Appended] = field(default_factory=list)
    version: int = 0

    def append_soon(self, request: AppendRequest, decided: Any, *, alone: bool = False) -> None:
        self.appended.append(Appended(request, decided, alone))

    def commit_all(self) -> None:
        for item in self.appended:
            self.version += 1
            item.decided(
                AppendResult(item.request.stream_id, (self.version,), (self.version,), ("d",))
            )
        self.appended.clear()


@dataclass
class Cluster:
    """The fan-out port: what this node publishes, and whose home each project is."""

    node: str = "00000000-0000-0000-0000-0000000000aa"
    homes: dict[str, str] = field(default_factory=dict)
    published: list[Message] = field(default_factory=list)
    connected: bool = True

    def publish(self, message: Message) -> None:
        self.published.append(message)

    def home(self, project_id: str) -> str | None:
        return self.homes.get(project_id)

    def forwards(self) -> list[Forward]:
        return [m for m in self.published if isinstance(m, Forward)]


@dataclass
class Heard:
    committed: list[tuple[str, Committed]] = field(default_factory=list)
    failed: list[tuple[str, Exception]] = field(default_factory=list)


def update(n: int) -> NewEvent:
    return NewEvent(DocUpdated(update=bytes([0, 0]) + bytes([n])), EventMetadata(actor="a"))


def rig(
    **settings: Any,
) -> tuple[Forwarder, Store, Cluster, list[CommittedUpdate]]:
    store, cluster = Store(), Cluster()
    here: list[CommittedUpdate] = []
    writer = GroupCommitWriter(cast(EventStore, store), Metrics())
    forwarder = Forwarder(
        writer, cast(FanOut, cluster), Metrics(), on_home_commit=here.append, **settings
    )
    return forwarder, store, cluster, here


def submit(forwarder: Forwarder, heard: Heard, name: str, stream: str = STREAM) -> NewEvent:
    event = update(len(heard.committed) + len(heard.failed))
    forwarder.submit(
        stream,
        event,
        lambda done: heard.committed.append((name, done)),
        lambda error: heard.failed.append((name, error)),
    )
    return event


def answer(event: NewEvent, version: int) -> CommittedUpdate:
    return CommittedUpdate(
        PROJECT, version, version, b"\x00\x00", event.event_id, f"daid-{version}"
    )


async def test_an_update_goes_to_its_home_and_its_commit_there_is_its_outcome() -> None:
    forwarder, store, cluster, _ = rig()
    cluster.homes[PROJECT] = HOME
    heard = Heard()
    first = submit(forwarder, heard, "u1")
    assert store.appended == []
    (forward,) = cluster.forwards()
    assert (forward.home, forward.event) == (HOME, first)
    assert forwarder.settled(answer(first, 5))
    assert heard.committed == [("u1", Committed(5, 5, "daid-5", announced=True))]
    assert not forwarder.settled(answer(first, 5))  # told once
    assert forwarder.waiting == 0


async def test_a_home_that_changes_under_waiting_updates_keeps_the_stream_s_order() -> None:
    """Two updates wait at the old home when this node becomes the home: both are
    appended here, in order and each on its own (either may be stored already), before
    the next one; the old home's late answer changes nothing."""
    forwarder, store, cluster, _ = rig()
    cluster.homes[PROJECT] = HOME
    heard = Heard()
    first, second = submit(forwarder, heard, "u1"), submit(forwarder, heard, "u2")
    del cluster.homes[PROJECT]
    third = submit(forwarder, heard, "u3")
    assert [(a.event_id, a.alone) for a in store.appended] == [
        (first.event_id, True),
        (second.event_id, True),
        (third.event_id, False),
    ]
    assert not forwarder.settled(answer(first, 9))
    store.commit_all()
    assert [name for name, _ in heard.committed] == ["u1", "u2", "u3"]
    assert all(not done.announced for _, done in heard.committed)


async def test_a_stream_with_updates_undecided_here_waits_for_them_before_forwarding() -> None:
    forwarder, store, cluster, _ = rig()
    heard = Heard()
    submit(forwarder, heard, "u1")  # no home known yet: appended here
    cluster.homes[PROJECT] = HOME
    submit(forwarder, heard, "u2")  # u1 undecided: u2 follows it here
    assert cluster.forwards() == []
    assert len(store.appended) == 2
    store.commit_all()
    third = submit(forwarder, heard, "u3")  # nothing undecided: now to the home
    assert [f.event for f in cluster.forwards()] == [third]


async def test_a_declined_update_and_those_after_it_on_its_stream_come_back_here() -> None:
    forwarder, store, cluster, _ = rig()
    cluster.homes[PROJECT] = cluster.homes[OTHER] = HOME
    heard = Heard()
    first = submit(forwarder, heard, "u1")
    second = submit(forwarder, heard, "u2")
    elsewhere = submit(forwarder, heard, "o1", stream=project_stream(OTHER))
    assert forwarder.settled(ForwardOutcome(cluster.node, first.event_id, detail="draining"))
    assert [a.event_id for a in store.appended] == [first.event_id, second.event_id]
    assert forwarder.waiting == 1  # the other project's update still waits for its home
    assert forwarder.settled(answer(elsewhere, 3))
    store.commit_all()
    assert sorted(name for name, _ in heard.committed) == ["o1", "u1", "u2"]


async def test_updates_with_no_answer_in_time_are_appended_here() -> None:
    forwarder, store, cluster, _ = rig(timeout=0.05)
    cluster.homes[PROJECT] = HOME
    heard = Heard()
    first = submit(forwarder, heard, "u1")
    deadline = asyncio.get_running_loop().time() + timeout(5)
    while not store.appended:
        assert asyncio.get_running_loop().time() < deadline, "never appended here"
        await asyncio.sleep(0.05)
    assert [(a.event_id, a.alone) for a in store.appended] == [(first.event_id, True)]
    store.commit_all()
    assert [name for name, _ in heard.committed] == ["u1"]
    await forwarder.close()


async def test_the_home_appends_what_it_is_sent_and_tells_every_node_at_once() -> None:
    forwarder, store, cluster, here = rig()
    event = update(1)
    forwarder.serve(ELSEWHERE, Forward(PROJECT, cluster.node, STREAM, event))
    (appended,) = store.appended
    assert appended.alone  # the origin may have stored it meanwhile
    store.commit_all()
    (told,) = cluster.published
    assert isinstance(told, CommittedUpdate)
    assert (told.event_id, told.version, told.update) == (event.event_id, 1, b"\x00\x00\x01")
    assert here == [told]


async def test_the_home_declines_what_its_store_refuses() -> None:
    forwarder, store, cluster, _ = rig()
    event = update(1)
    forwarder.serve(ELSEWHERE, Forward(PROJECT, cluster.node, STREAM, event))
    store.appended[0].decided(EventStoreError("database unavailable"))
    (told,) = cluster.published
    assert told == ForwardOutcome(ELSEWHERE, event.event_id, detail="database unavailable")


async def test_a_decline_of_a_later_update_keeps_the_earlier_one_first() -> None:
    forwarder, store, cluster, _ = rig()
    cluster.homes[PROJECT] = HOME
    heard = Heard()
    first, second = submit(forwarder, heard, "u1"), submit(forwarder, heard, "u2")
    assert forwarder.settled(ForwardOutcome(cluster.node, second.event_id, detail="overloaded"))
    assert [a.event_id for a in store.appended] == [first.event_id, second.event_id]
    store.commit_all()
    assert [name for name, _ in heard.committed] == ["u1", "u2"]


async def test_after_a_decline_the_home_declines_what_followed_from_that_origin() -> None:
    """What the origin forwarded before it heard of the decline would be stored ahead of
    the declined update, which the origin appends itself: the home declines it too."""
    forwarder, store, cluster, _ = rig()
    first, second, third = update(1), update(2), update(3)
    forwarder.serve(ELSEWHERE, Forward(PROJECT, cluster.node, STREAM, first))
    store.appended[0].decided(EventStoreError("database unavailable"))
    forwarder.serve(ELSEWHERE, Forward(PROJECT, cluster.node, STREAM, second))
    forwarder.serve(HOME, Forward(PROJECT, cluster.node, STREAM, third))  # another origin
    assert [a.event_id for a in store.appended] == [first.event_id, third.event_id]
    declined = [m for m in cluster.published if isinstance(m, ForwardOutcome)]
    assert [m.event_id for m in declined] == [first.event_id, second.event_id]
