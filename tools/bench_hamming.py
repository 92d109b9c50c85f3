"""How long the filter's near-duplicate test takes over many random 64-bit hashes.

    python tools/bench_hamming.py                     # 10,000 (checked against the old
                                                      # quadratic method), then 1,000,000
    python tools/bench_hamming.py --sizes 100000 --radius 8

Hashes are uniform random (one object per 3 hashes on average), so nearly every face is
kept: the worst case for the kept set's size; --clustered makes most of them near copies. Times `core.hamming.greedy_duplicates`
(prefilter plan printed); at --check sizes it also runs the old method (tests/test_hamming's
reference) and asserts the same decisions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--check", type=int, default=10_000, help="compare with the old method up to this size")
    ap.add_argument("--radius", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clustered", action="store_true",
                    help="near copies of n/4 random hashes (up to 4 bits flipped): most faces "
                         "have neighbours, the worst case of the exact step")
    args = ap.parse_args()
    import numpy as np

    from metfaces_build.core import hamming
    for n in args.sizes:
        rng = np.random.default_rng(args.seed)
        h = rng.integers(0, 2 ** 64, n, dtype=np.uint64, endpoint=False)
        if args.clustered:
            h = h[rng.integers(0, max(1, n // 4), n)]
            for _ in range(4):
                bit = np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64)
                h = np.where(rng.random(n) < 0.5, h ^ bit, h)
        objects = rng.integers(0, max(1, n // 3), n)
        t0 = time.perf_counter()
        match, dist, _ = hamming.greedy_duplicates(h, objects, args.radius)
        took = time.perf_counter() - t0
        line = (f"{n:>9,} hashes, radius {args.radius}: {took:6.2f} s "
                f"(plan {hamming.prefilter_plan(n, args.radius)}), {int((match >= 0).sum())} duplicates")
        if n <= args.check:
            from test_hamming import reference
            t0 = time.perf_counter()
            ref_match, ref_dist, _ = reference(h, objects, args.radius)
            old = time.perf_counter() - t0
            assert match.tolist() == ref_match and dist.tolist() == ref_dist, "decisions differ"
            line += f"; old method {old:.2f} s, same decisions"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
