"""Where a stage's memory goes: the allocation sites alive when a chosen function is called.

    python tools/profile_memory.py --at metfaces_build.stages.filter:write_outputs -- \\
        filter --work /tmp/scale/w20000 --no-crop-tests --min-size 64 --workers 1 --quiet
    python tools/profile_memory.py --at metfaces_build.stages.report:report -- report ...

Runs `metfaces-build ARGS` in this process under tracemalloc and, when the function
`--at` (module:function, looked up at call time) is first called, takes a snapshot: the
top `--top` source lines by memory alive then, with their size per face (`--faces`, for
a reading in bytes a face), and the peak traced so far. Without --at, the snapshot is
taken when the command returns. tracemalloc slows Python down 2-4x; the sizes are exact.
"""
from __future__ import annotations

import argparse
import functools
import os
import importlib
import sys
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def show(snapshot, top: int, faces: int, label: str) -> None:
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    cur, peak = tracemalloc.get_traced_memory()
    per = f", {total / faces:,.0f} B a face" if faces else ""
    print(f"{label}: {total / 2**20:,.1f} MB alive{per}; peak traced {peak / 2**20:,.1f} MB")
    for s in stats[:top]:
        fr = s.traceback[0]
        where = f"{Path(fr.filename).name}:{fr.lineno}"
        per = f" {s.size / faces:8,.0f} B/face" if faces else ""
        print(f"  {s.size / 2**20:9,.1f} MB{per} {s.count:>10,} blocks  {where}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--at", default=None, help="module:function to snapshot at (first call)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--faces", type=int, default=0, help="faces in the work directory (B/face)")
    ap.add_argument("--stop", action="store_true", help="end the command once the snapshot is shown")
    ap.add_argument("argv", nargs=argparse.REMAINDER, help="-- then metfaces-build's arguments")
    args = ap.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    taken = []
    if args.at:
        mod_name, fn_name = args.at.split(":")
        mod = importlib.import_module(mod_name)
        original = getattr(mod, fn_name)

        @functools.wraps(original)
        def hooked(*a, **k):
            if not taken:
                taken.append(1)
                show(tracemalloc.take_snapshot(), args.top, args.faces, f"at {args.at}")
                if args.stop:
                    sys.stdout.flush()
                    os._exit(0)  # no cleanup: the snapshot is what was asked for
            return original(*a, **k)
        setattr(mod, fn_name, hooked)
    from metfaces_build.app.cli import main as cli
    tracemalloc.start(1)
    rc = cli(argv)
    if not taken:
        show(tracemalloc.take_snapshot(), args.top, args.faces, "at the end")
    return rc


if __name__ == "__main__":
    sys.exit(main())
