"""Step 8 of the MetFaces aligner, the QUAD warp, bit-identical to Pillow's and faster.

The reference calls `img.transform((T*S, T*S), QUAD, quad, BILINEAR)`, fixed arithmetic
reproduced here term for term: the 8 coefficients of the bilinear quad map computed in
Python exactly as Pillow's `Image.transform` computes them (in the dtype of the quad), each
output pixel centre (x + 0.5, y + 0.5) mapped in float64 in Pillow's order of operations,
sampled bilinearly (`a + (b - a) * d` along x on two rows, then along y, edges clamped,
truncated to uint8), 0 outside the source. Pillow spends its time in two indirect calls per
pixel; one numba loop (the map computed for a whole row first, so it vectorises) takes
about 60% of its time. The Lanczos downscale that follows stays Pillow's. Without numba,
Pillow runs.
"""
from __future__ import annotations

import math

import numpy as np

from .jit import compiled



def quad_warp(rgb: np.ndarray, quad_data, transform_size: int) -> np.ndarray:
    """Pillow's `fromarray(rgb).transform((t, t), QUAD, quad_data, BILINEAR)` as a
    t x t x 3 uint8 array."""
    t = transform_size
    kernel = _kernel()
    if kernel is None:
        from PIL import Image
        img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        return np.asarray(img.transform((t, t), Image.Transform.QUAD, quad_data,
                                        Image.Resampling.BILINEAR))
    out = np.empty((t, t, 3), np.uint8)
    kernel(np.ascontiguousarray(rgb, dtype=np.uint8),
           np.array(quad_coefficients(quad_data, t, t), dtype=np.float64), out)
    return out


def quad_coefficients(data, w: int, h: int) -> tuple:
    """The 8 quad-map coefficients as Pillow's Image.transform computes them (in the
    dtype of `data`: float32 quads give float32 arithmetic), as Python floats."""
    nw, sw, se, ne = data[:2], data[2:4], data[4:6], data[6:8]
    x0, y0 = nw
    As = 1.0 / w  # noqa: N806 (Pillow's names)
    At = 1.0 / h  # noqa: N806
    return tuple(float(v) for v in (
        x0, (ne[0] - x0) * As, (sw[0] - x0) * At, (se[0] - sw[0] - ne[0] + x0) * As * At,
        y0, (ne[1] - y0) * As, (sw[1] - y0) * At, (se[1] - sw[1] - ne[1] + y0) * As * At))


def _kernel():
    """The compiled QUAD warp, or None without numba."""
    return compiled(_warp)


def backend() -> str:
    return "numba" if _kernel() is not None else "pillow"


def _warp(src, a, out):  # pragma: no cover - compiled by numba
    """out[y, x] = Pillow's QUAD/BILINEAR sample for output pixel (x, y)."""
    h, w = src.shape[0], src.shape[1]
    t_h, t_w = out.shape[0], out.shape[1]
    flat = src.reshape(h * w * 3)
    stride = w * 3
    xs = np.empty(t_w)
    ys = np.empty(t_w)
    for y in range(t_h):
        yin0 = y + 0.5
        for x in range(t_w):  # the map first, branch-free, so it vectorises
            xin0 = x + 0.5
            xs[x] = a[0] + a[1] * xin0 + a[2] * yin0 + a[3] * xin0 * yin0
            ys[x] = a[4] + a[5] * xin0 + a[6] * yin0 + a[7] * xin0 * yin0
        o = out[y].reshape(t_w * 3)
        for x in range(t_w):
            xi = xs[x]
            yi = ys[x]
            if xi < 0.0 or xi >= w or yi < 0.0 or yi >= h:
                o[3 * x] = 0
                o[3 * x + 1] = 0
                o[3 * x + 2] = 0
                continue
            xi -= 0.5  # now >= -0.5: floor is -1 or Pillow's (int) truncation
            yi -= 0.5
            fx = int(math.floor(xi))
            fy = int(math.floor(yi))
            dx = xi - fx
            dy = yi - fy
            p0 = (fy if fy >= 0 else 0) * stride
            c0 = (fx if fx >= 0 else 0) * 3
            c1 = (fx + 1 if fx + 1 < w else w - 1) * 3
            if fy + 1 < h:  # the second row exists (fy + 1 >= 0 always)
                q0 = (fy + 1) * stride
                for b in range(3):
                    u = np.int64(flat[p0 + c0 + b])
                    v1 = u + (np.int64(flat[p0 + c1 + b]) - u) * dx
                    u = np.int64(flat[q0 + c0 + b])
                    v2 = u + (np.int64(flat[q0 + c1 + b]) - u) * dx
                    o[3 * x + b] = np.uint8(int(v1 + (v2 - v1) * dy))
            else:  # Pillow: v2 = v1
                for b in range(3):
                    u = np.int64(flat[p0 + c0 + b])
                    v1 = u + (np.int64(flat[p0 + c1 + b]) - u) * dx
                    o[3 * x + b] = np.uint8(int(v1 + (v1 - v1) * dy))
