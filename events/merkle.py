"""The global Merkle log over event positions: RFC 6962 (Certificate Transparency)
hashing, proofs and their verification. No I/O.

Leaf ``i`` (0-based) is the event at position ``i + 1``; its leaf data is the event's
chain hash (``events.records.chain_hash``), which already covers its content, its
stream link, its version, its position and its time.

Trees are addressed by *complete subtrees*: ``(level, index)`` is the hash of leaves
``index * 2**level`` to ``(index + 1) * 2**level - 1``. Every range the RFC's
recursions visit splits into such subtrees, so a tree of any size, and any proof in
it, is computed from stored complete subtrees alone: :func:`plan` lists the ones an
operation needs (to fetch them in one query), and the operation then reads them from
a mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

Key = tuple[int, int]
Nodes = Mapping[Key, bytes]
#: something computed from stored subtrees (a root, a proof), for :func:`plan`
Operation = Callable[[Nodes], object]

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not verify, or a request outside the tree."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(lo: int, hi: int, get: Callable[[Key], bytes]) -> bytes:
    size = hi - lo
    if size & (size - 1) == 0:  # a complete subtree; lo is a multiple of size here
        level = size.bit_length() - 1
        return get((level, lo >> level))
    k = _split(size)
    return node_hash(_range_hash(lo, lo + k, get), _range_hash(lo + k, hi, get))


def _path(m: int, lo: int, hi: int, get: Callable[[Key], bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[lo:hi]), m relative to lo."""
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return [*_path(m, lo, lo + k, get), _range_hash(lo + k, hi, get)]
    return [*_path(m - k, lo + k, hi, get), _range_hash(lo, lo + k, get)]


def _subproof(
    m: int, lo: int, hi: int, get: Callable[[Key], bytes], *, complete: bool
) -> list[bytes]:
    """RFC 6962 SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if complete else [_range_hash(lo, hi, get)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, get, complete=complete), _range_hash(lo + k, hi, get)]
    return [*_subproof(m - k, lo + k, hi, get, complete=False), _range_hash(lo, lo + k, get)]


def root(size: int, nodes: Nodes) -> bytes:
    """MTH of the first ``size`` leaves."""
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, _reader(nodes))


def inclusion_proof(index: int, size: int, nodes: Nodes) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    return _path(index, 0, size, _reader(nodes))


def consistency_proof(old_size: int, new_size: int, nodes: Nodes) -> list[bytes]:
    """Proof that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} to {new_size} leaves")
    if old_size == new_size:
        return []
    return _subproof(old_size, 0, new_size, _reader(nodes), complete=True)


def plan(operation: Operation) -> set[Key]:
    """The complete subtrees ``operation`` reads (it is run on placeholder hashes)."""
    wanted = _Recorder()
    operation(wanted)
    return wanted.wanted


@dataclass
class _Recorder(Mapping[Key, bytes]):
    wanted: set[Key] = field(default_factory=set)

    def __getitem__(self, key: Key) -> bytes:
        self.wanted.add(key)
        return bytes(32)

    def __iter__(self) -> Iterator[Key]:  # pragma: no cover - unused
        return iter(self.wanted)

    def __len__(self) -> int:  # pragma: no cover - unused
        return len(self.wanted)


def _reader(nodes: Nodes) -> Callable[[Key], bytes]:
    def get(key: Key) -> bytes:
        try:
            return nodes[key]
        except KeyError:
            level, index = key
            raise ProofError(f"subtree {index} of level {level} is not stored") from None

    return get


# -- building the tree -----------------------------------------------------------------


def frontier_keys(size: int) -> list[Key]:
    """The complete subtrees that new leaves after ``size`` leaves combine with: one per
    set bit of ``size`` (the right edge of the tree)."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


class Builder:
    """Append leaves and get the complete subtrees that appear (to be stored)."""

    def __init__(self, size: int = 0, frontier: Nodes | None = None) -> None:
        self.size = size
        self._pending: dict[int, bytes] = {}
        for level, index in frontier_keys(size):
            if frontier is None or (level, index) not in frontier:
                raise ProofError(f"frontier subtree {index} of level {level} is missing")
            self._pending[level] = frontier[(level, index)]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the new complete subtrees (level, index, hash)."""
        index = self.size
        made = [(0, index, leaf)]
        current = leaf
        level = 0
        while (index >> level) & 1:
            current = node_hash(self._pending.pop(level), current)
            level += 1
            made.append((level, index >> level, current))
        self._pending[level] = current
        self.size += 1
        return made

    def root(self) -> bytes:
        """The root of the tree so far (combining the right edge)."""
        if self.size == 0:
            return EMPTY_ROOT
        current: bytes | None = None
        for level in sorted(self._pending):
            current = (
                self._pending[level]
                if current is None
                else node_hash(self._pending[level], current)
            )
        assert current is not None  # noqa: S101 - size > 0 means something is pending
        return current


def root_of_leaves(leaves: Iterable[bytes]) -> bytes:
    builder = Builder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()


# -- verification (RFC 9162, section 2.1.3.2 and 2.1.4.2) ------------------------------


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` puts ``leaf`` at ``index`` under the root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    current = leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            current = node_hash(sibling, current)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            current = node_hash(current, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if current != expected_root:
        raise ProofError("inclusion proof leads to a different root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless the old tree is a prefix of the new one."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency between {old_size} and {new_size} leaves")
    if old_size == new_size:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if old_root != new_root:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")
