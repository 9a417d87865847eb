"""The ``audit_log`` projection: the global Merkle log, and signed checkpoints of it.

Each event becomes leaf ``position - 1`` (its chain hash, RFC 6962 leaf hashing);
every complete subtree is stored in ``audit_nodes``, so any root or proof is a few
stored hashes away (``events.merkle``). A checkpoint is signed when
``checkpoint_every`` events have been added since the last one, or when the last one
is older than ``checkpoint_seconds`` (:meth:`AuditLogProjection.seal_due` covers a
quiet log). Checkpoints are not emptied by a rebuild: they are statements auditors
keep, and a rebuilt tree that does not reproduce their roots, at every signed size it
passes, stops this projection with an error instead of signing over a rewritten log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from events import merkle
from events.checkpoints import Checkpoint, Signer
from events.errors import CorruptLog
from events.pacing import Pacer
from events.records import StoredEvent
from events.sql import Row, Sql, SqlDatabase

log = structlog.get_logger("projections.audit_log")

NAME = "audit_log"


async def fetch_nodes(sql: Sql, keys: set[merkle.Key]) -> dict[merkle.Key, bytes]:
    if not keys:
        return {}
    levels, indexes = zip(*sorted(keys), strict=True)
    rows = await sql.fetch(
        "select n.level, n.index, n.hash from audit_nodes n"
        " join unnest($1::smallint[], $2::bigint[]) as k(level, index)"
        " on n.level = k.level and n.index = k.index",
        list(levels),
        list(indexes),
    )
    return {(row["level"], row["index"]): bytes(row["hash"]) for row in rows}


async def nodes_for(sql: Sql, operation: merkle.Operation) -> dict[merkle.Key, bytes]:
    """The stored subtrees ``operation`` reads, in one query."""
    return await fetch_nodes(sql, merkle.plan(operation))


_CHECKPOINTS = "select tree_size, root, signed_at, key_id, signature, origin from audit_checkpoints"


async def latest_checkpoint(sql: Sql) -> Checkpoint | None:
    row = await sql.fetchrow(_CHECKPOINTS + " order by tree_size desc limit 1")
    return _checkpoint(row) if row is not None else None


async def checkpoints(sql: Sql) -> list[Checkpoint]:
    return [_checkpoint(row) for row in await sql.fetch(_CHECKPOINTS + " order by tree_size")]


async def checkpoint_at_least(sql: Sql, tree_size: int) -> Checkpoint | None:
    row = await sql.fetchrow(
        _CHECKPOINTS + " where tree_size >= $1 order by tree_size limit 1", tree_size
    )
    return _checkpoint(row) if row is not None else None


def key_mismatch(key_id: str, newest: Checkpoint | None, origin: str | None = None) -> str | None:
    """Why a process signing with ``key_id`` (as ``origin``) must not add to a log whose
    newest checkpoint is ``newest``; None when it may. One log has one key and one
    origin: a checkpoint of another would make ``collab audit verify`` fail with either
    key, and a signed-note verifier reject one origin or the other."""
    if newest is None:
        return None
    if newest.key_id == key_id:
        if origin is None or newest.origin is None or newest.origin == origin:
            return None
        return (
            f"this process signs as origin {origin}, but the log's newest checkpoint (of"
            f" {newest.tree_size} events) was signed as {newest.origin}: every node must"
            " name the same origin (COLLAB_AUDIT_ORIGIN on every node)"
        )
    return (
        f"this process signs with key {key_id}, but the log's newest checkpoint (of"
        f" {newest.tree_size} events) was signed with key {newest.key_id}: every node must"
        " sign with the key that signed the log (COLLAB_AUDIT_KEY_FILE on every node);"
        " changing the key of a log is not supported"
    )


def _checkpoint(row: Row) -> Checkpoint:
    return Checkpoint(
        tree_size=int(row["tree_size"]),
        root=bytes(row["root"]),
        signed_at=row["signed_at"],
        key_id=str(row["key_id"]),
        signature=bytes(row["signature"]),
        origin=row["origin"],
    )


class AuditLogProjection:
    name = NAME
    tables = ("audit_nodes",)

    def __init__(
        self,
        signer: Signer | None,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 10.0,
    ) -> None:
        self._signer = signer
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._builder: merkle.Builder | None = None
        #: tree size and (monotonic) time of the newest checkpoint
        self._sealed: tuple[int, float] | None = None
        #: why checkpoints are not signed (the log's newest is of another key), if so
        self.refused: str | None = None

    def _refuse(self, newest: Checkpoint) -> None:
        assert self._signer is not None  # noqa: S101 - only a signer seals
        reason = key_mismatch(self._signer.key_id, newest, self._signer.origin)
        if reason != self.refused:
            log.error(
                "audit checkpoint NOT signed: wrong key or origin",
                reason=reason,
                own_key_id=self._signer.key_id,
                log_key_id=newest.key_id,
            )
        self.refused = reason

    def forget(self) -> None:
        self._builder = None
        self._sealed = None

    async def apply(self, tx: Sql, events: Sequence[StoredEvent]) -> None:
        builder = await self._load(tx, events[0].position - 1)
        signed = await self._signed_roots(tx, builder.size, events[-1].position)
        levels: list[int] = []
        indexes: list[int] = []
        hashes: list[bytes] = []
        pacer = Pacer()
        for event in events:
            await pacer.pause()
            if event.position != builder.size + 1:
                raise CorruptLog(
                    f"merkle log: expected position {builder.size + 1}, got {event.position}"
                )
            for level, index, digest in builder.append(merkle.leaf_hash(event.hash)):
                levels.append(level)
                indexes.append(index)
                hashes.append(digest)
            if builder.size in signed and builder.root() != signed[builder.size]:
                raise CorruptLog(
                    f"merkle log: the first {builder.size} events no longer have the root"
                    " that was signed for them; the log was changed (run `collab audit verify`)"
                )
        await tx.execute(
            "insert into audit_nodes (level, index, hash)"
            " select * from unnest($1::smallint[], $2::bigint[], $3::bytea[])",
            levels,
            indexes,
            hashes,
        )
        if self._due(builder.size):
            await self._seal(tx, builder.size, builder.root())

    async def _load(self, tx: Sql, size: int) -> merkle.Builder:
        if self._builder is not None and self._builder.size == size:
            return self._builder
        frontier = await fetch_nodes(tx, set(merkle.frontier_keys(size)))
        self._builder = merkle.Builder(size, frontier)
        newest = await latest_checkpoint(tx)
        if newest is not None:
            age = (datetime.now(UTC) - newest.signed_at).total_seconds()
            self._sealed = (newest.tree_size, time.monotonic() - max(0.0, age))
        else:
            self._sealed = (0, time.monotonic())
        return self._builder

    async def _signed_roots(self, tx: Sql, start: int, end: int) -> dict[int, bytes]:
        """Roots signed for tree sizes in (start, end]: a rebuild passes sizes that were
        signed before, and the roots it computes there must agree."""
        if self._sealed is None or start >= self._sealed[0]:
            return {}
        rows = await tx.fetch(
            "select tree_size, root from audit_checkpoints where tree_size > $1"
            " and tree_size <= $2",
            start,
            end,
        )
        return {int(row["tree_size"]): bytes(row["root"]) for row in rows}

    def _due(self, size: int) -> bool:
        if self._signer is None or self._sealed is None:
            return False
        sealed_size, sealed_at = self._sealed
        if size <= sealed_size:
            return False
        return size - sealed_size >= self._every or (time.monotonic() - sealed_at >= self._seconds)

    async def _seal(self, tx: Sql, size: int, root: bytes) -> Checkpoint | None:
        assert self._signer is not None  # noqa: S101 - _due checked it
        newest = await latest_checkpoint(tx)
        if key_mismatch(self._signer.key_id, newest, self._signer.origin) is not None:
            assert newest is not None  # noqa: S101 - a mismatch needs a checkpoint
            self._refuse(newest)
            # Looked at again when the next checkpoint would be due, not every batch.
            self._sealed = (size, time.monotonic())
            return None
        if self.refused is not None:
            log.info("checkpoints signed again", key_id=self._signer.key_id)
            self.refused = None
        checkpoint = self._signer.sign(size, root)
        await tx.execute(
            "insert into audit_checkpoints (tree_size, root, signed_at, key_id, signature,"
            " origin) values ($1, $2, $3, $4, $5, $6) on conflict (tree_size) do nothing",
            checkpoint.tree_size,
            checkpoint.root,
            checkpoint.signed_at,
            checkpoint.key_id,
            checkpoint.signature,
            checkpoint.origin,
        )
        self._sealed = (size, time.monotonic())
        log.info("checkpoint signed", tree_size=size, root=root.hex(), key_id=checkpoint.key_id)
        return checkpoint

    async def seal_due(self, database: SqlDatabase) -> Checkpoint | None:
        """Sign the folded tree if its newest events have waited ``checkpoint_seconds``.

        Runs beside the runner (a quiet log gets no batches); the checkpoint row lock
        orders it with the runner's transactions.
        """
        if self._signer is None:
            return None
        async with database.transaction() as tx:
            size = await tx.fetchval(
                "select position from projection_checkpoints where name = $1 for update", NAME
            )
            if size is None or size == 0:
                return None
            newest = await latest_checkpoint(tx)
            if newest is not None and newest.tree_size >= size:
                return None
            age = (datetime.now(UTC) - newest.signed_at).total_seconds() if newest else None
            if age is not None and age < self._seconds:
                return None
            nodes = await nodes_for(tx, lambda n: merkle.root(size, n))
            return await self._seal(tx, size, merkle.root(size, nodes))
