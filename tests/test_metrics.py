"""The shared metrics: one IoU convention, one popcount, one PSNR."""
from __future__ import annotations

import numpy as np
import pytest

from metfaces_build.core import metrics


def old_inclusive_iou(a, b):
    """The formula detect used on dlib's inclusive rects before the metrics were shared."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return (w * h) / (area(a) + area(b) - w * h)


def test_inclusive_rects_give_the_same_iou_as_before():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        a = sorted(rng.integers(0, 60, 2)), sorted(rng.integers(0, 60, 2))
        b = sorted(rng.integers(0, 60, 2)), sorted(rng.integers(0, 60, 2))
        ra = (int(a[0][0]), int(a[1][0]), int(a[0][1]), int(a[1][1]))
        rb = (int(b[0][0]), int(b[1][0]), int(b[0][1]), int(b[1][1]))
        got = metrics.box_iou(metrics.rect_edges(ra), metrics.rect_edges(rb))
        assert got == old_inclusive_iou(ra, rb)


def test_box_iou_known_values():
    assert metrics.box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert metrics.box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert metrics.box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # edges touch
    assert metrics.box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0       # empty


def test_popcount_and_hash_distance():
    a = np.array([0, 1, 0xFF, 2**64 - 1], dtype=np.uint64)
    assert metrics.popcount(a).tolist() == [0, 1, 8, 64]
    assert metrics.hash_distance("00000000000000ff", "000000000000000f") == 4
    assert metrics.hash_distance("ffffffffffffffff", "0000000000000000") == 64


def test_psnr_and_max():
    a = np.zeros((4, 4, 3), np.uint8)
    assert metrics.psnr_and_max(a, a) == (float("inf"), 0)
    psnr, mx = metrics.psnr_and_max(a, a + 5)
    assert mx == 5 and psnr == pytest.approx(10 * np.log10(255 ** 2 / 25))
