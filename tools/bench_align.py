#!/usr/bin/env python3
"""Benchmark `metfaces-build align` against the literal reference, side by side.

usage: bench_align.py [--cases DIR] [--workers 2] [--modes default,norot,metfacesu]
                      [--repeat N] [--png-level N]

For each mode: the reference (tools/reference_align.py: serial, decodes per face, blurs the
whole padded image) and ours (`metfaces-build align --workers N`) run on the same cases as
whole processes, interleaved (reference, ours, reference, ours, ... for --repeat rounds,
so a busy machine slows both alike); both outputs are checked to be pixel-identical, and
the best seconds per face, the speed-up of the best runs and each round's speed-up are
printed. Without --cases, a case set is made with
tools/make_align_cases.py (the README quotes figures for the seed-1 cases of the design
docs' align_cases.py, passed with --cases).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
MODES = {"default": [], "norot": ["--no-rotation"],
         "metfacesu": ["--random-shift", "0.2", "--retry-crops", "--no-rotation"]}


def pixel_md5s(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            with Image.open(os.path.join(folder, name)) as im:
                out[name] = hashlib.md5(im.convert("RGB").tobytes()).hexdigest()
    return out


def timed(cmd):
    t = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    if rc not in (0, 1):  # 1: some faces rejected (MetFaces-U), recorded in the manifest
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}")
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", help="folder with metfaces.json and its source images")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modes", default="default,norot,metfacesu")
    p.add_argument("--repeat", type=int, default=1, help="interleaved rounds (default 1)")
    p.add_argument("--png-level", type=int, help="passed to ours (default: align's own)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-align-"))
    cases = Path(a.cases) if a.cases else tmp / "cases"
    if not a.cases:
        subprocess.run([sys.executable, str(HERE / "make_align_cases.py"), str(cases)], check=True)
    n_faces = len(json.loads((cases / "metfaces.json").read_text()))
    print(f"{n_faces} faces from {cases}; ours with --workers {a.workers}; {a.repeat} rounds")
    print(f"{'mode':<10} {'reference s/face':>17} {'ours s/face':>12} {'speed-up':>9}  identical"
          "  per round")
    png = [] if a.png_level is None else ["--png-level", str(a.png_level)]
    for mode in a.modes.split(","):
        flags = MODES[mode]
        common = ["--json", str(cases / "metfaces.json"), "--source-images", str(cases)]
        ref_out, our_out = tmp / f"ref-{mode}", tmp / f"ours-{mode}"
        t_ref, t_ours = [], []
        for _ in range(a.repeat):
            shutil.rmtree(ref_out, ignore_errors=True)
            shutil.rmtree(our_out, ignore_errors=True)
            t_ref.append(timed([sys.executable, str(HERE / "reference_align.py"), *common,
                                "--output-dir", str(ref_out), *flags]))
            t_ours.append(timed([sys.executable, "-m", "metfaces_build", "align", *common,
                                 "--output-dir", str(our_out), "--workers", str(a.workers),
                                 "--quiet", *flags, *png]))
        same = pixel_md5s(ref_out) == pixel_md5s(our_out)
        rounds = " ".join(f"{r / o:.2f}" for r, o in zip(t_ref, t_ours))
        print(f"{mode:<10} {min(t_ref) / n_faces:>17.2f} {min(t_ours) / n_faces:>12.2f} "
              f"{min(t_ref) / min(t_ours):>8.2f}x  {'yes' if same else 'NO':<9}  {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
