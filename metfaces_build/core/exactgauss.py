"""scipy's 1-D Gaussian on float32 lines, bit for bit, at FFT speed.

scipy's `gaussian_filter1d` (mode 'reflect', truncate 4) computes each output as a float64
running sum in a fixed order -- `acc = x[i] * w0`, then `acc += (x[i-m] + x[i+m]) * w[m]`
for m = radius..1 -- and stores it as float32. Only that float32 is kept, and the float64
sum lies within (radius + 3) u max|x| of the exact sum of the same products. So:

1. A float64 FFT correlation (numpy's pocketfft) gives each output in O(log n) instead of
   O(radius), within `delta` of the exact sum: 64 times the classical bound for an FFT
   convolution (about 13 u log2(N) ||x||_2, Higham, Accuracy and Stability, ch. 24), some
   3e-10 for 8-bit lines; the largest error measured on image and noise lines is 1/2000 of
   it (~2e-13).
2. Where both ends of y +- (delta + 4 times the bound on scipy's own rounding) round to
   the same float32, scipy's sum (inside that interval) rounds there too: certified.
3. The rest (a value in 10^3..10^4 for 8-bit images; all-zero windows are exactly 0) is
   summed scipy's way, term for term.

Invariants: every returned value equals scipy's bits; nothing here depends on numba (it
fuses step 2 and 3 into one pass and runs the direct sums; numpy gives the same bits).
Short radii use the direct sums everywhere (`_correlate_blocks`), where they are cheaper.
"""
from __future__ import annotations

import math

import numpy as np

from .jit import compiled

LANES = 128          # lines filtered side by side in the direct kernel (fits L2 with the window)
CHUNK_VALUES = 1 << 19   # values per FFT chunk (4 MiB of float64: stays in cache)
FFT_MIN_RADIUS = 40  # below this the direct sums are cheaper than the FFT
_U = 2.0 ** -53      # float64 unit roundoff
FFT_SAFETY = 64.0    # times Higham's ~13 u log2(N) ||x||_2 bound for an FFT convolution


def kernel_taps(blur, radius: int) -> tuple:
    """(w0, taps w[1..radius]) exactly as scipy's symmetric correlate loop uses them: the
    kernel of scipy.ndimage's `_gaussian_kernel1d(blur, 0, radius)`, expression for
    expression with `blur` in its own dtype (the aligner's is float32), which is symmetric,
    so reversing it for the correlation changes nothing. Computed here, so aligning never
    imports scipy (0.4 s); tests compare it with scipy's impulse response."""
    sigma2 = blur * blur
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / sigma2 * x ** 2)
    phi = phi / phi.sum()
    return float(phi[radius]), np.ascontiguousarray(phi[radius + 1:])


def scipy_kernel_taps(blur, radius: int) -> tuple:
    """`kernel_taps` read off scipy's own impulse response (for tests and checks)."""
    from scipy.ndimage import gaussian_filter1d  # deferred: scipy costs 0.4 s to import
    delta = np.zeros(2 * radius + 1)
    delta[radius] = 1.0
    resp = gaussian_filter1d(delta, blur, mode="constant")
    return float(resp[radius]), np.ascontiguousarray(resp[radius + 1:])


def filter_lines(lines: np.ndarray, index, w0: float, taps: np.ndarray,
                 use_fft=None, transposed: bool = False, sink=None):
    """Filter every line of `lines` (A x B x M, any strides; the lines are
    `lines[a, b, index]`, `index` selecting the n + 2 radius samples of the line extended
    at both ends, or None for all M) and return A x B x n float32 (n x B x A with
    `transposed`, the layout whose lines a second pass reads in memory order): scipy's
    correlation with (w0, taps), bit for bit. With `sink`, each chunk of results is
    handed to sink(a0, a1, a1 - a0 x B x n array) while in cache, and None returned."""
    radius = taps.size
    a_n, b_n = lines.shape[:2]
    if index is None:
        index = np.arange(lines.shape[2])
    index = np.ascontiguousarray(index, dtype=np.int64)
    ext = index.size
    n = ext - 2 * radius
    out = None if sink is not None else \
        np.empty((n, b_n, a_n) if transposed else (a_n, b_n, n), np.float32)
    if use_fft is None:
        use_fft = radius >= FFT_MIN_RADIUS or _direct_kernel() is None
    plan = _FFTPlan(ext, w0, taps) if use_fft else None
    width = plan.size if use_fft else ext  # the FFT's zero tail is written once
    step = max(1, CHUNK_VALUES // max(1, b_n * width))
    buf = np.zeros((min(step, a_n) * b_n, width), np.float64)
    gather, store = _gather_kernel(), _store_kernel()
    for a0 in range(0, a_n, step):
        part = lines[a0:a0 + step]
        x = buf[:part.shape[0] * b_n]
        if gather is not None:
            gather(part, index, x)
        else:
            x[:, :ext] = part[:, :, index].reshape(-1, ext)
        res = plan.filter(x)[0] if use_fft else _direct(x, w0, taps)
        if sink is not None:
            sink(a0, a0 + part.shape[0], res.reshape(-1, b_n, n))
        elif not transposed:
            out[a0:a0 + step] = res.reshape(-1, b_n, n)
        elif store is not None:
            store(res, a0, out)
        else:
            out[:, :, a0:a0 + step] = res.reshape(-1, b_n, n).transpose(2, 1, 0)
    return out


def _gather(src, index, out):  # pragma: no cover - compiled by numba
    """out[a * B + b, j] = src[a, b, index[j]] as float64. When the samples are contiguous
    (a transposed pass) each line is copied in order; when they are a strided column
    (a rows pass over an image) eight samples of every line are taken at a time, so each
    output cache line is written whole while few source rows are open."""
    a_n, b_n = src.shape[0], src.shape[1]
    e = index.shape[0]
    if src.strides[2] == src.itemsize:
        for a in range(a_n):
            for b in range(b_n):
                row = a * b_n + b
                for j in range(e):
                    out[row, j] = src[a, b, index[j]]
        return
    for j0 in range(0, e, 8):
        j1 = min(j0 + 8, e)
        for a in range(a_n):
            for b in range(b_n):
                row = a * b_n + b
                for j in range(j0, j1):
                    out[row, j] = src[a, b, index[j]]


def _gather_kernel():
    return compiled(_gather)


def _store(res, a0, out):  # pragma: no cover - compiled by numba
    """out[i, b, a0 + a] = res[a * B + b, i]: a chunk's lines stored across, written in
    memory order (the chunk's lines stay in L1 while they are read down)."""
    n, b_n = out.shape[0], out.shape[1]
    a_n = res.shape[0] // b_n
    for i in range(n):
        for b in range(b_n):
            for a in range(a_n):
                out[i, b, a0 + a] = res[a * b_n + b, i]


def _store_kernel():
    return compiled(_store)


def fast_length(n: int) -> int:
    """The smallest even 2^a 3^b 5^c >= n (pocketfft's quick sizes)."""
    best = 1 << max(1, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n or m % 2:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _FFTPlan:
    """The kernel's spectrum for one extended line length, and the certified filter."""

    def __init__(self, ext: int, w0: float, taps: np.ndarray):
        self.radius = taps.size
        self.ext = ext
        self.size = fast_length(ext)  # >= ext: no wrap-around in the outputs
        kern = np.concatenate([taps[::-1], [w0], taps])
        self.spectrum = np.fft.rfft(kern, self.size)
        self.w0, self.taps = w0, taps
        self.log2n = math.log2(self.size)

    def filter(self, buf: np.ndarray) -> tuple:
        """buf: L x size float64 (C order), each line's ext samples then zeros; returns
        (L x n float32, scipy's bits; how many values were summed directly because the
        FFT's could not be certified)."""
        r = self.radius
        n = self.ext - 2 * r
        x = buf[:, :self.ext]
        spec = np.fft.rfft(buf, axis=1)
        spec *= self.spectrum
        y = np.fft.irfft(spec, self.size, axis=1)[:, 2 * r:2 * r + n]  # y[2r+i] = sum w|m| x[r+i+m]
        # per line: |FFT - exact| <= fft_scale * ||x||_2, |scipy - exact| <= ref_scale * max|x|
        delta = (FFT_SAFETY * _U * self.log2n * np.sqrt(np.einsum("ij,ij->i", x, x))
                 + 4.0 * (r + 3) * _U * np.abs(x).max(axis=1))
        out = np.empty(y.shape, np.float32)
        kernel = _certify_kernel()
        if kernel is not None:
            summed = kernel(y, x, delta, self.w0, self.taps, out)
        else:
            summed = _certify_numpy(y, x, delta, self.w0, self.taps, out)
        return out, summed


def _certify_numpy(y, x, delta, w0, taps, out) -> int:
    """numpy form of `_certify`, same bits; returns how many values were summed."""
    r = taps.size
    d = delta[:, None]
    lo = (y - d).astype(np.float32)
    sure = lo == (y + d).astype(np.float32)
    out[...] = lo
    nz = np.concatenate([np.zeros((x.shape[0], 1), np.int64),
                         np.cumsum(x != 0, axis=1)], axis=1)
    n = y.shape[1]
    zero = (nz[:, 2 * r + 1:2 * r + 1 + n] - nz[:, :n]) == 0
    out[~sure & zero] = 0.0
    li, pi = np.nonzero(~sure & ~zero)
    if li.size:
        c = pi + r
        acc = x[li, c] * w0
        for m in range(r, 0, -1):
            acc += (x[li, c - m] + x[li, c + m]) * taps[m - 1]
        out[li, pi] = acc.astype(np.float32)
    return int(li.size)


def _certify(y, x, delta, w0, taps, out):  # pragma: no cover - compiled by numba
    """out = float32(y) where both ends of y +- delta round to the same float32 (rounding
    is monotone, so scipy's sum, inside that interval, rounds there too); 0 where the
    window holds only zeros; else scipy's sum for that output, term for term. Returns how
    many values were summed. A line is first rounded in one branch-free (vectorised)
    sweep that counts the doubtful values; only lines with some are swept again."""
    lines, n = y.shape
    r = taps.shape[0]
    ext = x.shape[1]
    nz = np.empty(ext + 1, np.int64)
    summed = 0
    for li in range(lines):
        d = delta[li]
        yl = y[li]
        ol = out[li]
        doubtful = 0
        for i in range(n):
            v = yl[i]
            lo = np.float32(v - d)
            ol[i] = lo
            doubtful += lo != np.float32(v + d)
        if doubtful == 0:
            continue
        nz[0] = 0
        for j in range(ext):
            nz[j + 1] = nz[j] + (1 if x[li, j] != 0.0 else 0)
        for i in range(n):
            v = yl[i]
            if np.float32(v - d) == np.float32(v + d):
                continue
            if nz[i + 2 * r + 1] - nz[i] == 0:
                ol[i] = 0.0
                continue
            c = i + r
            acc = x[li, c] * w0
            for m in range(r, 0, -1):
                acc += (x[li, c - m] + x[li, c + m]) * taps[m - 1]
            ol[i] = np.float32(acc)
            summed += 1
    return summed


def _certify_kernel():
    return compiled(_certify)


def _direct(x: np.ndarray, w0: float, taps: np.ndarray) -> np.ndarray:
    """x: L x (n + 2 radius) float64 lines; returns L x n float32 by the direct sums."""
    kernel = _direct_kernel()
    radius = taps.size
    length, ext = x.shape
    n = ext - 2 * radius
    if kernel is None:  # scipy itself, on the already extended lines
        from scipy.ndimage import correlate1d  # deferred: scipy costs 0.4 s to import
        full = np.concatenate([taps[::-1], [w0], taps])
        return correlate1d(x.astype(np.float32), full, axis=1)[:, radius:radius + n]
    nb = -(-length // LANES)
    blocks = np.zeros((nb, ext, LANES), dtype=np.float64)
    for b in range(nb):  # lane blocks, each contiguous so the tap window stays in cache
        part = x[b * LANES:(b + 1) * LANES]
        blocks[b, :, :part.shape[0]] = part.T
    out = np.empty((nb, n, LANES), dtype=np.float32)
    kernel(blocks, w0, taps, out)
    return out.transpose(0, 2, 1).reshape(nb * LANES, n)[:length]


def _direct_kernel():
    """The compiled direct kernel, or None when numba is not installed."""
    return compiled(_correlate_blocks)


def _correlate_blocks(blocks, w0, taps, out):  # pragma: no cover - compiled by numba
    """out[b, i, l] = scipy's symmetric correlation of blocks[b, :, l] at i + radius:
    acc = x[i]*w0; for m = radius..1: acc += (x[i-m] + x[i+m]) * w[m] (float64).
    Four outputs and two taps per sweep over the lanes: the window rows are reused from
    L1 and the running sums are loaded and stored half as often, same order of terms."""
    nb, n, lanes = out.shape
    radius = taps.shape[0]
    acc = np.empty((4, lanes))
    for b in range(nb):
        blk = blocks[b]
        i = 0
        while i + 4 <= n:
            c = i + radius
            for k in range(lanes):
                acc[0, k] = blk[c, k] * w0
                acc[1, k] = blk[c + 1, k] * w0
                acc[2, k] = blk[c + 2, k] * w0
                acc[3, k] = blk[c + 3, k] * w0
            m = radius
            while m >= 2:
                t0 = taps[m - 1]
                t1 = taps[m - 2]
                for k in range(lanes):
                    a0 = acc[0, k]
                    a1 = acc[1, k]
                    a2 = acc[2, k]
                    a3 = acc[3, k]
                    a0 += (blk[c - m, k] + blk[c + m, k]) * t0
                    a1 += (blk[c + 1 - m, k] + blk[c + 1 + m, k]) * t0
                    a2 += (blk[c + 2 - m, k] + blk[c + 2 + m, k]) * t0
                    a3 += (blk[c + 3 - m, k] + blk[c + 3 + m, k]) * t0
                    a0 += (blk[c - m + 1, k] + blk[c + m - 1, k]) * t1
                    a1 += (blk[c + 2 - m, k] + blk[c + m, k]) * t1
                    a2 += (blk[c + 3 - m, k] + blk[c + 1 + m, k]) * t1
                    a3 += (blk[c + 4 - m, k] + blk[c + 2 + m, k]) * t1
                    acc[0, k] = a0
                    acc[1, k] = a1
                    acc[2, k] = a2
                    acc[3, k] = a3
                m -= 2
            if m == 1:
                t0 = taps[0]
                for k in range(lanes):
                    acc[0, k] += (blk[c - 1, k] + blk[c + 1, k]) * t0
                    acc[1, k] += (blk[c, k] + blk[c + 2, k]) * t0
                    acc[2, k] += (blk[c + 1, k] + blk[c + 3, k]) * t0
                    acc[3, k] += (blk[c + 2, k] + blk[c + 4, k]) * t0
            for k in range(lanes):
                out[b, i, k] = np.float32(acc[0, k])
                out[b, i + 1, k] = np.float32(acc[1, k])
                out[b, i + 2, k] = np.float32(acc[2, k])
                out[b, i + 3, k] = np.float32(acc[3, k])
            i += 4
        while i < n:
            c = i + radius
            for k in range(lanes):
                a = blk[c, k] * w0
                for m in range(radius, 0, -1):
                    a += (blk[c - m, k] + blk[c + m, k]) * taps[m - 1]
                out[b, i, k] = np.float32(a)
            i += 1


def backend() -> str:
    """Which implementation runs: 'fft+numba', 'fft' (numpy certification) -- recorded
    in manifests; the bits are the same."""
    return "fft+numba" if _certify_kernel() is not None else "fft"
