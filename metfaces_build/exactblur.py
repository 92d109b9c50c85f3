"""Step 7 of the MetFaces aligner (pad, blur, fade to median), bit-identical and fast.

The reference pads the image with reflections, blurs the *whole* padded float32 image with
scipy's `gaussian_filter(img, [blur, blur, 0])`, blends it in with weight
`clip(mask*3+1, 0, 1)`, fades the pad towards the per-channel median and rounds to uint8.
Three facts make this cheap without changing a single output bit:

1. The blend weight is exactly 0 more than 4/3 of a pad width inside the image, so only a
   band along the edges changes (`band_regions`), and a 1-D Gaussian output depends only on
   inputs within `radius = int(4 * sigma + 0.5)`: filtering a region grown by the radius
   gives the same bits as filtering everything (`gaussian_region`).
2. The warp reads only pixels inside the crop quad, so exact values are needed only there.
3. The median needs every pixel, but only its rank: an FFT blur (error < 1e-3, bounded by
   the float32 rounding it shares with scipy) ranks all pixels, and only the few whose
   approximate value lies within a tolerance of the approximate median are recomputed with
   scipy's exact arithmetic (`exact_at`), which pins the median exactly. When that would
   not save work, the plain exact path runs instead.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 0.01  # bound on |approximate - exact| step-3 values (actual error ~1e-4)
EXACT_SHARE = 0.6  # if the crop needs this share of the band anyway, filter it all exactly


def pad_and_blur(rgb: np.ndarray, pad, qsize, need=None) -> np.ndarray:
    """ALIGN.md step 7 on an HxWx3 uint8 array; returns the padded uint8 image.

    `need` = (x0, y0, x1, y1) in padded coordinates: the only pixels the caller will read
    (the warp's quad box). Pixels outside it may hold approximate values.
    """
    left, top, right, bottom = pad
    img = np.pad(np.float32(rgb), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    # the reference's mask is max(mx(x), my(y)); a monotone clip commutes with that max
    mx = 1.0 - np.minimum(np.float32(x) / left, np.float32(w - 1 - x) / right)  # (1, w, 1)
    my = 1.0 - np.minimum(np.float32(y) / top, np.float32(h - 1 - y) / bottom)  # (h, 1, 1)
    wx = np.clip(mx * 3.0 + 1.0, 0.0, 1.0)
    wy = np.clip(my * 3.0 + 1.0, 0.0, 1.0)
    blur = qsize * 0.02
    radius = int(4.0 * float(blur) + 0.5)  # scipy's reach: truncate=4.0 sigmas

    band = band_regions(wy[:, 0, 0] > 0, wx[0, :, 0] > 0)
    need_box = (0, h, 0, w) if need is None else (max(need[1], 0), min(need[3], h),
                                                  max(need[0], 0), min(need[2], w))
    exact = [r for r in (_intersect(b, need_box) for b in band) if r is not None]
    weight = lambda r: np.maximum(wx[:, r[2]:r[3]], wy[r[0]:r[1]])  # noqa: E731

    med = None
    if (_area(exact) < EXACT_SHARE * _area(band) and radius < min(h, w)):
        med = _blend_fast_median(img, band, exact, weight, blur, radius)
    if med is None:  # plain exact path: the whole band, exact median
        blurred = [gaussian_region(img, r, blur, radius) for r in band]
        for r, g in zip(band, blurred):
            sub = img[r[0]:r[1], r[2]:r[3]]
            sub += (g - sub) * weight(r)
        med = np.median(img, axis=(0, 1))

    kx = np.clip(mx, 0.0, 1.0)
    ky = np.clip(my, 0.0, 1.0)
    for r0, r1, c0, c1 in band_regions(ky[:, 0, 0] > 0, kx[0, :, 0] > 0):
        sub = img[r0:r1, c0:c1]
        sub += (med - sub) * np.maximum(kx[:, c0:c1], ky[r0:r1])
    return np.uint8(np.clip(np.rint(img), 0, 255))


def _blend_fast_median(img, band, exact, weight, blur, radius):
    """Blend the blur into `img` (exact inside `exact` regions, approximate elsewhere in the
    band) and return the exact per-channel median, or None to request the exact path."""
    original = {r: img[r[0]:r[1], r[2]:r[3]].copy() for r in band}
    exact_g = [gaussian_region(img, r, blur, radius) for r in exact]
    approx_g = [approx_gaussian_region(img, r, blur, radius) for r in band]
    for r, g in zip(band, approx_g):
        sub = img[r[0]:r[1], r[2]:r[3]]
        sub += (g - sub) * weight(r)
    for r, g in zip(exact, exact_g):
        sub = img[r[0]:r[1], r[2]:r[3]]
        src = _source_view(original, r)
        sub[...] = src + (g - src) * weight(r)  # same expression as the in-place reference
    uncertain = np.zeros(img.shape[:2], dtype=bool)
    for r0, r1, c0, c1 in band:
        uncertain[r0:r1, c0:c1] = True
    for r0, r1, c0, c1 in exact:
        uncertain[r0:r1, c0:c1] = False

    def exact_values(rows, cols, chans):
        return exact_blend_at(original, band, rows, cols, chans, blur, radius, weight)
    return exact_median(img, uncertain, exact_values)


def _source_view(original: dict, region):
    """The pre-blend pixels of `region`, which lies inside one band region."""
    for (r0, r1, c0, c1), arr in original.items():
        if r0 <= region[0] and region[1] <= r1 and c0 <= region[2] and region[3] <= c1:
            return arr[region[0] - r0:region[1] - r0, region[2] - c0:region[3] - c0]
    raise AssertionError("exact region outside the band")


# ---- regions -------------------------------------------------------------------------

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


def _intersect(a, b):
    r0, r1 = max(a[0], b[0]), min(a[1], b[1])
    c0, c1 = max(a[2], b[2]), min(a[3], b[3])
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _area(regions) -> int:
    return sum((r[1] - r[0]) * (r[3] - r[2]) for r in regions)


# ---- exact Gaussian (scipy's arithmetic) ---------------------------------------------

def gaussian_region(img: np.ndarray, region, blur, radius: int) -> np.ndarray:
    """`gaussian_filter(img, [blur, blur, 0])[region]`, bit for bit, doing only the work the
    region needs: scipy's rows pass (axis 0, first) on the region's columns grown by the
    radius, then the columns pass on the region's rows alone."""
    from scipy.ndimage import gaussian_filter1d
    r0, r1, c0, c1 = region
    h, w, _ = img.shape
    e0, e1 = max(r0 - radius, 0), min(r1 + radius, h)
    f0, f1 = max(c0 - radius, 0), min(c1 + radius, w)
    g = gaussian_filter1d(img[e0:e1, f0:f1], blur, axis=0)[r0 - e0:r1 - e0]
    g = gaussian_filter1d(g, blur, axis=1)
    return g[:, c0 - f0:c1 - f0]


def kernel_taps(blur, radius: int) -> tuple:
    """(w0, left taps w[-1..-radius]) exactly as scipy's symmetric correlate loop uses them,
    read off its impulse response (so no private scipy API is needed)."""
    from scipy.ndimage import gaussian_filter1d
    delta = np.zeros(2 * radius + 1)
    delta[radius] = 1.0
    resp = gaussian_filter1d(delta, blur, mode="constant")
    return resp[radius], resp[radius + 1:]  # resp[radius + m] == fw[-m]


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """scipy's 'reflect' boundary (d c b a | a b c d) for indices within one length."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def correlate_at(values, w0: float, taps: np.ndarray) -> np.ndarray:
    """scipy's symmetric 1-D correlation for gathered windows: `values(k)` returns the
    float64 inputs at offset k (k = -radius..radius); the loop runs from the outermost tap
    inwards, as NI_Correlate1D does, so the double sums round identically."""
    acc = values(0) * w0
    for m in range(len(taps), 0, -1):
        acc += (values(-m) + values(m)) * taps[m - 1]
    return acc


def exact_blend_at(original: dict, band, rows, cols, chans, blur, radius, weight) -> np.ndarray:
    """Exact step-3 values (blurred and blended) at scattered (row, col, channel) points,
    from the unblended image: pass 0 at every column the points' rows need, then pass 1."""
    img_rows = _full_image_reader(original, band)
    h, w = img_rows.shape
    w0, taps = kernel_taps(blur, radius)
    urows, inv = np.unique(rows, return_inverse=True)
    # pass 0 (down the columns) for each needed row, over the columns its points need
    lo = np.full(urows.size, w, dtype=np.int64)
    hi = np.zeros(urows.size, dtype=np.int64)
    np.minimum.at(lo, inv, cols - radius)
    np.maximum.at(hi, inv, cols + radius + 1)
    seg_r, seg_c = [], []
    for k, r in enumerate(urows):
        cc = np.arange(lo[k], hi[k])
        seg_c.append(np.unique(_reflect(cc, w)))
        seg_r.append(np.full(seg_c[-1].size, r))
    pr, pc = np.concatenate(seg_r), np.concatenate(seg_c)
    pass0 = correlate_at(lambda k: img_rows.get(_reflect(pr + k, h), pc), w0, taps)
    pass0 = pass0.astype(np.float32)  # scipy stores the first pass as float32
    table = {}
    for i, (r, c) in enumerate(zip(pr.tolist(), pc.tolist())):
        table[(r, c)] = i

    def at(k):
        cc = _reflect(cols + k, w)
        idx = np.fromiter((table[(r, c)] for r, c in zip(rows.tolist(), cc.tolist())),
                          dtype=np.int64, count=rows.size)
        return pass0[idx, chans].astype(np.float64)
    g = correlate_at(at, w0, taps).astype(np.float32)
    src = img_rows.get(rows, cols, chans).astype(np.float32)
    wt = np.array([weight((r, r + 1, c, c + 1))[0, 0, 0] for r, c in zip(rows.tolist(),
                                                                         cols.tolist())])
    return (src + (g - src) * wt).astype(np.float32)


class _full_image_reader:
    """Reads unblended pixels anywhere in the padded image: from the saved band copies, or
    the (unchanged) interior of the working image."""

    def __init__(self, original: dict, band):
        self.original = original
        self.band = band
        self.shape = (max(r[1] for r in band), max(r[3] for r in band))
        self.interior = None

    def set_interior(self, img):
        self.interior = img

    def get(self, rows, cols, chans=None):
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        out = np.empty(rows.shape + ((3,) if chans is None else ()), dtype=np.float64)
        done = np.zeros(rows.shape, dtype=bool)
        for (r0, r1, c0, c1), arr in self.original.items():
            m = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
            if m.any():
                if chans is None:
                    out[m] = arr[rows[m] - r0, cols[m] - c0]
                else:
                    out[m] = arr[rows[m] - r0, cols[m] - c0, np.asarray(chans)[m]]
                done |= m
        if not done.all():
            m = ~done
            if chans is None:
                out[m] = self.interior[rows[m], cols[m]]
            else:
                out[m] = self.interior[rows[m], cols[m], np.asarray(chans)[m]]
        return out


# ---- approximate Gaussian (FFT) and the exact median ---------------------------------

def approx_gaussian_region(img: np.ndarray, region, blur, radius: int) -> np.ndarray:
    """The same separable blur via FFT convolution, with scipy's float32 rounding between
    passes; differs from the exact one by ~1e-4 at most (for values in 0..255)."""
    from scipy.signal import fftconvolve
    w0, taps = kernel_taps(blur, radius)
    kernel = np.concatenate([taps[::-1], [w0], taps])
    r0, r1, c0, c1 = region
    h, w, _ = img.shape
    e0, e1 = max(r0 - radius, 0), min(r1 + radius, h)
    f0, f1 = max(c0 - radius, 0), min(c1 + radius, w)
    block = img[e0:e1, f0:f1].astype(np.float64)
    # reflect only across real image edges, as the full-image filter does
    block = _extend(block, 0, radius, e0 == 0, e1 == h)
    g = fftconvolve(block, kernel[:, None, None], mode="valid", axes=0).astype(np.float32)
    g = g[r0 - e0 + (0 if e0 == 0 else radius) - (radius if e0 != 0 else 0):][:r1 - r0]
    g = _extend(g.astype(np.float64), 1, radius, f0 == 0, f1 == w)
    g = fftconvolve(g, kernel[None, :, None], mode="valid", axes=1).astype(np.float32)
    return g[:, c0 - f0:c0 - f0 + (c1 - c0)]


def _extend(a: np.ndarray, axis: int, radius: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Pad by `radius` on both ends of `axis`: reflected at real image edges, and with the
    neighbouring data (already present, trimmed by 'valid') elsewhere."""
    pads = [(0, 0)] * a.ndim
    pads[axis] = (radius if at_start else 0, radius if at_end else 0)
    out = np.pad(a, pads, mode="symmetric")
    # where not at an edge, the block already holds `radius` extra samples; 'valid' mode
    # then needs exactly radius on each side, which both cases now provide
    return out


def exact_median(img: np.ndarray, uncertain: np.ndarray, exact_values) -> np.ndarray | None:
    """numpy's `median(img, axis=(0, 1))` for float32 `img` whose `uncertain` pixels hold
    values within TOLERANCE of the truth; `exact_values(rows, cols, chans)` gives the truth
    at chosen points. Returns None when too many points would need recomputing."""
    h, w, nc = img.shape
    n = h * w
    kth = [n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2]
    out = np.empty(nc, dtype=img.dtype)
    band_size = int(uncertain.sum())
    for c in range(nc):
        chan = img[..., c]
        part = np.partition(chan.ravel(), kth)
        lo = part[kth[0]] - 2 * TOLERANCE
        hi = part[kth[-1]] + 2 * TOLERANCE
        below = int(np.count_nonzero(chan < lo))
        cand = (chan >= lo) & (chan <= hi)
        rows, cols = np.nonzero(cand & uncertain)
        if rows.size > max(2000, band_size // 50):
            return None
        vals = chan[cand & ~uncertain].astype(np.float32)
        if rows.size:
            vals = np.concatenate([vals, exact_values(rows, cols, np.full(rows.size, c))])
        vals.sort()
        picks = [k - below for k in kth]
        if picks[0] < 0 or picks[-1] >= vals.size:
            return None  # the tolerance did not hold: let the exact path decide
        out[c] = np.median(vals[picks])  # numpy's own mean-of-two rounding
    return out
