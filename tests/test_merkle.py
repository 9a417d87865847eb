"""The Merkle log core against an independent reading of RFC 6962.

The reference here is written from the RFC's definitions (MTH, PATH, SUBPROOF and
what a proof means), not from ``events.merkle``: it rebuilds roots from a proof by
following the definitions' recursion, so a proof is accepted only if it is exactly
what the RFC says.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from events import merkle


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1: MTH over leaf data."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_from_path(m: int, n: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """The root implied by PATH(m, D[n]) (section 2.1.1), recursing as it does."""
    if n == 1:
        assert path == [], "a one-leaf tree has an empty path"
        return leaf_hash
    assert path, "path too short"
    k = split(n)
    if m < k:
        return h(b"\x01" + root_from_path(m, k, leaf_hash, path[:-1]) + path[-1])
    return h(b"\x01" + path[-1] + root_from_path(m - k, n - k, leaf_hash, path[:-1]))


def roots_from_proof(
    m: int, n: int, proof: list[bytes], old_root: bytes, *, complete: bool = True
) -> tuple[bytes, bytes]:
    """(old root, new root) implied by SUBPROOF(m, D[n], b) (section 2.1.2)."""
    if m == n:
        if complete:
            assert proof == [], "a complete old tree needs no more hashes"
            return old_root, old_root
        assert len(proof) == 1, "proof length"
        return proof[0], proof[0]
    assert proof, "proof too short"
    k = split(n)
    if m <= k:
        old, new = roots_from_proof(m, k, proof[:-1], old_root, complete=complete)
        return old, h(b"\x01" + new + proof[-1])
    old, new = roots_from_proof(m - k, n - k, proof[:-1], old_root, complete=False)
    return h(b"\x01" + proof[-1] + old), h(b"\x01" + proof[-1] + new)


def build(count: int) -> tuple[list[bytes], dict[merkle.Key, bytes]]:
    data = [f"event-{i}".encode() for i in range(count)]
    builder = merkle.Builder()
    nodes: dict[merkle.Key, bytes] = {}
    for item in data:
        for level, index, digest in builder.append(merkle.leaf_hash(item)):
            nodes[(level, index)] = digest
    return data, nodes


def test_roots_of_every_size_match_the_definition():
    data, nodes = build(70)
    builder = merkle.Builder()
    for n in range(71):
        assert merkle.root(n, nodes) == mth(data[:n])
        assert builder.root() == mth(data[:n])
        if n < 70:
            builder.append(merkle.leaf_hash(data[n]))
    assert merkle.root_of_leaves(merkle.leaf_hash(d) for d in data[:9]) == mth(data[:9])


def test_only_complete_subtrees_are_stored():
    _data, nodes = build(37)
    for level, index in nodes:
        assert (index + 1) << level <= 37
    assert len(nodes) == 37 + 36 - bin(37).count("1") + 1


def test_inclusion_proofs_follow_the_rfc():
    data, nodes = build(45)
    for n in range(1, 46):
        root = mth(data[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(m, n, nodes)
            leaf = h(b"\x00" + data[m])
            assert root_from_path(m, n, leaf, proof) == root
            merkle.verify_inclusion(leaf, m, n, proof, root)


def test_consistency_proofs_follow_the_rfc():
    data, nodes = build(40)
    for n in range(1, 41):
        new_root = mth(data[:n])
        for m in range(1, n + 1):
            old_root = mth(data[:m])
            proof = merkle.consistency_proof(m, n, nodes)
            assert roots_from_proof(m, n, proof, old_root) == (old_root, new_root)
            merkle.verify_consistency(m, n, old_root, new_root, proof)


def test_altered_proofs_are_refused():
    data, nodes = build(100)
    rng = random.Random(7)
    root = merkle.root(100, nodes)
    for _ in range(200):
        m = rng.randrange(100)
        proof = merkle.inclusion_proof(m, 100, nodes)
        leaf = merkle.leaf_hash(data[m])
        bad = list(proof)
        spot = rng.randrange(len(bad))
        bad[spot] = bytes(b ^ 1 for b in bad[spot])
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf, m, 100, bad, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf, (m + 1) % 100, 100, proof, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf, m, 100, proof[:-1], root)
        old = rng.randrange(1, 100)
        consistency = merkle.consistency_proof(old, 100, nodes)
        old_root = merkle.root(old, nodes)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(old, 100, old_root, root, [*consistency, bytes(32)])
        if consistency:
            with pytest.raises(merkle.ProofError):
                merkle.verify_consistency(old, 100, old_root, bytes(32), consistency)


def test_builder_resumes_from_stored_frontier():
    data, nodes = build(53)
    frontier = {key: nodes[key] for key in merkle.frontier_keys(29)}
    resumed = merkle.Builder(29, frontier)
    made: dict[merkle.Key, bytes] = {}
    for item in data[29:]:
        for level, index, digest in resumed.append(merkle.leaf_hash(item)):
            made[(level, index)] = digest
    assert all(nodes[key] == value for key, value in made.items())
    assert resumed.root() == mth(data)
    with pytest.raises(merkle.ProofError, match="missing"):
        merkle.Builder(29, {})


def test_plan_names_exactly_the_subtrees_an_operation_reads():
    _data, nodes = build(77)
    wanted = merkle.plan(lambda n: merkle.inclusion_proof(40, 77, n))
    subset = {key: nodes[key] for key in wanted}
    assert merkle.inclusion_proof(40, 77, subset) == merkle.inclusion_proof(40, 77, nodes)
    assert len(wanted) <= 2 * 7
    with pytest.raises(merkle.ProofError, match="not stored"):
        merkle.root(77, {})
