#!/usr/bin/env python3
"""fetch with default flags against the emulator's protection mode, in real time.

Each case starts a fresh emulator with a hidden limit on API requests (met/protection.py:
more than RATE x WINDOW requests within WINDOW s blocks every API request with 403 HTML
for 25 s; images come from a second, unlimited server) and a fresh pace memory, then runs
`fetch --ids ...` of filler objects (one record + one small image each) with default
pacing flags and reports the blocks the emulator counted and the time as a ratio of the
sustainable time (record requests / RATE). The "second run" case fetches as many objects
again into the same work directory against the same limiter, starting from the pace the
first run learned. Targets (issue #20): <= 3 blocks and <= 1.4x for 2/s and 0.5/s,
<= 3 blocks and <= 2x for 10/s; second run: no block in its first minute and <= 1.15x.

These runs take minutes (300 objects at 2/s is 150 s at best): `--scale 0.5` halves the
object counts.

example:
  python tools/bench_pace.py                 # all four cases, ~15 min
  python tools/bench_pace.py --only 10 --scale 0.5
"""
import argparse
import os
import sys
import tempfile
import time

from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator
from metfaces_build.met.protection import Protection
from metfaces_build.stages.fetch import FetchOptions, fetch

# name: (hidden limit, objects, target ratio)
CASES = {
    "2": (Protection(2.0, 5.0, 25.0), 300, 1.4),
    "0.5": (Protection(0.5, 10.0, 25.0), 150, 1.4),
    "10": (Protection(10.0, 3.0, 25.0), 150, 2.0),
}


def one_run(h, work: str, first: int, n: int) -> dict:
    """Fetch filler objects first..first+n-1 with default pacing; what it cost."""
    before = len(h.stats()["protection_blocks"])
    ids = ",".join(str(SYNTHETIC_BASE + i) for i in range(first, first + n))
    t0 = time.monotonic()
    s = fetch(work, FetchOptions(ids=ids, api=h.api_root, allow_host=("127.0.0.1",), quiet=True))
    took = time.monotonic() - t0
    blocks = h.stats()["protection_blocks"][before:]
    ok = s.counts.get("ok", 0)
    pace = next(iter(v for k, v in s.pace.items() if k == h.api_root.split("/")[2]), {})
    return {"took": took, "ok": ok, "blocks": len(blocks), "block_times": blocks, "pace": pace,
            "summary": s.lines[-1] if s.lines else ""}


def run_case(name: str, scale: float, second: bool) -> list:
    prot, n, target = CASES[name]
    n = max(10, int(n * scale))
    sustainable = n / prot.rate
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["METFACES_CACHE_DIR"] = os.path.join(tmp, "cache")  # nothing learned yet
        work = os.path.join(tmp, "work")
        with start_emulator(synthetic=2 * n, protection=prot) as h:
            r = one_run(h, work, 1, n)
            rows.append((f"{prot.rate:g}/s, {n} objects", r, sustainable, target))
            if second:
                time.sleep(prot.window + 1)  # the first run's requests leave the window
                r2 = one_run(h, work, n + 1, n)
                rows.append((f"{prot.rate:g}/s, second run, {n} more", r2, sustainable, 1.15))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="2,0.5,10", help="cases to run (2, 0.5, 10); default all")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the object counts")
    ap.add_argument("--no-second", action="store_true", help="skip the second run (of the 2/s case)")
    a = ap.parse_args(argv)
    print(f"{'case':<32} {'ok':>4} {'blocks':>6} {'time':>7} {'sustainable':>11} {'ratio':>6} "
          f"{'target':>6}  pace learned")
    failed = 0
    for name in a.only.split(","):
        for label, r, sus, target in run_case(name.strip(), a.scale, name.strip() == "2" and not a.no_second):
            ratio = r["took"] / sus
            good = r["blocks"] <= (0 if "second" in label else 3) and ratio <= target
            failed += not good
            pace = r["pace"]
            print(f"{label:<32} {r['ok']:>4} {r['blocks']:>6} {r['took']:>6.0f}s {sus:>10.0f}s "
                  f"{ratio:>5.2f}x {target:>5.2f}x  {pace.get('rate')}/s (blocked at "
                  f"{pace.get('block_rate')}) {'' if good else ' MISSED'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
