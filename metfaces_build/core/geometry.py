"""Pure face geometry shared by align, filter and compare (numpy only, no I/O).

The arithmetic follows NVIDIA's metfaces.py exactly (dtypes included), because the
aligner must reproduce the published crops bit for bit: see ALIGN.md in the design docs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# 68-point regions (iBUG 300-W / dlib order)
REGIONS = {
    "jaw": slice(0, 17),
    "brows": slice(17, 27),
    "nose": slice(27, 36),
    "eyes": slice(36, 48),
    "mouth": slice(48, 68),
}
OUTER_EYE_CORNERS = (36, 45)


def landmarks_full(landmarks, shrink: int) -> np.ndarray:
    """Stored (shrunk-frame, integer) landmarks -> float32 full-resolution pixels."""
    return (np.float32(landmarks) + 0.5) * shrink


def inter_ocular(lm_full: np.ndarray) -> float:
    """Distance between the outer eye corners (36, 45): the normaliser of landmark error."""
    a, b = OUTER_EYE_CORNERS
    return float(np.hypot(*(lm_full[b].astype(np.float64) - lm_full[a])))


def eye_centres(lm_full: np.ndarray) -> tuple:
    """(left eye centre, right eye centre) as float32, mean of rows 36-41 and 42-47."""
    return np.mean(lm_full[36:42], axis=0), np.mean(lm_full[42:48], axis=0)


@dataclass(frozen=True)
class Square:
    """The oriented crop square of one face in full-resolution source pixels.

    `x` and `y` are the half-side vectors (x points right along the face, y down),
    `c0` the centre; `qsize` is the side length; `quad()` gives the 4 corners in the
    order the warp expects (top-left, bottom-left, bottom-right, top-right).
    """
    c0: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def qsize(self):
        """Side length; a numpy scalar of x's dtype (the aligner's rounding depends on it)."""
        return np.hypot(*self.x) * 2

    def quad(self, c: np.ndarray | None = None) -> np.ndarray:
        c = self.c0 if c is None else c
        x, y = self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def face_square(lm_full: np.ndarray, rotate: bool = True) -> Square:
    """ALIGN.md steps 1-2: the oriented square from 68 full-resolution landmarks."""
    lm = lm_full
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    mouth_left = lm[48]
    mouth_right = lm[54]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    scale = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if rotate:
        x = eye_to_eye - _rot90(eye_to_mouth)  # float32 throughout, as in the reference
        x /= np.hypot(*x)
        x *= scale
        y = _rot90(x)
    else:
        x = np.array([1, 0], dtype=np.float64) * scale
        y = np.flipud(x) * [-1, 1]
    c0 = eye_avg + eye_to_mouth * 0.1
    return Square(c0=c0, x=x, y=y)


def _rot90(v: np.ndarray) -> np.ndarray:
    # NVIDIA: np.array([-v[1], v[0]]) -- a new array from float32 scalars (stays float32)
    return np.array([-v[1], v[0]])


def crop_box(quad: np.ndarray) -> tuple:
    """Integer bounding box (x0, y0, x1, y1) of a quad: floor of mins, ceil of maxes."""
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))


def outside_fraction(quad: np.ndarray, width: int, height: int, samples: int = 64) -> float:
    """Share of the crop square's area that falls outside a width x height image
    (sampled on a grid; used by the padding filter)."""
    t = (np.arange(samples) + 0.5) / samples
    u, v = np.meshgrid(t, t)
    p0, p1, _, p3 = quad.astype(np.float64)
    pts = p0 + u[..., None] * (p3 - p0) + v[..., None] * (p1 - p0)
    inside = (pts[..., 0] >= 0) & (pts[..., 0] < width) & (pts[..., 1] >= 0) & (pts[..., 1] < height)
    return float(1.0 - inside.mean())


def roll_degrees(lm_full: np.ndarray) -> float:
    """In-plane rotation of the eye line, degrees (positive: clockwise in image coords)."""
    le, re = eye_centres(lm_full)
    d = (re - le).astype(np.float64)
    return float(np.degrees(np.arctan2(d[1], d[0])))


# ---- measurements used by filter and compare (float64; no exactness constraints) ----

def rect_full(rect, shrink: int) -> np.ndarray:
    """dlib rect `[l, t, r, b]` (inclusive pixel indices in the shrunk frame) -> float64
    full-resolution box edges `[x0, y0, x1, y1]`: pixel l spans [l, l + 1) before shrinking."""
    l, t, r, b = (float(v) for v in rect)
    return np.array([l, t, r + 1.0, b + 1.0]) * shrink



def mouth_drop(lm_full: np.ndarray) -> float:
    """How far the mouth centre lies below the eye line, along the face's own "down"
    direction, in units of the eye-centre distance (about 1.0 for a frontal face; <= 0
    means the mouth is level with or above the eyes: a broken fit)."""
    le, re = (v.astype(np.float64) for v in eye_centres(lm_full))
    e2e = re - le
    d = float(np.hypot(*e2e))
    if d == 0:
        return 0.0
    down = np.array([-e2e[1], e2e[0]]) / d  # eye line turned 90 degrees clockwise (y down)
    mouth = (lm_full[48].astype(np.float64) + lm_full[54]) * 0.5
    return float(np.dot(mouth - (le + re) * 0.5, down) / d)


def eye_jaw_ratio(lm_full: np.ndarray) -> float:
    """Outer-eye-corner distance over jaw width (points 0-16): about 0.6 for a frontal
    face; collapsed or exploded fits fall far outside."""
    jaw = float(np.hypot(*(lm_full[16].astype(np.float64) - lm_full[0])))
    return inter_ocular(lm_full) / jaw if jaw > 0 else float("inf")


def yaw_asymmetry(lm_full: np.ndarray) -> float:
    """Yaw proxy: |d_l - d_r| / (d_l + d_r) for the nose-tip (30) distances to the outer
    eye corners (36, 45); 0 frontal, approaching 1 in profile."""
    nose = lm_full[30].astype(np.float64)
    d_l = float(np.hypot(*(nose - lm_full[OUTER_EYE_CORNERS[0]])))
    d_r = float(np.hypot(*(nose - lm_full[OUTER_EYE_CORNERS[1]])))
    return abs(d_l - d_r) / (d_l + d_r) if d_l + d_r > 0 else 0.0


def landmarks_outside(lm_full: np.ndarray, width: int, height: int) -> float:
    """Largest distance (pixels) by which any landmark lies outside a width x height
    image; 0 when all 68 points are inside."""
    p = lm_full.astype(np.float64)
    dx = np.maximum(0.0, np.maximum(-p[:, 0], p[:, 0] - width))
    dy = np.maximum(0.0, np.maximum(-p[:, 1], p[:, 1] - height))
    return float(np.max(np.hypot(dx, dy)))
