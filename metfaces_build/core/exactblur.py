"""Step 7 of the MetFaces aligner (pad, blur, fade to median), bit-identical and faster.

The reference pads the image with reflections, blurs the *whole* padded float32 image with
scipy's `gaussian_filter(img, [blur, blur, 0])`, blends the blur in with weight
`clip(mask*3+1, 0, 1)`, fades the pad towards the per-channel median and rounds to uint8.
Two facts make this cheaper without changing a single output bit:

1. The blend weight is exactly 0 more than 4/3 of a pad width inside the image, so only a
   band along the edges changes (`band_regions`); a 1-D Gaussian output depends only on
   inputs within `radius = int(4 * sigma + 0.5)`, so filtering each band region grown by
   the radius gives the bits of filtering everything (`gaussian_planar`).
2. Each pass's float32 outputs are scipy's bits from a float64 FFT correlation, certified
   against float32's rounding boundaries, with the few uncertain values summed scipy's
   way (core/exactgauss.py).
"""
from __future__ import annotations

import numpy as np

from .exactgauss import filter_lines, kernel_taps
from .jit import compiled


def pad_and_blur(rgb: np.ndarray, pad, qsize) -> np.ndarray:
    """ALIGN.md step 7 on an HxWx3 uint8 array; returns the padded uint8 image.

    Only the band whose pixels change is ever in float32: the interior stays the padded
    uint8 image (both blend weights are 0 there, and rint of an integer is itself), and the
    median is found exactly from the interior's histogram plus the band's values."""
    left, top, right, bottom = pad
    out = np.pad(np.asarray(rgb, dtype=np.uint8), ((top, bottom), (left, right), (0, 0)),
                 "reflect")
    h, w, _ = out.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    # the reference's mask is max(mx(x), my(y)); a monotone clip commutes with that max,
    # so weights are computed per row and per column, never as an h x w array
    mx = 1.0 - np.minimum(np.float32(x) / left, np.float32(w - 1 - x) / right)  # (1, w, 1)
    my = 1.0 - np.minimum(np.float32(y) / top, np.float32(h - 1 - y) / bottom)  # (h, 1, 1)
    wx = np.clip(mx * 3.0 + 1.0, 0.0, 1.0)
    wy = np.clip(my * 3.0 + 1.0, 0.0, 1.0)
    blur = qsize * 0.02
    radius = int(4.0 * float(blur) + 0.5)  # scipy's reach: truncate=4.0 sigmas

    rows_on, cols_on = wy[:, 0, 0] > 0, wx[0, :, 0] > 0
    band = band_regions(rows_on, cols_on)
    kx = np.clip(mx, 0.0, 1.0)
    ky = np.clip(my, 0.0, 1.0)
    fused = _blend_kernels()
    values = []  # the blended band, planar (y, channel, x), as the passes leave rows
    band_hist = np.zeros((3, 256), np.int64) if fused is not None else None
    for r0, r1, c0, c1 in band:
        # each chunk of blurred rows is blended as it leaves the second pass, while in
        # cache; `out` is only read until the fade, so every blur sees the padded image
        sub = np.empty((r1 - r0, 3, c1 - c0), np.float32)
        gaussian_planar(out, (r0, r1, c0, c1), blur, radius,
                        sink=_Blend(out[r0:r1, c0:c1], wx[0, c0:c1, 0], wy[r0:r1, 0, 0],
                                    sub, band_hist, fused))
        values.append(sub)
    med = band_median(out, interior_region(rows_on, cols_on), values, band_hist)

    fade = band_regions(ky[:, 0, 0] > 0, kx[0, :, 0] > 0)  # where the median weight is > 0
    for (r0, r1, c0, c1), sub in zip(band, values):
        if fused is not None:  # weight 0 outside the fade leaves a value as it is
            fused[1](sub, kx[0, c0:c1, 0], ky[r0:r1, 0, 0], med, out[r0:r1, c0:c1])
            continue
        for f0, f1, e0, e1 in fade:  # the fade regions lie inside the band
            a0, a1, b0, b1 = max(r0, f0), min(r1, f1), max(c0, e0), min(c1, e1)
            if a0 < a1 and b0 < b1:
                part = sub[a0 - r0:a1 - r0, :, b0 - c0:b1 - c0]
                part += (med[:, None] - part) * np.maximum(kx[0, b0:b1, 0], ky[a0:a1])
        out[r0:r1, c0:c1] = np.uint8(np.clip(np.rint(sub), 0, 255)).transpose(0, 2, 1)
    return out


class _Blend:
    """Sink for blurred rows [a0, a1) of a band region (planar): the reference's first
    blend, v = x + (g - x) * max(wx, wy), into `sub`, counted in `hist` (numba), or
    numpy's same operations."""

    def __init__(self, src, wx, wy, sub, hist, fused):
        self.src, self.wx, self.wy, self.sub, self.hist, self.fused = src, wx, wy, sub, hist, fused

    def __call__(self, a0: int, a1: int, g: np.ndarray) -> None:
        if self.fused is not None:  # the same float32 operations, one pass, binned
            if not self.fused[0](self.src[a0:a1], g, self.wx, self.wy[a0:a1],
                                 self.sub[a0:a1], self.hist):
                raise ArithmeticError("negative value in the blended band")  # cannot happen
            return
        part = np.float32(self.src[a0:a1]).transpose(0, 2, 1)
        part += (g - part) * np.maximum(self.wx, self.wy[a0:a1, None, None])
        self.sub[a0:a1] = part


def band_median(img: np.ndarray, interior, band_values: list,
                band_hist: np.ndarray = None) -> np.ndarray:
    """np.median(blended, axis=(0, 1)) of the reference's float32 image, exactly, where the
    blended image is `img` (uint8) inside `interior` (r0, r1, c0, c1, or None) and
    `band_values` (planar float32 arrays, (y, channel, x)) everywhere else; `band_hist`
    (channels x 256), when given, already counts the band's values by integer part.

    The interior is counted with a 256-bin histogram; the band's values are binned by their
    integer part; the one or two middle ranks then fall in a bin whose few values are sorted.
    np.median itself averages the two middle values, so it is applied to exactly those."""
    h, w, channels = img.shape
    n = h * w
    ks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    med = np.empty(channels, dtype=np.float32)
    inner = np.zeros((channels, 256), dtype=np.int64)
    if interior is not None:
        r0, r1, c0, c1 = interior
        counter = compiled(_count_uint8)
        if counter is not None:
            counter(img[r0:r1, c0:c1], inner)
        else:
            for c in range(channels):
                inner[c] = np.bincount(img[r0:r1, c0:c1, c].ravel(), minlength=256)
    for c in range(channels):
        hist = inner[c]
        # the band's values by integer part (>= 0; anything above 255 joins the last bin)
        if band_hist is not None:
            bh = band_hist[c]
        else:
            bh = np.zeros(256, dtype=np.int64)
            for v in band_values:
                if not _bin_values(v, c, -1, bh, np.empty(0, np.float32)):
                    raise ArithmeticError("negative value in the blended band")  # cannot happen
        total = np.cumsum(hist + bh)
        picked = []
        for k in ks:
            j = int(np.searchsorted(total, k, side="right"))
            rank = k - (int(total[j - 1]) if j else 0)
            if rank < hist[j]:
                picked.append(np.float32(j))  # an interior value, exactly j
            else:  # among the band's values in [j, j + 1): gather them and select
                inside = np.empty(int(bh[j]), np.float32)
                filled = np.zeros(1, dtype=np.int64)
                for v in band_values:
                    _bin_values(v, c, j, filled, inside)
                picked.append(np.partition(inside, rank - hist[j])[rank - hist[j]])
        med[c] = np.median(np.array(picked, dtype=np.float32))
    return med


def _bin_values(v: np.ndarray, c: int, j: int, counts: np.ndarray, out: np.ndarray) -> bool:
    """Channel c of v by integer part (values above 255 in bin 255): with j < 0 adds the
    bin counts to `counts`, else appends bin j's values to `out` at counts[0]. False if a
    value is negative."""
    kernel = _median_kernel()
    if kernel is not None:
        return kernel(v, c, j, counts, out)
    vals = v[:, c].ravel()
    if vals.size and vals.min() < 0:
        return False
    bins = np.minimum(vals.astype(np.int32), 255)
    if j < 0:
        counts += np.bincount(bins, minlength=256)
    else:
        sel = vals[bins == j]
        out[counts[0]:counts[0] + sel.size] = sel
        counts[0] += sel.size
    return True


def _bin_kernel(v, c, j, counts, out):  # pragma: no cover - compiled by numba
    h, w = v.shape[0], v.shape[2]
    for i in range(h):
        for x in range(w):
            val = v[i, c, x]
            if val < 0:
                return False
            b = 255 if val >= 255 else int(val)
            if j < 0:
                counts[b] += 1
            elif b == j:
                out[counts[0]] = val
                counts[0] += 1
    return True


def _count_uint8(img, hist):  # pragma: no cover - compiled by numba
    """hist[c, v] += how many pixels of img (y, x, c uint8) have value v in channel c."""
    h, w, channels = img.shape
    for i in range(h):
        for j in range(w):
            for c in range(channels):
                hist[c, img[i, j, c]] += 1


def _median_kernel():
    """The compiled binning kernel, or None without numba."""
    return compiled(_bin_kernel)


def interior_region(rows_on: np.ndarray, cols_on: np.ndarray):
    """The (r0, r1, c0, c1) rectangle that `band_regions` leaves uncovered, or None."""
    h, w = rows_on.size, cols_on.size
    ty, by = _prefix(rows_on), h - _prefix(rows_on[::-1])
    lx, rx = _prefix(cols_on), w - _prefix(cols_on[::-1])
    if ty >= by or lx >= rx:
        return None
    return (ty, by, lx, rx)


def band_regions(rows_on: np.ndarray, cols_on: np.ndarray) -> list:
    """Disjoint (r0, r1, c0, c1) rectangles covering {rows_on[r] or cols_on[c]}, where the
    on-sets are runs at the two ends (top/bottom strips full width, then left/right)."""
    h, w = rows_on.size, cols_on.size
    ty, by = _prefix(rows_on), h - _prefix(rows_on[::-1])
    lx, rx = _prefix(cols_on), w - _prefix(cols_on[::-1])
    if ty >= by or lx >= rx:
        regions = [(0, h, 0, w)]
    else:
        regions = [(0, ty, 0, w), (by, h, 0, w), (ty, by, 0, lx), (ty, by, rx, w)]
    return [r for r in regions if r[1] > r[0] and r[3] > r[2]]


def _prefix(on: np.ndarray) -> int:
    off = np.flatnonzero(~on)
    return int(off[0]) if off.size else int(on.size)


def gaussian_planar(img: np.ndarray, region, blur, radius: int, sink=None):
    """`gaussian_filter(float32(img), [blur, blur, 0])[region]`, bit for bit (img float32
    or uint8, H x W x channels), as a planar (y, channel, x) array, doing only the work
    the region needs: the rows pass (axis 0, scipy's first) for the region's rows over its columns
    grown by the radius, then the columns pass for the region alone (core/exactgauss.py
    does each pass). With `sink`, rows are handed to sink(a0, a1, rows) as they are made
    instead (and None is returned)."""
    r0, r1, c0, c1 = region
    h, w, _ = img.shape
    f0, f1 = max(c0 - radius, 0), min(c1 + radius, w)
    if radius >= min(h, w):  # reflections of reflections: scipy itself
        from scipy.ndimage import gaussian_filter1d  # deferred: scipy costs 0.4 s to import
        e0, e1 = max(r0 - radius, 0), min(r1 + radius, h)
        g = gaussian_filter1d(np.float32(img[e0:e1, f0:f1]), blur, axis=0)[r0 - e0:r1 - e0]
        g = gaussian_filter1d(g, blur, axis=1)[:, c0 - f0:c1 - f0].transpose(0, 2, 1)
        if sink is None:
            return g
        sink(0, r1 - r0, g)
        return None
    w0, taps = kernel_taps(blur, radius)
    # rows pass: a line per (column, channel), down the rows, extended by reflection
    rows = _reflect(np.arange(r0 - radius, r1 + radius), h)
    g = filter_lines(img[:, f0:f1].transpose(1, 2, 0), rows, w0, taps, transposed=True)
    # columns pass: a line per (row, channel), along the columns (g is (y, c, x))
    cols = _reflect(np.arange(c0 - radius, c1 + radius), w) - f0
    return filter_lines(g, cols, w0, taps, sink=sink)  # (y, c, x)


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """scipy's 'reflect' boundary (d c b a | a b c d), for indices within n of the ends."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def _blend_kernels():
    """(blend, fade-and-round) numba kernels, or None without numba."""
    blend = compiled(_blend_band)
    return None if blend is None else (blend, compiled(_fade_and_round))


def _blend_band(src, g, wx, wy, v, hist):  # pragma: no cover - compiled by numba
    """v = x + (g - x) * max(wx, wy), x = float32(src): the reference's first blend,
    operation for operation (in float64 when the weights are, stored as float32), planar
    (y, channel, x) like g; each value is also counted in hist[channel, integer part]
    (above 255 in the last bin). False if a value is negative (cannot happen)."""
    h, channels, w = g.shape
    for i in range(h):
        yi = wy[i]
        for c in range(channels):
            row = v[i, c]
            grow = g[i, c]
            for j in range(w):
                wgt = wx[j] if wx[j] > yi else yi
                x = np.float32(src[i, j, c])
                row[j] = x + (grow[j] - x) * wgt
            counts = hist[c]
            for j in range(w):
                val = row[j]
                if val < 0:
                    return False
                counts[255 if val >= 255 else int(val)] += 1
    return True


def _fade_and_round(v, kx, ky, med, dst):  # pragma: no cover - compiled by numba
    """dst = uint8(clip(rint(v + (med - v) * max(kx, ky)), 0, 255)), as numpy computes it
    (v planar, dst the padded image's (y, x, channel))."""
    h, channels, w = v.shape
    for i in range(h):
        yi = ky[i]
        for c in range(channels):
            m = med[c]
            row = v[i, c]
            for j in range(w):
                k = kx[j] if kx[j] > yi else yi
                u = row[j]
                # rounded to float32 before rint, as numpy's in-place += stores it (the
                # weights are float64 when the pads are numpy integers)
                r = np.rint(np.float32(u + (m - u) * k))
                dst[i, j, c] = np.uint8(0.0 if r < 0 else (255.0 if r > 255 else r))


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel of step 7 in this process, so
    forked workers share them."""
    pad_and_blur(np.zeros((24, 24, 3), np.uint8), (8, 8, 8, 8), np.float32(30.0))
    filter_lines(np.ones((2, 3, 12), np.float32), None, 0.5, np.full(2, 0.125), use_fft=True)
