#!/usr/bin/env python3
"""Step 8 of the aligner (QUAD warp to 4096, Lanczos down to 1024): Pillow's against ours.

    python tools/bench_step8.py                 # 2000 x 2200 source, 5 interleaved rounds
    python tools/bench_step8.py --source 1400 --repeat 9 --angle 0.4

Makes a smooth random RGB source (--source pixels wide, 10% taller), a rotated quad of
~90% of its width around the centre (as align_face gives for a large face after shrinking),
then times, in this one process and interleaved round by round so a busy machine slows
all alike: Pillow's `transform(QUAD, BILINEAR)` + `resize(LANCZOS)`; ours as two calls
(`quad_warp` + `resize_lanczos`); ours fused (`warp_and_downscale`, what align_face runs).
Prints the best seconds of each part and the ratios to Pillow, and checks that all three
give the same pixels. Numba compiles (or loads its cache) before the first round.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_case(width: int, angle: float, seed: int = 0):
    """A smooth random source (bilinear upsampling of noise) and a rotated quad in it."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    height = int(width * 1.1)
    noise = (rng.rand(height // 8 + 1, width // 8 + 1, 3) * 255).astype(np.uint8)
    src = np.asarray(Image.fromarray(noise).resize((width, height), Image.Resampling.BILINEAR))
    centre = np.array([width / 2, height / 2])
    x = np.array([np.cos(angle), np.sin(angle)]) * width * 0.45
    y = np.array([-x[1], x[0]])
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return np.ascontiguousarray(src), (quad.astype(np.float32) + 0.5).flatten()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=int, default=2000, help="source width in pixels")
    p.add_argument("--angle", type=float, default=0.2, help="rotation of the quad (radians)")
    p.add_argument("--transform-size", type=int, default=4096)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds (best is kept)")
    a = p.parse_args(argv)
    from PIL import Image

    from metfaces_build.core.exactresize import backend, resize_lanczos
    from metfaces_build.core.exactwarp import quad_warp, warp_and_downscale

    t, size = a.transform_size, a.size
    src, data = make_case(a.source, a.angle)
    img = Image.fromarray(src)
    resize_lanczos(quad_warp(src[:8, :8], data / 100, 16), (4, 4))  # compile / load caches
    warp_and_downscale(src[:8, :8], data / 100, 16, 4)

    best = {k: float("inf") for k in ("pillow warp", "pillow resize", "our warp",
                                       "our resize", "our fused")}
    outputs = {}

    def timed(key, fn):
        t0 = time.perf_counter()
        result = fn()
        best[key] = min(best[key], time.perf_counter() - t0)
        return result

    for _ in range(a.repeat):
        warped = timed("pillow warp", lambda: img.transform(
            (t, t), Image.Transform.QUAD, data, Image.Resampling.BILINEAR))
        outputs["pillow"] = np.asarray(timed("pillow resize", lambda w=warped: w.resize(
            (size, size), Image.Resampling.LANCZOS)))
        ours = timed("our warp", lambda: quad_warp(src, data, t))
        outputs["ours, two calls"] = timed("our resize",
                                           lambda o=ours: resize_lanczos(o, (size, size)))
        outputs["ours, fused"] = timed("our fused", lambda: warp_and_downscale(src, data, t, size))
        del warped, ours

    pillow = best["pillow warp"] + best["pillow resize"]
    two = best["our warp"] + best["our resize"]
    print(f"source {src.shape[1]}x{src.shape[0]}, warp to {t}, Lanczos to {size}; "
          f"backend {backend()}; best of {a.repeat} interleaved rounds")
    print(f"{'':<22}{'warp s':>8}{'resize s':>10}{'total s':>9}{'vs Pillow':>11}")
    print(f"{'Pillow':<22}{best['pillow warp']:>8.3f}{best['pillow resize']:>10.3f}"
          f"{pillow:>9.3f}{1.0:>10.2f}x")
    print(f"{'ours, two calls':<22}{best['our warp']:>8.3f}{best['our resize']:>10.3f}"
          f"{two:>9.3f}{pillow / two:>10.2f}x")
    print(f"{'ours, fused':<22}{'':>8}{'':>10}{best['our fused']:>9.3f}"
          f"{pillow / best['our fused']:>10.2f}x")
    same = all(np.array_equal(outputs["pillow"], v) for v in outputs.values())
    print(f"identical pixels: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
