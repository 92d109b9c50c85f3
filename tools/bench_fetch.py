#!/usr/bin/env python3
"""Sustained fetch throughput against the emulator vs the configured rate.

Fetches image-less filler records (so the figure measures pacing, not JPEG decoding) with
the real `fetch` stage and prints requests/s as a share of --rate. Goal: >= 90% of 50 req/s
with 8 workers.

example:
  python tools/bench_fetch.py --rate 50 --workers 8 --objects 400
"""
import argparse
import sys
import tempfile
import time

from metfaces_build.app.cli import main
from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator


def bench(rate: float, workers: int, objects: int) -> float:
    with start_emulator(synthetic=objects) as h, tempfile.TemporaryDirectory() as work:
        ids = ",".join(str(SYNTHETIC_BASE + i) for i in range(1, objects + 1))
        before = h.stats()["requests"]
        t0 = time.monotonic()
        rc = main(["fetch", "--work", work, "--api", h.api_root, "--ids", ids, "--rate", str(rate),
                   "--workers", str(workers), "--quiet"])
        took = time.monotonic() - t0
        n = h.stats()["requests"] - before
    if rc != 0:
        sys.exit(f"fetch failed (exit {rc})")
    return n / took


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--objects", type=int, default=400)
    a = ap.parse_args()
    got = bench(a.rate, a.workers, a.objects)
    print(f"bench_fetch: {got:.1f} req/s sustained at --rate {a.rate:g} with {a.workers} workers "
          f"= {100 * got / a.rate:.0f}% of the configured rate ({a.objects} objects)")
