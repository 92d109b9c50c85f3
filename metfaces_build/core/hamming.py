"""Near-duplicates among 64-bit hashes in near-linear time (multi-index hashing).

The filter's rule, in rank order (best face first): a face is a near-duplicate when a
face kept before it, of another object, lies within `radius` bits; it names the closest
such face (ties: the earlier one). Comparing every face with every kept face is
quadratic (hours at 100,000 faces). Here:

1. a prefilter finds every face that has any face of another object within `radius`
   bits, over all faces at once: split the 64 bits into m blocks, m > radius; two hashes
   within `radius` bits agree exactly on at least k = m - radius blocks, so each set of
   k blocks is a sort key, and only hashes sharing a key are compared (popcount);
2. the faces it found are decided in rank order against an index of the kept ones
   (4 blocks of 16 bits, each looked up as is and with each bit flipped: within 7 bits,
   one block differs by at most one bit).

A face with no neighbour within `radius` is kept and can be no one's duplicate, so
deciding only the others gives exactly the sequential rule's decisions.

Pure: numpy arrays in, numpy arrays out.
"""
from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Optional

import numpy as np

from .metrics import popcount

BITS = 64
MAX_GROUPINGS = 400     # beyond this many block subsets, the prefilter is skipped
BIG_RUN = 64            # hashes sharing one key beyond this: marked without comparing


def block_edges(m: int) -> list:
    """(first bit, width) of m contiguous blocks of near-equal size covering the 64 bits."""
    edges = [round(i * BITS / m) for i in range(m + 1)]
    return [(a, b - a) for a, b in zip(edges, edges[1:])]


def block_masks(m: int) -> list:
    """The blocks of `block_edges` as masks (Python ints)."""
    return [((1 << w) - 1) << a for a, w in block_edges(m)]


def prefilter_plan(n: int, radius: int) -> Optional[tuple]:
    """(m, k) minimising the estimated work (sorts plus compared pairs), or None when no
    split is worth it (a large radius): then every face goes to the exact step."""
    if radius < 0 or n < 2:
        return None
    best, best_cost = None, float("inf")
    for m in range(radius + 1, min(BITS, radius + 12) + 1):
        k = m - radius
        groupings = comb(m, k)
        if groupings > MAX_GROUPINGS:
            continue
        key_bits = min(BITS, (BITS // m) * k)
        pairs = groupings * n * n / 2.0 / 2.0 ** key_bits
        cost = groupings * n + pairs  # measured: a sorted element costs about a compared pair
        if cost < best_cost:
            best, best_cost = (m, k), cost
    return best


def with_neighbours(hashes: np.ndarray, objects: np.ndarray, radius: int) -> np.ndarray:
    """True for each hash with a hash of another object (object codes differ) within
    `radius` bits (a superset when a key is shared by more than BIG_RUN hashes)."""
    return _near(np.asarray(hashes, dtype=np.uint64), np.asarray(objects, dtype=np.int64),
                 radius)[0]


def _near(h: np.ndarray, obj: np.ndarray, radius: int) -> tuple:
    """(with_neighbours mask, near pairs (a, b, d) or None when not all were listed)."""
    n = len(h)
    plan = prefilter_plan(n, radius)
    if plan is None:
        every = radius >= 0 and n >= 2
        return np.full(n, every, dtype=bool), None
    m, k = plan
    blocks = block_edges(m)
    found = np.zeros(n, dtype=bool)
    pairs: list = []
    index_bits = max(1, (n - 1).bit_length())
    for subset in combinations(range(m), k):
        key = np.zeros(n, dtype=np.uint64)  # the subset's blocks side by side
        width = 0
        for b in subset:
            a, w = blocks[b]
            key |= ((h >> np.uint64(a)) & np.uint64((1 << w) - 1)) << np.uint64(width)
            width += w
        if width + index_bits <= BITS:  # key and position in one word: a plain sort
            packed = np.sort((key << np.uint64(index_bits)) | np.arange(n, dtype=np.uint64))
            order = (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64)
            ks = packed >> np.uint64(index_bits)
        else:
            order = np.argsort(key, kind="stable")
            ks = key[order]
        if not _mark_within_runs(h, obj, order, ks, radius, found, pairs):
            pairs = None  # a crowd was marked, not listed: decide with the index
    if pairs is None:
        return found, None
    if not pairs:
        return found, (np.zeros(0, np.int64),) * 3
    return found, tuple(np.concatenate(x) for x in zip(*pairs))


def _mark_within_runs(h, obj, order, ks, radius, found, pairs) -> bool:
    """Mark hashes sharing a key with a near hash of another object; list the pairs in
    `pairs` (when not None). False when a crowd (> BIG_RUN) was marked without pairs."""
    same = ks[1:] == ks[:-1]
    if not same.any():
        return True
    # members of runs (equal keys) of two or more
    member = np.zeros(len(ks), dtype=bool)
    member[1:] |= same
    member[:-1] |= same
    idx = order[member]
    starts = np.concatenate(([True], ~same))[member]  # a run's first member
    run = np.cumsum(starts) - 1
    length = np.bincount(run)
    big = length[run] > BIG_RUN
    listed = True
    if big.any():  # a crowd on one key: mark the members when objects differ, compare none
        o = obj[idx[big]]
        r = run[big]
        lo = np.full(len(length), np.iinfo(np.int64).max)
        hi = np.full(len(length), np.iinfo(np.int64).min)
        np.minimum.at(lo, r, o)
        np.maximum.at(hi, r, o)
        found[idx[big][lo[r] != hi[r]]] = True
        idx, run = idx[~big], run[~big]
        listed = False
    for off in range(1, int(length[length <= BIG_RUN].max(initial=1))):
        same_run = run[off:] == run[:-off]
        if not same_run.any():
            break
        a, b = idx[:-off][same_run], idx[off:][same_run]
        d = popcount(h[a] ^ h[b])
        near = (obj[a] != obj[b]) & (d <= radius)
        found[a[near]] = True
        found[b[near]] = True
        if pairs is not None and near.any():
            pairs.append((a[near], b[near], d[near]))
    return listed


def greedy_duplicates(hashes: np.ndarray, objects: np.ndarray, radius: int) -> tuple:
    """The sequential rule over hashes in rank order (best first).

    Returns (match, distance, others_before), arrays of len(hashes): `match[i]` is the
    position of the kept hash that makes i a near-duplicate (-1: i is kept), `distance[i]`
    the bits to it (-1 when kept), `others_before[i]` whether any face of another object
    was kept before i (False: "first of its kind")."""
    h = np.asarray(hashes, dtype=np.uint64)
    obj = np.asarray(objects, dtype=np.int64)
    n = len(h)
    match = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, -1, dtype=np.int64)
    if radius < 0 or n == 0:
        return match, dist, np.zeros(n, dtype=bool)
    found, pairs = _near(h, obj, radius)
    if pairs is not None:  # every near pair listed: decide from them
        _decide_pairs(n, *pairs, match, dist)
    else:
        _decide(h, obj, radius, np.flatnonzero(found), match, dist)
    return match, dist, _others_before(obj, match < 0)


def _decide_pairs(n: int, a, b, d, match, dist) -> None:
    """The rule over the listed near pairs: each later face takes its closest (then
    earliest) earlier neighbour that was kept; neighbours decide before it."""
    if not len(a):
        return
    later, earlier = np.maximum(a, b), np.minimum(a, b)
    key = np.unique(later * n + earlier, return_index=True)[1]  # a pair found twice: once
    later, earlier, d = later[key], earlier[key], d[key]
    order = np.lexsort((earlier, d, later))
    kept = np.ones(n, dtype=bool)
    done = -1
    for i, j, dd in zip(later[order].tolist(), earlier[order].tolist(), d[order].tolist()):
        if i == done or not kept[j]:
            continue
        match[i], dist[i], kept[i] = j, dd, False
        done = i


def _decide(h, obj, radius, todo, match, dist) -> None:
    """Rank order over `todo` against an index of the kept ones among them."""
    hs = [int(x) for x in h[todo]]
    os_ = [int(x) for x in obj[todo]]
    if radius + 1 <= 16:
        # 4 blocks of 16 bits, each probed within radius // 4 bits (0 or 1) when radius
        # <= 7, so buckets stay small however many faces are kept; else radius + 1
        # blocks probed exactly. Either way a hash within `radius` shares a probed key.
        m = 4 if radius <= 7 else radius + 1
        masks = block_masks(m)
        flips = [[0] + ([1 << (a + b) for b in range(w)] if radius // 4 else [])
                 for a, w in block_edges(m)] if m == 4 else [[0]] * m
        tables: list = [dict() for _ in masks]
        for pos, i in enumerate(todo):
            x, o = hs[pos], os_[pos]
            best = None
            seen = set()
            for t, bm, fl in zip(tables, masks, flips):
                for f in fl:
                    for q in t.get((x & bm) ^ f, ()):
                        if q in seen:
                            continue
                        seen.add(q)
                        if os_[q] != o:
                            d = _bits(x ^ hs[q])
                            if d <= radius and (best is None or (d, q) < best):
                                best = (d, q)
            if best is None:
                for t, bm in zip(tables, masks):
                    t.setdefault(x & bm, []).append(pos)
            else:
                match[i], dist[i] = todo[best[1]], best[0]
        return
    kept_h = np.zeros(len(todo), dtype=np.uint64)  # a large radius: compare with every kept
    kept_o = np.zeros(len(todo), dtype=np.int64)
    kept_at = np.zeros(len(todo), dtype=np.int64)
    nk = 0
    for pos, i in enumerate(todo):
        d = popcount(kept_h[:nk] ^ h[i])
        ok = (kept_o[:nk] != obj[i]) & (d <= radius)
        if ok.any():
            j = int(np.flatnonzero(ok)[np.argmin(d[ok])])  # first of the smallest: earliest
            match[i], dist[i] = kept_at[j], int(d[j])
        else:
            kept_h[nk], kept_o[nk], kept_at[nk] = h[i], obj[i], i
            nk += 1


def _others_before(obj: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Whether a face of another object was kept before each position: more faces kept
    before it than faces of its own object."""
    k = kept.astype(np.int64)
    before = np.cumsum(k) - k
    order = np.lexsort((np.arange(len(obj)), obj))  # by object, then position
    ko = k[order]
    cum = np.cumsum(ko) - ko
    starts = np.concatenate(([True], obj[order][1:] != obj[order][:-1]))
    first = np.maximum.accumulate(np.where(starts, np.arange(len(obj)), 0))
    own = np.empty(len(obj), dtype=np.int64)
    own[order] = cum - cum[first]
    return before > own


def _bits(x: int) -> int:
    return bin(x).count("1")


if hasattr(int, "bit_count"):  # Python 3.10+
    _bits = int.bit_count  # noqa: F811
