"""Metrics shared by the stages, each defined once: box overlap, bit distance, PSNR.

Pure functions of numbers and arrays. Boxes are continuous edges `[x0, y0, x1, y1]`; a
dlib rect `[l, t, r, b]` holds inclusive pixel indices, so it covers
`[l, t, r + 1, b + 1]` (`rect_edges`): one convention, whatever the caller's frame.
"""
from __future__ import annotations

import math

import numpy as np


def rect_edges(rect) -> tuple:
    """dlib rect (inclusive pixel indices) -> the edges `[x0, y0, x1, y1]` it covers."""
    l, t, r, b = rect
    return (l, t, r + 1, b + 1)


def box_iou(a, b) -> float:
    """Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits per element of an unsigned 64-bit array (int64 counts)."""
    a = np.asarray(a, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(a).astype(np.int64)
    b = a.reshape(-1).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(b, axis=1).sum(axis=1).astype(np.int64).reshape(a.shape)


def hash_distance(a: str, b: str) -> int:
    """Hamming distance of two 64-bit hashes written as hex (perceptual hashes)."""
    return int(popcount(np.array([int(a, 16) ^ int(b, 16)], dtype=np.uint64))[0])


def psnr_and_max(a: np.ndarray, b: np.ndarray) -> tuple:
    """(PSNR in dB or inf, max |a - b|) of two uint8 arrays of one shape."""
    d = a.astype(np.int16) - b.astype(np.int16)
    mse = float(np.mean(d.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
    return psnr, int(np.abs(d).max()) if d.size else 0
