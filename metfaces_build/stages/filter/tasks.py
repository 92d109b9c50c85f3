"""One worker task: the faces of one source image, decoded once (at the smallest scale
that serves the crop tests), every per-face test, then overlap resolution."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core import geometry
from ...core.status import MISSING_SOURCE
from ...infra.files import safe_join
from ...infra.images import ImageProblem, open_image, quick_crop
from .checks import check_face, crop_measures
from .config import FilterConfig
from .duplicates import resolve_overlaps
from .results import Check, FaceVerdict, FilterResult, FilterTask


def filter_tasks(faces: list, source_root: Path, cfg: FilterConfig) -> list:
    """One task per source image, in order of first appearance in faces.json."""
    groups: dict[str, list] = {}
    for i, rec in enumerate(faces):
        groups.setdefault(rec.source_path, []).append((i, rec))
    tasks = []
    for sp, items in groups.items():
        try:
            path = str(safe_join(source_root, sp))
        except ValueError:
            path = ""
        tasks.append(FilterTask(sp, path, tuple(items), cfg))
    return tasks


def check_image_faces(task: FilterTask) -> FilterResult:
    """All per-face tests, then overlap resolution, for the faces of one source image."""
    cfg = task.config
    try:
        size, crops = _load_for_checks(task)
    except ImageProblem as e:
        verdicts = []
        for i, rec in task.faces:
            sq = geometry.face_square(geometry.landmarks_full(rec.face_spec.landmarks, rec.face_spec.shrink))
            verdicts.append(FaceVerdict(rec, i, float(sq.qsize), [Check(e.status, False, e.reason, "readable image")]))
        return FilterResult(task.source_path, verdicts, None, e.status)
    width, height = size
    verdicts = []
    for (i, rec), measures in zip(task.faces, crops):
        verdicts.append(check_face(rec, i, width, height, cfg, measures))
    resolve_overlaps(verdicts, cfg)
    return FilterResult(task.source_path, verdicts, size)


def _load_for_checks(task: FilterTask) -> tuple:
    """(image size, [CropMeasures or None per face]); decodes only when crop tests are on."""
    recs = [rec for _, rec in task.faces]
    if not task.path:
        raise ImageProblem(MISSING_SOURCE, f"unsafe source_path {task.source_path!r}")
    known = [(r.image_width, r.image_height) for r in recs]
    if not task.config.crop_tests and all(w and h for w, h in known):
        return known[0], [None] * len(recs)
    head = open_image(task.path, load=False)
    size = head.size
    head.close()
    if not task.config.crop_tests:
        return size, [None] * len(recs)
    return size, _measure_crops(task.path, size, recs, task.config.crop_size)


def _measure_crops(path: str, size: tuple, recs: list, crop_size: int) -> list:
    return [crop_measures(c) for c in measurement_crops(path, size, recs, crop_size)]


def measurement_crops(path: str, size: tuple, recs: list, crop_size: int) -> list:
    """Approximate aligned crops (PIL, crop_size square) of `recs` from one source image.

    Decodes once, at the smallest scale (JPEG draft, then box reduction) that keeps every
    face at least twice the crop size, so big originals are cheap and crops barely alias.
    Raises ImageProblem when the image cannot be used."""
    lms = [geometry.landmarks_full(r.face_spec.landmarks, r.face_spec.shrink) for r in recs]
    min_q = min(float(geometry.face_square(lm).qsize) for lm in lms)
    scale = max(1.0, min_q / (2.0 * crop_size))
    want = (max(1, int(size[0] / scale)), max(1, int(size[1] / scale)))
    im = open_image(path, draft=("RGB", want) if scale >= 2 else None)
    im = im.convert("RGB")
    factor = int(im.width / want[0]) if im.width > want[0] else 1
    if factor >= 2:
        im = im.reduce(factor)
    fx = size[0] / im.width  # full-res pixels per decoded pixel
    out = []
    for lm in lms:
        # full-res pixel index p spans [p, p+1): decoded index = (p + 0.5) / fx - 0.5, and
        # quick_crop adds 0.5 again (shrink 1), hence the - 1.
        local = (lm.astype(np.float64) + 0.5) / fx - 1.0
        out.append(quick_crop(im, local, 1, size=crop_size))
    return out
