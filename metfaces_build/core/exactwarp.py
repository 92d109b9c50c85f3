"""Step 8 of the MetFaces aligner, the QUAD warp and the Lanczos downscale after it,
bit-identical to Pillow's and much faster.

The reference calls `img.transform((T*S, T*S), QUAD, quad, BILINEAR)`, fixed arithmetic
reproduced here term for term: the 8 coefficients of the bilinear quad map computed in
Python exactly as Pillow's `Image.transform` computes them (in the dtype of the quad), each
output pixel centre (x + 0.5, y + 0.5) mapped in float64 in Pillow's order of operations,
sampled bilinearly (`a + (b - a) * d` along x on two rows, then along y, edges clamped,
truncated to uint8), 0 outside the source. Pillow spends its time in two indirect calls
per pixel. Here, per output row: the map, floors, clamps and weights for the whole row in
one branch-free loop (it vectorises); then the 4 source pixels of each output pixel are
fetched as 32-bit words from an RGBX copy of the source (outside the source: a zero pixel
past the end, so no test per pixel); then the interpolation of all 3 channels, again
vectorised. Only the fetch is scalar.

`warp_and_downscale` then fuses the warp with Pillow's LANCZOS resize to T
(core/exactresize.py): the warp writes ROWS rows at a time straight into the column-major
block the horizontal pass reads, and output rows are filtered vertically as soon as their
rows exist, so the T*S x T*S x 3 warped image (50 MB) is never stored. On a ~2000 px
source, 4096 -> 1024: warp ~0.15-0.18 s against Pillow's ~0.5-0.7 s, warp + downscale
~0.2 s against ~0.7-0.95 s (tools/bench_step8.py, single thread). Without numba, Pillow
runs.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from . import exactresize
from .jit import compiled


def quad_warp(rgb: np.ndarray, quad_data, transform_size: int) -> np.ndarray:
    """Pillow's `fromarray(rgb).transform((t, t), QUAD, quad_data, BILINEAR)` as a
    t x t x 3 uint8 array."""
    t = transform_size
    kernels = _kernels()
    if kernels is None:
        return _pillow_warp(rgb, quad_data, t)
    to_rgbx, warp_rows = kernels
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    out = np.empty((t, t, 3), np.uint8)
    warp_rows(to_rgbx(rgb), rgb.shape[1], rgb.shape[0], _coefficients(quad_data, t), 0, t, t,
              out.reshape(-1), 3, 3 * t)
    return out


def warp_and_downscale(rgb: np.ndarray, quad_data, transform_size: int, size: int) -> np.ndarray:
    """`fromarray(rgb).transform((t, t), QUAD, quad_data, BILINEAR).resize((size, size),
    LANCZOS)` as a size x size x 3 uint8 array (step 8 with supersampling)."""
    t = transform_size
    kernels = _kernels()
    if kernels is None or exactresize.backend() != "numba":
        img = Image.fromarray(_pillow_warp(rgb, quad_data, t), "RGB")
        return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS))
    if size >= t or exactresize.vertical_first(t, t, size, size):  # never for a downscale
        return exactresize.resize_lanczos(quad_warp(rgb, quad_data, t), (size, size))
    to_rgbx, warp_rows = kernels
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    px, w, h = to_rgbx(rgb), rgb.shape[1], rgb.shape[0]
    coefficients = _coefficients(quad_data, t)

    def warp_block(y0, n, block):  # warped rows straight into the horizontal pass's layout
        warp_rows(px, w, h, coefficients, y0, n, t, block, 3 * n, 3)

    return exactresize.resize_generated(warp_block, t, t, (size, size))


def _pillow_warp(rgb, quad_data, t):
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    return np.asarray(img.transform((t, t), Image.Transform.QUAD, quad_data,
                                    Image.Resampling.BILINEAR))


def _coefficients(quad_data, t):
    return np.array(quad_coefficients(quad_data, t, t), dtype=np.float64)


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


def _kernels():
    """(to_rgbx, warp_rows) compiled, or None without numba."""
    kernels = compiled(_to_rgbx), compiled(_warp_rows)
    return None if None in kernels else kernels


def backend() -> str:
    """Which warp implementation runs: 'numba' or 'pillow'."""
    return "numba" if _kernels() is not None else "pillow"


def _to_rgbx(src):  # pragma: no cover - compiled by numba
    """The HxWx3 image as h*w + 1 little-endian RGBX words; the last one is a zero pixel
    that every output pixel outside the source reads."""
    h, w = src.shape[0], src.shape[1]
    flat = src.reshape(h * w * 3)
    px = np.empty(h * w + 1, np.uint32)
    for i in range(h * w):
        px[i] = (np.uint32(flat[3 * i]) | (np.uint32(flat[3 * i + 1]) << 8)
                 | (np.uint32(flat[3 * i + 2]) << 16))
    px[h * w] = 0
    return px


def _warp_rows(px, w, h, a, y0, n, t, out, xstep, ystep):  # pragma: no cover - numba
    """Output rows y0 .. y0 + n of the t-wide QUAD/BILINEAR warp of the w x h RGBX image
    `px`: channel c of pixel (x, y0 + r) goes to out[r * ystep + x * xstep + c]."""
    zero = h * w  # index of the zero pixel
    fw = float(w)
    fh = float(h)
    at = np.empty(t, np.int64)  # top-left source pixel, or the zero pixel
    right = np.empty(t, np.int64)  # offset to the right neighbour (0 at the right edge)
    down = np.empty(t, np.int64)  # offset to the row below (0 at the bottom edge)
    dxs = np.empty(t)
    dys = np.empty(t)
    p00 = np.empty(t, np.int32)
    p01 = np.empty(t, np.int32)
    p10 = np.empty(t, np.int32)
    p11 = np.empty(t, np.int32)
    rgbx = np.empty(t, np.int32)
    for r in range(n):
        yin = (y0 + r) + 0.5
        for x in range(t):  # the map, branch-free, so it vectorises
            xin = x + 0.5
            xs = a[0] + a[1] * xin + a[2] * yin + a[3] * xin * yin
            ys = a[4] + a[5] * xin + a[6] * yin + a[7] * xin * yin
            inside = (xs >= 0.0) & (xs < fw) & (ys >= 0.0) & (ys < fh)
            # inside, xs - 0.5 >= -0.5: floor is -1 or Pillow's (int) truncation; the
            # clamps only tame points outside, whose pixel is 0 anyway
            xi = min(max(xs - 0.5, -1.0), fw)
            yi = min(max(ys - 0.5, -1.0), fh)
            fx = math.floor(xi)
            fy = math.floor(yi)
            dxs[x] = xi - fx
            dys[x] = yi - fy
            ix = int(fx)
            iy = int(fy)
            c0 = max(ix, 0)
            r0 = max(iy, 0)
            at[x] = r0 * w + c0 if inside else zero
            right[x] = min(ix + 1, w - 1) - c0 if inside else 0
            down[x] = (min(iy + 1, h - 1) - r0) * w if inside else 0
        for x in range(t):  # the fetch (Pillow: v2 = v1 on the last row; same here)
            p = at[x]
            q = p + down[x]
            p00[x] = px[p]
            p01[x] = px[p + right[x]]
            p10[x] = px[q]
            p11[x] = px[q + right[x]]
        for x in range(t):  # a + (b - a) * dx on both rows, then along y; vectorises
            dx = dxs[x]
            dy = dys[x]
            word = 0
            for c in range(3):
                s = 8 * c
                u = float((p00[x] >> s) & 255)
                v1 = u + (float((p01[x] >> s) & 255) - u) * dx
                u = float((p10[x] >> s) & 255)
                v2 = u + (float((p11[x] >> s) & 255) - u) * dx
                word |= np.int32(v1 + (v2 - v1) * dy) << s
            rgbx[x] = word
        o = r * ystep
        for x in range(t):
            v = rgbx[x]
            out[o + x * xstep] = v & 255
            out[o + x * xstep + 1] = (v >> 8) & 255
            out[o + x * xstep + 2] = (v >> 16) & 255
