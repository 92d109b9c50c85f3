"""Synthetic faces for filter/compare/report tests: a hand-made 68-point frontal template
(iBUG order, face units: outer eye corners 0.88 apart, y down), numpy-made images, and
metfaces.json-style records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _template() -> np.ndarray:
    t = np.linspace(0, np.pi, 17)
    jaw = np.stack([-0.8 * np.cos(t), -0.1 + 1.05 * np.sin(t)], axis=1)            # 0-16
    bx = np.linspace(-0.6, -0.15, 5)
    brow_l = np.stack([bx, -0.4 - 0.08 * np.sin(np.linspace(0, np.pi, 5))], axis=1)  # 17-21
    brow_r = brow_l[::-1] * [-1, 1]                                                  # 22-26
    bridge = np.stack([np.zeros(4), np.linspace(-0.28, 0.15, 4)], axis=1)           # 27-30
    nose = np.stack([np.linspace(-0.15, 0.15, 5), [0.25, 0.27, 0.28, 0.27, 0.25]], axis=1)  # 31-35
    eye_l = np.array([[-0.44, -0.2], [-0.36, -0.24], [-0.26, -0.24], [-0.18, -0.2],
                      [-0.26, -0.16], [-0.36, -0.16]])                               # 36-41
    eye_r = np.array([[0.18, -0.2], [0.26, -0.24], [0.36, -0.24], [0.44, -0.2],
                      [0.36, -0.16], [0.26, -0.16]])                                 # 42-47
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    mouth_out = np.stack([-0.25 * np.cos(a), 0.51 - 0.07 * np.sin(a)], axis=1)      # 48-59
    b = np.linspace(0, 2 * np.pi, 9)[:-1]
    mouth_in = np.stack([-0.2 * np.cos(b), 0.51 - 0.03 * np.sin(b)], axis=1)        # 60-67
    lm = np.vstack([jaw, brow_l, brow_r, bridge, nose, eye_l, eye_r, mouth_out, mouth_in])
    assert lm.shape == (68, 2)
    return lm


TEMPLATE = _template()
IOD_UNITS = 0.88          # outer-eye-corner distance in template units
QSIZE_PER_SCALE = 2.56    # qsize = 2 * max(2 * 0.64, 1.8 * 0.7) * scale


def place(scale: float, cx: float, cy: float, angle: float = 0.0, template=None) -> np.ndarray:
    """Template rotated by `angle` degrees (clockwise in image coords), scaled, centred."""
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = TEMPLATE if template is None else template
    return t @ rot.T * scale + [cx, cy]


def face_json(obj_id, face_idx: int, lm_full: np.ndarray, shrink: int = 1, source_path=None,
              detector="cnn", score=1.0, size=None) -> dict:
    """A metfaces.json-style record for full-res landmarks (stored as integers in the
    shrunk frame, as detection writes them)."""
    lm = np.rint(np.asarray(lm_full, dtype=np.float64) / shrink - 0.5).astype(int)
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    d = {"obj_id": str(obj_id), "meta_url": "", "source_url": "",
         "source_path": source_path or f"originals/{obj_id}.png", "source_md5": "",
         "image_path": f"images/{obj_id}-{face_idx:02d}.png", "image_md5": "", "title": "t",
         "artist_display_name": "a",
         "face_spec": {"rect": [int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])],
                       "landmarks": lm.tolist(), "shrink": shrink},
         "face_idx": face_idx}
    if detector is not None:
        d["detector"] = detector
    if score is not None:
        d["score"] = score
    if size is not None:
        d["image_width"], d["image_height"] = size
    return d


def texture(seed: int, w: int, h: int, gray: bool = False, blur: float = 0.0) -> np.ndarray:
    """A colourful random texture with fine detail (uint8 HxWx3)."""
    rng = np.random.RandomState(seed)
    k = 8
    coarse = rng.randint(0, 256, size=(h // k + 1, w // k + 1, 3)).astype(np.float64)
    img = np.repeat(np.repeat(coarse, k, 0), k, 1)[:h, :w]
    img += rng.normal(0, 25, size=img.shape)
    if gray:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    if blur:
        from scipy import ndimage
        img = ndimage.gaussian_filter(img, [blur, blur, 0])
    return np.clip(img, 0, 255).astype(np.uint8)


def save_image(path: Path, arr: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_faces(path: Path, faces: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(faces))
