"""Updates the log must not hold are refused at the socket; loud and stuck clients spare the room.

A poison update (decodes, does not apply), a NUL character or a non-finite number
inside an update: each closes its sender with 4400 and the reason, nothing is stored,
the other clients go on, and the read side keeps up with the log.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pycrdt
import pytest

from collab.live import protocol
from collab.live.closecodes import CloseCode
from music import document
from tests.live import (
    YClient,
    count_doc_events,
    create_project,
    log_doc,
    metric,
    raw_close_code,
    raw_websocket,
    running_server,
    server_document,
    synced_clients,
)
from tests.poison import find_poison
from tests.support import at_head, eventually, timeout, wait_ready


async def _ready_at_head(address: str) -> None:
    """/ready answers 200 and no projection lags behind the log or has failed."""
    await wait_ready(
        f"http://{address}",
        at_head,
        seconds=30,
        message="the read side did not keep up with the log",
        interval=0.02,
    )


async def _slow_consumers_dropped(address: str) -> float:
    """The slow-consumer count; prometheus exports a label only once it was counted."""
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        text = (await http.get("/metrics")).text
    name = 'collab_refused_messages_total{reason="slow_consumer"} '
    lines = [line for line in text.splitlines() if line.startswith(name)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


async def _stays_live(writer: YClient, watcher: YClient, key: str) -> None:
    writer.doc.get(document.META, type=pycrdt.Map)["key"] = key
    await eventually(lambda: watcher.json()["meta"].get("key") == key, 10, "room stalled")


async def test_a_poison_update_closes_4400_is_not_stored_and_spares_everyone(
    database_url: str,
) -> None:
    async with running_server(database_url) as address:
        project = await create_project(address)
        good, other, bad = await synced_clients(address, project, 3)
        poison = find_poison(seed=1, start=other.doc.get_update())
        stored = await count_doc_events(database_url, project)
        for update in poison.base:
            await bad.send_raw(protocol.encode_update(update))
        stored += len(poison.base)

        async def base_stored() -> bool:
            return await count_doc_events(database_url, project) == stored

        await eventually(base_stored, 10, "the base updates were not stored")

        await bad.send_raw(protocol.encode_update(poison.update))
        assert await bad.wait_closed() == CloseCode.BAD_MESSAGE
        assert bad.ws is not None
        assert "does not apply" in (bad.ws.close_reason or "")

        await _stays_live(good, other, "E minor")
        assert await count_doc_events(database_url, project) == stored + 1
        # Every stored update applies, in order, to a fresh document.
        replayed = await log_doc(database_url, project)
        assert document.to_json(replayed) == other.json()
        assert (
            await metric(address, 'collab_refused_messages_total{reason="UnappliableUpdate"}') == 1
        )
        await _ready_at_head(address)
        for client in (good, other):
            await client.disconnect()


async def test_an_update_held_for_its_parent_is_refused_when_the_parent_cannot_hold_it(
    database_url: str,
) -> None:
    # Found by the fuzzing campaign: an update naming a parent nobody sent was stored
    # pending, and failed (for the room, the cache and every reader of the log) once the
    # parent arrived as a character of a text instead of a shared type.
    child_of_9_0 = bytes([1, 1, 7, 0, 8, 0, 9, 0, 1, 125, 2, 0])
    text_9_0 = bytes([1, 1, 9, 0, 4, 1, 1]) + b"t" + bytes([1]) + b"a" + bytes([0])
    async with running_server(database_url) as address:
        project = await create_project(address)
        good, other, bad = await synced_clients(address, project, 3)
        stored = await count_doc_events(database_url, project)
        await bad.send_raw(protocol.encode_update(child_of_9_0))
        await _stays_live(good, other, "held")  # a round trip: the child is held by now
        assert await count_doc_events(database_url, project) == stored + 1
        await good.send_raw(protocol.encode_update(text_9_0))
        assert await bad.wait_closed() == CloseCode.BAD_MESSAGE
        assert bad.ws is not None
        assert "once the changes it refers to arrived" in (bad.ws.close_reason or "")
        await _stays_live(good, other, "after")
        assert await count_doc_events(database_url, project) == stored + 3
        replayed = await log_doc(database_url, project)  # applies every stored update
        assert replayed.get_update() == other.doc.get_update()
        await _ready_at_head(address)
        for client in (good, other):
            await client.disconnect()


def _nan_tempo(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.META, type=pycrdt.Map)["tempo"] = math.nan


def _infinite_volume(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.TRACKS, type=pycrdt.Map)["t9"] = pycrdt.Map({"volume_db": -math.inf})


def _nul_name(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.META, type=pycrdt.Map)["name"] = "a\x00b"


def _nul_key(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.TRACKS, type=pycrdt.Map)["t\x00"] = pycrdt.Map({"name": "x"})


def _nul_in_a_nested_value(doc: pycrdt.Doc[Any]) -> None:
    doc.get(document.META, type=pycrdt.Map)["tags"] = [{"who": "x\x00"}]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_nan_tempo, "NaN or infinite"),
        (_infinite_volume, "NaN or infinite"),
        (_nul_name, "NUL"),
        (_nul_key, "NUL"),
        (_nul_in_a_nested_value, "NUL"),
    ],
)
async def test_values_the_log_cannot_hold_close_4400_and_are_not_stored(
    database_url: str, edit: Any, words: str
) -> None:
    async with running_server(database_url) as address:
        project = await create_project(address)
        good, other, bad = await synced_clients(address, project, 3)
        stored = await count_doc_events(database_url, project)

        edit(bad.doc)
        assert await bad.wait_closed() == CloseCode.BAD_MESSAGE
        assert bad.ws is not None
        assert words in (bad.ws.close_reason or "")

        await _stays_live(good, other, "F major")
        assert await count_doc_events(database_url, project) == stored + 1
        replayed = document.to_json(await log_doc(database_url, project))
        assert replayed == other.json()
        assert "t9" not in replayed.get("tracks", {})
        await _ready_at_head(address)
        for client in (good, other):
            await client.disconnect()


async def test_updates_larger_than_a_send_queue_do_not_evict_the_readers(
    database_url: str,
) -> None:
    # Each update is about four times a reader's queue: before, the second one of two
    # closed every reader of the room as too slow.
    async with running_server(
        database_url, send_queue_bytes=256 * 1024, max_message_bytes=2 * 1024 * 1024
    ) as address:
        project = await create_project(address)
        writer, *readers = await synced_clients(address, project, 6)
        meta = writer.doc.get(document.META, type=pycrdt.Map)
        meta["blob"] = "a" * 1_000_000
        meta["blob"] = "b" * 1_000_000
        for reader in readers:
            await eventually(
                lambda reader=reader: str(reader.json()["meta"].get("blob", "")).startswith("b"),
                20,
                "a reader did not get both large updates",
            )
            assert reader.close_code is None
        assert await _slow_consumers_dropped(address) == 0
        for client in (writer, *readers):
            await client.disconnect()


async def test_a_client_stuck_on_one_frame_gets_the_close_frame_when_it_reads_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watchdog, not the queue, finds this client: its queue is far from full, but
    # one frame has waited longer than SEND_TIMEOUT. Before, the pump was cancelled
    # and the client saw the connection drop without a close frame (1006).
    monkeypatch.setattr("collab.live.ws.SEND_TIMEOUT", 1.0)
    async with running_server(database_url, send_queue_bytes=64 * 1024 * 1024) as address:
        project = await create_project(address)
        (writer,) = await synced_clients(address, project, 1)
        reader, stuck = await raw_websocket(address, f"/ws/{project}")
        meta = writer.doc.get(document.META, type=pycrdt.Map)
        for i in range(40):
            meta["blob"] = f"{i}:" + "z" * 200_000
            await asyncio.sleep(0.01)

        async def dropped() -> bool:
            return await _slow_consumers_dropped(address) == 1

        await eventually(dropped, 20, "the watchdog did not drop the stuck client")
        assert (
            await asyncio.wait_for(raw_close_code(reader), timeout(20))
            == CloseCode.TOO_SLOW_RECONNECT
        )
        stuck.close()
        await writer.disconnect()


#: levels of nesting one client grows, one update each: past what pycrdt converts to
#: Python in one call (600 levels still convert; 1,000 raise RecursionError)
DEEP = 1000


async def test_nesting_grown_one_update_at_a_time_is_stored_and_shown_cut(
    database_url: str,
) -> None:
    """One update may not nest types deeper than the read side shows (4400 above), but
    many may, one level each: every one is an ordinary edit. The document then shows
    the deepest levels as null, and nothing stalls: the room, the reads and the
    projections go on."""
    async with running_server(database_url) as address:
        project = await create_project(address)
        (deep,) = await synced_clients(address, project, 1)
        stored = await count_doc_events(database_url, project)
        level = deep.doc.get(document.META, type=pycrdt.Map)
        for _ in range(DEEP):
            child: pycrdt.Map[Any] = pycrdt.Map()
            level["deeper"] = child
            level = child
        level["bottom"] = 1.0

        def depth(value: Any) -> int:
            levels = 0
            while isinstance(value, dict) and "deeper" in value:
                value, levels = value["deeper"], levels + 1
            return levels

        async def all_stored() -> bool:
            return await count_doc_events(database_url, project) == stored + DEEP + 1

        await eventually(all_stored, 60, "the edits were not all stored")
        shown = (await server_document(address, project))["meta"]
        assert depth(shown) == document.MAX_SHOWN_DEPTH
        assert deep.ws is not None
        assert deep.ws.close_code is None
        await _ready_at_head(address)
        await deep.disconnect()
