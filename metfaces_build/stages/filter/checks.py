"""The pure per-face tests: each a function of a face record (plus the image size, plus
a small aligned crop where needed) returning a Check with the measured value."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...core import geometry
from ...core.records import FaceRecord
from .config import FilterConfig
from .results import Check, CropMeasures, FaceVerdict


def check_face(rec: FaceRecord, index: int, width: int, height: int, cfg: FilterConfig,
               measures: Optional[CropMeasures] = None) -> FaceVerdict:
    """Every per-face test (everything but overlap and near-duplicates)."""
    lm = geometry.landmarks_full(rec.face_spec.landmarks, rec.face_spec.shrink)
    sq = geometry.face_square(lm)
    qsize = float(sq.qsize)  # geometry keeps numpy's dtype for the aligner; plain float here
    checks = [check_resolution(qsize, cfg), check_score(rec, cfg)]
    checks += check_landmarks(lm, width, height, cfg)
    checks.append(check_padding(sq, width, height, cfg))
    checks += check_crop(measures, cfg)
    return FaceVerdict(rec, index, qsize, checks, measures)


def check_resolution(qsize: float, cfg: FilterConfig) -> Check:
    return Check("resolution", qsize >= cfg.min_size, round(qsize, 2), f"needs >= {cfg.min_size:g} px")


def check_score(rec: FaceRecord, cfg: FilterConfig) -> Check:
    limit = cfg.min_score.get(rec.detector) if rec.detector else None
    if rec.score is None or limit is None:
        return Check("score", True, rec.score, f"no threshold for detector {rec.detector!r}")
    return Check("score", float(rec.score) >= limit, float(rec.score), f"needs >= {limit:g} ({rec.detector})")


def check_landmarks(lm: np.ndarray, width: int, height: int, cfg: FilterConfig) -> list:
    """Roll, mouth below eyes, eye/jaw proportion, yaw proxy, points inside the image."""
    roll = geometry.roll_degrees(lm)
    drop = geometry.mouth_drop(lm)
    ratio = geometry.eye_jaw_ratio(lm)
    yaw = geometry.yaw_asymmetry(lm)
    inter_ocular = geometry.inter_ocular(lm)
    outside = (geometry.landmarks_outside(lm, width, height) / inter_ocular
               if inter_ocular > 0 else float("inf"))
    return [
        Check("roll", abs(roll) <= cfg.max_roll, round(roll, 2), f"needs |deg| <= {cfg.max_roll:g}"),
        Check("mouth_below_eyes", drop >= cfg.min_mouth_drop, round(drop, 4),
              f"needs >= {cfg.min_mouth_drop:g} eye distances"),
        Check("eye_jaw_ratio", cfg.eye_jaw_min <= ratio <= cfg.eye_jaw_max, round(ratio, 4),
              f"needs [{cfg.eye_jaw_min:g}, {cfg.eye_jaw_max:g}]"),
        Check("yaw", yaw <= cfg.max_yaw, round(yaw, 4), f"needs <= {cfg.max_yaw:g}"),
        Check("landmarks_outside", outside <= cfg.max_landmark_outside, round(outside, 4),
              f"needs <= {cfg.max_landmark_outside:g} inter-ocular"),
    ]


def check_padding(square: geometry.Square, width: int, height: int, cfg: FilterConfig) -> Check:
    share = geometry.outside_fraction(square.quad(), width, height)
    return Check("padding", share <= cfg.max_padding, round(share, 4), f"needs <= {cfg.max_padding:g}")


def check_crop(m: Optional[CropMeasures], cfg: FilterConfig) -> list:
    """Sharpness and grayscale: tags unless a threshold turns them into tests."""
    if m is None:
        return []
    sharp_ok = cfg.min_sharpness is None or m.sharpness >= cfg.min_sharpness
    sharp_limit = "tag only" if cfg.min_sharpness is None else f"needs >= {cfg.min_sharpness:g}"
    gray = m.chroma < cfg.grayscale_chroma
    return [
        Check("sharpness", sharp_ok, round(m.sharpness, 2), sharp_limit),
        Check("grayscale", not (gray and cfg.reject_grayscale),
              {"grayscale": bool(gray), "chroma": round(m.chroma, 4)},
              f"chroma < {cfg.grayscale_chroma:g}" + ("" if cfg.reject_grayscale else " (tag only)")),
    ]


def crop_measures(crop) -> CropMeasures:
    """Sharpness, colour spread and pHash of a measurement crop (a PIL RGB image).

    Measured on the central 60% so black fill outside the source and background edges
    count little; the crop is at a fixed size, so values compare across faces."""
    from scipy import ndimage  # scipy and PIL load only when crops are measured
    rgb = np.asarray(crop.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    centre = rgb[int(h * 0.2):int(h * 0.8), int(w * 0.2):int(w * 0.8)]
    gray = centre @ [0.299, 0.587, 0.114]
    sharpness = float(ndimage.laplace(gray).var())
    chroma = float((centre.max(axis=2) - centre.min(axis=2)).mean() / 255.0)
    return CropMeasures(sharpness, chroma, perceptual_hash(crop))


def perceptual_hash(image) -> str:
    """64-bit DCT hash (pHash): low 8x8 DCT coefficients of a 32x32 grayscale above
    their median. Robust to rescaling and mild recompression, not to re-framing."""
    from PIL import Image  # (deferred as in crop_measures)
    from scipy.fft import dctn
    g = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    low = dctn(g, norm="ortho")[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"
