"""A seeded fuzzing campaign against a real ``collab serve``, and what it must leave intact.

One fuzzing connection sends the units of a :class:`FrameGenerator`, each followed by a
query for awareness (``0x03``). The server handles a connection's frames in order and
answers every query, so its answer says that the whole unit was handled, and a close
that comes instead is the unit's doing. Whenever the server closes the connection the
fuzzer reconnects; when the project stops taking connections altogether (every unit
closed abnormally, GIVE_UP_AFTER in a row) the run ends there. An honest pycrdt editor
keeps editing the same project beside it.

Afterwards every broken promise is a finding, in words: the server died or stopped
answering; a connection closed with a code other than the refusals (4400, 4413); a frame
an editor sends was refused; the honest editor was closed, could not apply a broadcast
or was sent awareness a browser cannot parse; ``/ready`` is not 200 with every
projection running at the head; a read of the project does not answer 200; a stored
update does not apply in order to a fresh document, or holds a NUL character, a lone
surrogate or a non-finite number; the honest editor, the room and the log's replay
differ; the server's log shows a traceback, an error or a 5xx; SIGTERM does not stop
it cleanly.

The module stays whole (about 650 lines): the fuzzer, the honest editor and the checks
all write to one :class:`Findings` and follow one :class:`Restarts`, and the list of
promises above reads top to bottom as the run checks them. The frames themselves are
in tests/fuzz_frames.py.

Over 400 lines because the campaign is one loop (send a unit, learn its fate, check the
invariants the server must keep) whose parts share the run's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

from collab.live.closecodes import CloseCode
from events.models import DOCUMENT_EVENTS, project_stream
from events.postgres import PostgresEventStore
from music import document
from projections import jsontext
from tests.fuzz_frames import ACCEPTED, FrameGenerator, Unit
from tests.live import YClient, create_project
from tests.serving import ServeProcess, log_alarms
from tests.support import NotReady, at_head, projections, timeout, wait_ready
from tests.yjs_values import TooDeep, bad_values, state_vector

#: the server's message limit in a campaign: small, so that oversized frames are cheap
MAX_MESSAGE_BYTES = 65_536
#: close codes that refuse bad input; any other close is a finding
REFUSALS = frozenset({CloseCode.BAD_MESSAGE, CloseCode.TOO_LARGE})
#: findings of one sort listed in full before the rest are only counted
SHOWN = 5
#: units in a row closed abnormally (the server alive) before the run gives up
GIVE_UP_AFTER = 20
#: seconds a read of the project may take after the run before it is a finding
SLOW_READ = 5.0
#: frames sent to one project before the next one takes over
PER_PROJECT = 20_000
#: pause between two edits of the honest editor
HONEST_PAUSE = 0.02
_DOC_EVENTS = DOCUMENT_EVENTS


@dataclass
class Tally:
    frames: int = 0
    units: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    #: units the server answered without closing, by kind
    answered: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    closes_by_kind: dict[str, Counter[int]] = field(default_factory=dict)
    #: one close reason seen for each close code
    reasons: dict[int, str] = field(default_factory=dict)
    reconnects: int = 0
    crashes: int = 0
    seconds: float = 0.0

    def close(self, kind: str, code: int, reason: str) -> None:
        self.closes[code] += 1
        self.closes_by_kind.setdefault(kind, Counter())[code] += 1
        self.reasons.setdefault(code, reason)


@dataclass
class Findings:
    """Findings grouped by sort: each sort counted, its first few kept in words."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, sort: str, detail: str = "") -> None:
        self.counts[sort] += 1
        shown = self.examples.setdefault(sort, [])
        if detail and len(shown) < SHOWN:
            shown.append(detail)

    def lines(self) -> list[str]:
        out = []
        for sort, count in self.counts.items():
            out.append(f"{sort} ({count} times)" if count > 1 else sort)
            out.extend(f"    {detail}" for detail in self.examples.get(sort, []))
        return out

    def __bool__(self) -> bool:
        return bool(self.counts)


@dataclass
class FuzzReport:
    seed: int
    tally: Tally
    findings: Findings
    stored_updates: int = 0
    honest_edits: int = 0
    #: projects fuzzed in turn (``per_project`` frames each)
    projects: int = 1

    def summary(self) -> str:
        tally = self.tally
        rate = tally.frames / tally.seconds if tally.seconds else 0.0
        closes = ", ".join(f"{code}: {n}" for code, n in sorted(tally.closes.items()))
        lines = [
            f"seed {self.seed}: {tally.frames} frames in {tally.units} units, "
            f"{tally.seconds:.1f} s ({rate:.0f} frames/s), {tally.reconnects} reconnects, "
            f"{tally.crashes} server crashes",
            f"closes by code: {closes or 'none'}",
            f"stored updates: {self.stored_updates}; honest edits: {self.honest_edits};"
            f" projects: {self.projects}",
        ]
        for kind in sorted(tally.sent):
            by_code = tally.closes_by_kind.get(kind, Counter())
            refused = ", ".join(f"{code} x{n}" for code, n in sorted(by_code.items()))
            lines.append(
                f"  {kind:22} sent {tally.sent[kind]:7}  kept open {tally.answered[kind]:7}"
                + (f"  closed {refused}" if refused else "")
            )
        lines.append("findings:" if self.findings else "findings: none")
        lines.extend(f"  {line}" for line in self.findings.lines())
        return "\n".join(lines)


class Restarts:
    """How many times the campaign restarted a crashed server (an honest close across a
    restart is expected)."""

    def __init__(self) -> None:
        self.epoch = 0


class HonestEditor(YClient):
    """A pycrdt editor that keeps editing, reconnects when closed, and notes anything that
    disturbs it."""

    def __init__(
        self,
        server: ServeProcess,
        project_id: str,
        seed: int,
        findings: Findings,
        restarts: Restarts,
    ) -> None:
        super().__init__(server.address, project_id)
        self.server = server
        self.rng = random.Random(seed)
        self.findings = findings
        self.restarts = restarts
        self.edits = 0
        self._epoch = restarts.epoch
        self._noted: asyncio.Task[None] | None = None
        #: ids of the tracks this editor made
        self.mine: list[str] = []

    def read_failure(self) -> BaseException | None:
        """Why the reading task died, when it died of something else than a close."""
        reader = self._tasks[0] if self._tasks else None
        if reader is None or not reader.done() or reader.cancelled():
            return None
        return reader.exception()

    @property
    def open(self) -> bool:
        return self.ws is not None and self.ws.state is State.OPEN

    async def ensure_connected(self, seconds: float) -> bool:
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            await self.disconnect()
            self._epoch = self.restarts.epoch
            try:
                await self.connect()
                await self.wait_synced(10)
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            return True
        return False

    async def keep_editing(self, stop: asyncio.Event) -> None:
        await self.ensure_connected(30)
        while not stop.is_set():
            await self._check()
            if not self.open and not await self.ensure_connected(30):
                if self.server.alive:
                    self.findings.add("the honest editor could not reconnect for 30 s")
                continue
            self._edit()
            self.edits += 1
            await asyncio.sleep(HONEST_PAUSE)
        await self._check()

    def _edit(self) -> None:
        """An edit of the editor's own tracks (the fuzzer fills the rest of the document
        with things an editor does not expect)."""
        tracks = self.doc.get(document.TRACKS, type=pycrdt.Map)
        kind = self.rng.randrange(4)
        # One chosen track is checked, not all: the editor's tracks grow with the run,
        # and checking each of them before every edit made a long campaign quadratic.
        chosen = self.rng.choice(self.mine) if self.mine else None
        if chosen is not None and not isinstance(tracks.get(chosen), pycrdt.Map):
            self.mine.remove(chosen)  # the fuzzer wrote over it
            chosen = None
        if kind == 0 or chosen is None:
            track_id = f"honest-{self.rng.randrange(10**9)}"
            with self.doc.transaction():
                tracks[track_id] = pycrdt.Map(
                    {"name": track_id, "volume_db": 0.0, "notes": pycrdt.Array()}
                )
                self.doc.get(document.TRACK_ORDER, type=pycrdt.Array).append(track_id)
            self.mine.append(track_id)
        elif kind == 1:
            tracks[chosen]["volume_db"] = float(self.rng.randrange(-60, 6))
        elif kind == 2:
            notes = tracks[chosen]["notes"]
            notes.append(pycrdt.Map({"pitch": float(self.rng.randrange(128)), "start": 0.0}))
        else:
            meta = self.doc.get(document.META, type=pycrdt.Map)
            meta["tempo"] = float(self.rng.randrange(60, 180))

    async def disconnect(self) -> None:
        self._note_read_failure()
        if self.read_failure() is not None:
            self._tasks = self._tasks[1:]  # its failure is noted; do not raise it again
        await super().disconnect()

    def _note_read_failure(self) -> None:
        failure = self.read_failure()
        if failure is not None and self._tasks[0] is not self._noted:
            self._noted = self._tasks[0]
            self.findings.add("the honest editor could not apply a broadcast", repr(failure))

    async def _check(self) -> None:
        if self.read_failure() is not None:
            await self.disconnect()  # nobody reads this connection any more
        if self.ws is not None and self.ws.state is State.CLOSED and self.close_code is not None:
            expected = self._epoch != self.restarts.epoch or not self.server.alive
            if not expected:
                self.findings.add(
                    "the honest editor was closed",
                    f"code {self.close_code}: {self.close_reason}",
                )
            self.close_code = None
        for frame in self.awareness:
            problem = _awareness_problem(frame)
            if problem:
                self.findings.add(
                    "the honest editor was sent awareness JSON.parse refuses", problem
                )
        self.awareness.clear()
        self.received.clear()  # not needed here, and long runs would keep every broadcast


def _awareness_problem(frame: bytes) -> str | None:
    """Why a browser could not read this awareness frame (None when it can)."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        reader = _Bytes(frame)
        reader.var_uint()  # message type
        body = _Bytes(reader.var_bytes())
        for _ in range(body.var_uint()):
            body.var_uint()
            body.var_uint()
            json.loads(body.var_bytes().decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError, IndexError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return None


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def var_uint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        if self.pos + length > len(self.data):
            raise IndexError("length past the end")
        self.pos += length
        return self.data[self.pos - length : self.pos]


class Fuzzer:
    """The fuzzing connection: sends units, reconnects, tallies, restarts a dead server."""

    def __init__(
        self,
        server: ServeProcess,
        project_id: str,
        generator: FrameGenerator,
        findings: Findings,
        restarts: Restarts,
        *,
        seed: int,
        stop_on_crash: bool,
    ) -> None:
        self.server = server
        self.url = f"ws://{server.address}/ws/{project_id}"
        self.generator = generator
        self.findings = findings
        self.restarts = restarts
        self.seed = seed
        self.stop_on_crash = stop_on_crash
        self.tally = Tally()
        self.ws: ClientConnection | None = None
        self._answers = 0
        self._answered = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        #: units in a row that ended in a close other than a refusal
        self._abnormal = 0

    async def run(self, frames: int, seconds: float) -> bool:
        """Send until the tally holds ``frames`` frames or ``seconds`` pass; False when
        the campaign must stop (a crash with ``stop_on_crash``, a project gone bad)."""
        started = time.monotonic()
        end = started + seconds
        carry_on = True
        try:
            while self.tally.frames < frames and time.monotonic() < end:
                if self.ws is None and not await self._connect():
                    carry_on = False
                    break
                if not await self._send(next(self.generator)):
                    carry_on = False
                    break
        finally:
            self.tally.seconds += time.monotonic() - started
            await self._drop()
        return carry_on

    def move_to(self, project_id: str) -> None:
        """Fuzz another project from the next connection on."""
        self.url = f"ws://{self.server.address}/ws/{project_id}"
        self._abnormal = 0

    async def _connect(self) -> bool:
        deadline = time.monotonic() + timeout(30)
        while time.monotonic() < deadline:
            try:
                self.ws = await websockets.connect(
                    self.url,
                    max_size=None,
                    ping_interval=None,
                    compression=None,
                    open_timeout=timeout(10),
                    close_timeout=timeout(5),
                )
            except (OSError, InvalidHandshake, TimeoutError):
                if not await self._survived("connecting"):
                    return False
                await asyncio.sleep(0.05)
                continue
            self.tally.reconnects += 1
            self._answers = 0
            self._reader = asyncio.create_task(self._read(self.ws))
            return True
        self.findings.add("the fuzzer could not connect for 30 s (server alive)")
        return False

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if isinstance(message, bytes) and message[:1] == b"\x01":
                    self._answers += 1
                    self._answered.set()
        self._answered.set()

    async def _send(self, unit: Unit) -> bool:
        """Send one unit and learn its fate; False when the campaign must stop."""
        ws, reader = self.ws, self._reader
        assert ws is not None
        assert reader is not None
        wanted = self._answers + unit.queries + 1
        tally = self.tally
        tally.units += 1
        tally.frames += len(unit.frames)
        tally.sent[unit.kind] += 1
        with contextlib.suppress(ConnectionClosed):
            for frame in unit.frames:
                await ws.send(frame)
            await ws.send(b"\x03")
        deadline = time.monotonic() + timeout(10)
        while self._answers < wanted and not reader.done():
            self._answered.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                self.findings.add(
                    "a unit was neither answered nor refused within 10 s",
                    f"unit {unit.number} ({unit.kind}) of seed {self.seed}",
                )
                await self._drop()
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), left)
        if not reader.done():
            tally.answered[unit.kind] += 1
            self._abnormal = 0
            return True
        await reader
        code = ws.close_code if ws.close_code is not None else 1006
        reason = ws.close_reason or ""
        tally.close(unit.kind, code, reason)
        self.ws = None
        where = f"unit {unit.number} ({unit.kind}) of seed {self.seed}"
        if code in REFUSALS:
            self._abnormal = 0
            if unit.kind in ACCEPTED:
                self.findings.add(f"a frame an editor sends was refused ({unit.kind})", reason)
            return True
        if code == 1006:  # no close frame: did the server die?
            crashes = tally.crashes
            carry_on = await self._survived(where)
            if tally.crashes > crashes:
                return carry_on  # noted as a crash
        self.findings.add(f"a connection was closed with {code}", f"{where}: {reason!r}")
        self._abnormal += 1
        if self._abnormal >= GIVE_UP_AFTER:
            # Every connection fails now (a room that no longer loads, say): going on
            # would only repeat this, one slow close at a time.
            self.findings.add(
                f"the project stopped taking connections ({GIVE_UP_AFTER} abnormal closes"
                " in a row); the run ended there",
                where,
            )
            return False
        return True

    async def _survived(self, where: str) -> bool:
        """False when the server died and the campaign stops on a crash; a server that
        died is noted, and started again when the campaign goes on."""
        for _ in range(10):  # the process may take a moment to be reaped
            if not self.server.alive:
                break
            await asyncio.sleep(0.05)
        if self.server.alive:
            return True
        self.tally.crashes += 1
        self.findings.add(
            "the server process died", f"exit code {self.server.exit_code} at {where}"
        )
        if self.stop_on_crash:
            return False
        self.restarts.epoch += 1
        await self.server.start()
        return True

    async def _drop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), timeout(5))
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        self.ws, self._reader = None, None


# -- after the run -----------------------------------------------------------------------


class LogReplay:
    """The project's stored updates applied in order to a fresh document, read in
    batches as the log grows; notes updates that do not apply and values PostgreSQL's
    JSON cannot hold."""

    def __init__(self, database_url: str, project_id: str, findings: Findings) -> None:
        self.database_url = database_url
        self.stream = project_stream(project_id)
        self.findings = findings
        self.doc = document.new_document()
        self.version = 0
        self.updates = 0
        #: False once a stored value would crash pycrdt's conversion to Python
        self.renderable = True

    async def catch_up(self) -> None:
        store = await PostgresEventStore.connect(self.database_url, min_size=1, max_size=1)
        try:
            while batch := await store.read_payloads(
                self.stream, _DOC_EVENTS, after_version=self.version, limit=2000
            ):
                for record in batch:
                    self.version = record.version
                    if record.payload:
                        self._apply(record.payload, f"version {record.version}")
        finally:
            await store.close()

    def _apply(self, update: bytes, where: str) -> None:
        self.updates += 1
        findings = self.findings
        try:
            for problem in bad_values(update):
                findings.add("a stored update holds a value JSON cannot", f"{where}: {problem}")
        except TooDeep as exc:
            self.renderable = False
            findings.add("a stored update holds values nested too deep", f"{where}: {exc}")
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            findings.add("a stored update does not apply", f"{where}: {exc}")
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            findings.add("a stored update does not apply", f"{where}: pycrdt panicked")


def shown(doc: pycrdt.Doc[Any], what: str, findings: Findings) -> str | None:
    """The document as the server shows it (``GET .../document``), keys sorted; None,
    and a finding, when it cannot be converted.

    The server's JSON writes what JSON has no form for as null: binary values and
    subdocuments, which a Yjs update may carry. Shown any other way (``repr``, say) a
    document holding one differs from the server's view of the same state: that was
    the one finding of the 47,391-frame campaign of 2026-12-03 (seed 1).
    """
    try:
        view = json.loads(jsontext.dumps(document.to_json(doc)))
        return json.dumps(view, sort_keys=True)
    except (Exception, RecursionError) as exc:
        findings.add(f"{what} cannot be shown as JSON", f"{type(exc).__name__}: {exc!s:.120}")
        return None


async def ready_at_head(address: str, findings: Findings, seconds: float = 60) -> None:
    """Until /ready is 200 with every projection running at lag 0; a finding otherwise."""

    def settled(response: httpx.Response) -> bool:
        # A projection that fails on what the log holds will not recover: no need to wait.
        failing = any(p["state"] == "failing" for p in projections(response).values())
        return at_head(response) or failing

    message = "/ready did not report every projection at the head"
    try:
        response = await wait_ready(
            f"http://{address}", settled, seconds=seconds, message=message, interval=0.2
        )
    except NotReady as exc:
        findings.add(message, exc.last[:300])
        return
    if not at_head(response):
        findings.add(message, f"{response.status_code}: {response.text[:300]}")


async def reads_answer(address: str, project_id: str, findings: Findings) -> Any:
    """GET the project's reads; each must answer 200. Returns the room's document."""
    room: Any = None
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=timeout(30)) as http:
        for path in (
            "/api/projects",
            f"/api/projects/{project_id}",
            f"/api/projects/{project_id}/document",
        ):
            shown = path.replace(project_id, "{id}")
            started = time.monotonic()
            try:
                response = await http.get(path)
            except httpx.TimeoutException:
                # The 2026-12-03 campaign (about 150,000 stored updates) ended here in a
                # traceback, its summary lost: a slow read is a finding, not the end.
                findings.add(f"GET {shown} did not answer within {timeout(30):.0f} s")
                continue
            took = time.monotonic() - started
            if took > SLOW_READ:
                findings.add(f"GET {shown} took {took:.1f} s")
            if response.status_code != 200:
                findings.add(f"GET {shown} answered {response.status_code}", response.text[:200])
            elif path.endswith("/document"):
                room = response.json()["document"]
    return room


async def campaign(
    database_url: str,
    work: Path,
    *,
    seed: int,
    frames: int,
    seconds: float,
    stop_on_crash: bool = True,
    skip: frozenset[str] = frozenset(),
    log_level: str = "info",
    per_project: int = PER_PROJECT,
) -> FuzzReport:
    """Run ``frames`` fuzz frames (at most ``seconds``) against a fresh ``collab serve``
    on ``database_url`` (migrated, empty), then check what must hold.

    ``stop_on_crash``: end the run when the server dies (else start it again and go
    on); ``skip``: frame kinds not to send; ``log_level``: the server's (``warning``
    keeps a long run's log small: errors and tracebacks are still logged);
    ``per_project``: frames sent to one project before the next project takes over
    (each project, with its own honest editor, is checked when its share is sent): a
    project of hundreds of thousands of fuzz updates makes every full sync slow, and
    the run would measure that instead of the server's refusals.
    """
    findings = Findings()
    restarts = Restarts()
    server = ServeProcess(
        database_url,
        work / f"serve-fuzz-{seed}.log",
        COLLAB_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
        COLLAB_LOG_LEVEL=log_level,
    )
    generator = FrameGenerator(seed, max_message_bytes=MAX_MESSAGE_BYTES, skip=skip)
    try:
        await server.start()
        fuzzer: Fuzzer | None = None
        report = FuzzReport(seed, Tally(), findings, projects=0)
        end = time.monotonic() + seconds
        while report.tally.frames < frames and time.monotonic() < end:
            report.projects += 1
            project = await create_project(server.address, f"Fuzz {report.projects}")
            honest = HonestEditor(server, project, seed, findings, restarts)
            stop = asyncio.Event()
            editing = asyncio.create_task(honest.keep_editing(stop))
            if fuzzer is None:
                fuzzer = Fuzzer(
                    server,
                    project,
                    generator,
                    findings,
                    restarts,
                    seed=seed,
                    stop_on_crash=stop_on_crash,
                )
                report.tally = fuzzer.tally
            else:
                fuzzer.move_to(project)
            share = min(frames, report.tally.frames + per_project)
            try:
                carry_on = await fuzzer.run(share, end - time.monotonic())
            finally:
                stop.set()
                await editing
            report.honest_edits += honest.edits
            if not server.alive:
                await server.start()  # to check what it left behind
            await _check(server, project, honest, report)
            await honest.disconnect()
            if not carry_on:
                break
        code = await server.stop()
        if code != 0:
            findings.add("SIGTERM did not stop the server cleanly", f"exit code {code}")
        count, lines = log_alarms(server.log)
        for line in lines:
            findings.add("the server's log shows a traceback, an error or a 5xx", line)
        if count > len(lines):
            findings.counts["the server's log shows a traceback, an error or a 5xx"] = count
        return report
    finally:
        server.close()


async def _check(
    server: ServeProcess, project: str, honest: HonestEditor, report: FuzzReport
) -> None:
    findings = report.findings
    if not await honest.ensure_connected(20):
        findings.add("the honest editor could not reconnect after the run")
    replay = LogReplay(server.database_url, project, findings)
    # The honest editor's last edits may still be on their way to the log.
    deadline = time.monotonic() + timeout(20)
    while True:
        await replay.catch_up()
        same = state_vector(honest.doc.get_state()) == state_vector(replay.doc.get_state())
        if same or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    report.stored_updates += replay.updates
    if not same:
        findings.add("the honest editor's state vector differs from the log's replay")
    await ready_at_head(server.address, findings)
    room = await reads_answer(server.address, project, findings)
    if not replay.renderable:
        return  # converting these documents to Python would crash this process
    wanted = shown(replay.doc, "the log's replay", findings)
    if wanted is not None and shown(honest.doc, "the honest editor's document", findings) != wanted:
        findings.add("the honest editor's document differs from the log's replay")
    if room is not None and wanted is not None and json.dumps(room, sort_keys=True) != wanted:
        findings.add("the room's document differs from the log's replay")
