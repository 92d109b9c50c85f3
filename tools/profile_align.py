#!/usr/bin/env python3
"""Where the exact aligner's time goes, per face: CPU seconds of each step, one process.

usage: profile_align.py CASES [--png-level N] [--repeat N]

CASES is a folder with metfaces.json and its sources (e.g. the design docs'
`align_cases.py 1 CASES`). Every face is aligned in this process, warm (kernels compiled
first), and timed by step: decode (open + convert to RGB), steps 5-6 (shrink, crop), step 7
(pad and blur: the two Gaussian passes with the first blend applied to each chunk of
rows as it leaves them, then the median and the fade), step 8 (QUAD warp and
Lanczos downscale, fused), the PNG encode. With --repeat N the best of N runs per face is
kept. Figures are CPU time of one worker; `bench_align.py` measures whole runs.
"""
import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from metfaces_build.core import exactblur  # noqa: E402
from metfaces_build.core.records import FaceSpec  # noqa: E402
from metfaces_build.stages import align as stage  # noqa: E402

STEPS = ["decode", "blur+blend", "median+fade", "warp+downscale", "other", "png", "total"]


def _timed(owner, name, key, clock):
    real = getattr(owner, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            clock[key] = clock.get(key, 0.0) + time.perf_counter() - t
    setattr(owner, name, wrapper)


def profile_face(cases: Path, rec: dict, png_level: int, clock: dict) -> dict:
    clock.clear()
    t0 = time.perf_counter()
    with Image.open(cases / rec["source_path"]) as im:
        image = im.convert("RGB")
    t1 = time.perf_counter()
    crop = stage.align_face(image, FaceSpec.from_json(rec["face_spec"]), stage.AlignParams())
    t2 = time.perf_counter()
    crop.save(io.BytesIO(), "PNG", compress_level=png_level)
    t3 = time.perf_counter()
    gauss = clock.get("gaussian", 0.0)
    step7 = clock.get("step7", 0.0)
    step8 = clock.get("step8", 0.0)
    return {"decode": t1 - t0, "blur+blend": gauss, "median+fade": step7 - gauss,
            "warp+downscale": step8, "other": (t2 - t1) - step7 - step8, "png": t3 - t2,
            "total": t3 - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cases", type=Path)
    p.add_argument("--png-level", type=int, default=stage.PNG_LEVEL)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args(argv)
    records = json.loads((a.cases / "metfaces.json").read_text())
    stage.warm_up(stage.AlignParams())
    clock: dict = {}
    _timed(exactblur, "gaussian_planar", "gaussian", clock)
    _timed(stage, "pad_and_blur", "step7", clock)
    _timed(stage, "warp_and_downscale", "step8", clock)
    print(f"{'face':<10}" + "".join(f"{s:>19}" for s in STEPS))
    sums = dict.fromkeys(STEPS, 0.0)
    for rec in records:
        runs = [profile_face(a.cases, rec, a.png_level, clock) for _ in range(a.repeat)]
        best = min(runs, key=lambda r: r["total"])
        for s in STEPS:
            sums[s] += best[s]
        name = f"{rec['obj_id']}-{int(rec.get('face_idx', 0)):02d}"
        print(f"{name:<10}" + "".join(f"{best[s]:>19.2f}" for s in STEPS))
    print(f"{'sum':<10}" + "".join(f"{sums[s]:>19.2f}" for s in STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
