"""Near-duplicates by multi-index hashing decide exactly as the quadratic rule did."""
from __future__ import annotations

import numpy as np
import pytest

from metfaces_build.core import hamming
from metfaces_build.core.metrics import popcount


def reference(hashes, objects, radius) -> tuple:
    """The filter's former method (each face against every kept face, in rank order):
    (match, distance to it, nearest kept other-object distance or None)."""
    kept_hash = np.zeros(0, dtype=np.uint64)
    kept: list = []
    match, dist, nearest = [], [], []
    for i, (h, o) in enumerate(zip(hashes, objects)):
        h = np.uint64(h)
        d_all = popcount(np.bitwise_xor(kept_hash, h)) if kept else np.zeros(0, dtype=np.int64)
        others = [j for j, k in enumerate(kept) if objects[k] != o]
        if others:
            j = min(others, key=lambda j: (int(d_all[j]), j))
            d = int(d_all[j])
            if d <= radius:
                match.append(kept[j])
                dist.append(d)
                nearest.append(d)
                continue
            nearest.append(d)
        else:
            nearest.append(None)
        match.append(-1)
        dist.append(-1)
        kept.append(i)
        kept_hash = np.append(kept_hash, h)
    return match, dist, nearest


def clustered(rng, n, n_objects, n_bases, max_flips) -> tuple:
    """Hashes near a few bases (so duplicates are common), some faces sharing objects."""
    bases = rng.integers(0, 2 ** 64, n_bases, dtype=np.uint64, endpoint=False)
    h = bases[rng.integers(0, n_bases, n)]
    for _ in range(max_flips):
        flip = rng.random(n) < 0.5
        h = np.where(flip, h ^ (np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64)), h)
    objects = rng.integers(0, n_objects, n)
    return h, objects


def check_same(h, objects, radius) -> None:
    match, dist, others = hamming.greedy_duplicates(h, objects, radius)
    ref_match, ref_dist, ref_nearest = reference(h, objects, radius)
    assert match.tolist() == ref_match
    assert dist.tolist() == ref_dist
    # a kept face: the reference's nearest other-object face is beyond the radius (or none)
    for i in np.flatnonzero(match < 0):
        assert (ref_nearest[i] is None) == (not others[i])
        assert ref_nearest[i] is None or ref_nearest[i] > radius


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("radius", [0, 1, 3, 4, 6, 7, 9, 12])
def test_same_decisions_as_the_quadratic_rule(seed, radius):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    h, objects = clustered(rng, n, n_objects=int(rng.integers(2, n)), n_bases=int(rng.integers(1, 30)),
                           max_flips=int(rng.integers(0, 10)))
    check_same(h, objects, radius)
    assert (hamming.greedy_duplicates(h, objects, radius)[0] >= 0).any() or radius == 0


def test_random_order_and_prefilter_plans(monkeypatch):
    rng = np.random.default_rng(7)
    h, objects = clustered(rng, 600, 300, 40, 6)
    for _ in range(3):
        perm = rng.permutation(len(h))  # another rank order
        check_same(h[perm], objects[perm], 6)
    for plan in [(7, 1), (8, 2), (9, 3), None]:  # every split finds the same faces
        monkeypatch.setattr(hamming, "prefilter_plan", lambda n, r, plan=plan: plan)
        check_same(h, objects, 6)


def test_crowds_on_one_key_and_large_radius(monkeypatch):
    rng = np.random.default_rng(3)
    h = np.full(300, 0x0123456789ABCDEF, dtype=np.uint64)  # identical hashes (blank crops)
    h[::7] ^= np.uint64(0xFF)
    objects = rng.integers(0, 40, 300)
    monkeypatch.setattr(hamming, "BIG_RUN", 8)
    check_same(h, objects, 6)
    monkeypatch.undo()
    h2, o2 = clustered(rng, 200, 150, 10, 12)
    check_same(h2, o2, 20)   # beyond 16 bits: compared with every kept face
    check_same(h2, o2, 64)


def test_prefilter_finds_exactly_the_faces_with_a_neighbour():
    rng = np.random.default_rng(11)
    h, objects = clustered(rng, 500, 400, 60, 5)
    found = hamming.with_neighbours(h, objects, 4)
    d = popcount(h[:, None] ^ h[None, :])
    want = ((d <= 4) & (objects[:, None] != objects[None, :])).any(axis=1)
    assert found.tolist() == want.tolist() and want.any() and not want.all()


def test_edge_cases():
    empty = hamming.greedy_duplicates(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), 6)
    assert [a.tolist() for a in empty] == [[], [], []]
    one = hamming.greedy_duplicates(np.array([5], dtype=np.uint64), np.array([0]), 6)
    assert [a.tolist() for a in one] == [[-1], [-1], [False]]
    same_obj = hamming.greedy_duplicates(np.array([5, 5], dtype=np.uint64), np.array([1, 1]), 6)
    assert same_obj[0].tolist() == [-1, -1] and same_obj[2].tolist() == [False, False]
    top = np.array([2 ** 64 - 1, 2 ** 64 - 2], dtype=np.uint64)  # the highest bit set
    assert hamming.greedy_duplicates(top, np.array([0, 1]), 1)[0].tolist() == [-1, 0]
