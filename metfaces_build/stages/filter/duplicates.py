"""The tests between faces: overlapping detections within one image, near-duplicate
crops across objects."""
from __future__ import annotations

import numpy as np

from ...core import geometry
from ...core.hamming import greedy_duplicates
from ...core.metrics import box_iou
from .config import FilterConfig
from .results import Check, FaceVerdict


def _overlap_rank(v: FaceVerdict) -> tuple:
    """Better first: passes its own tests, higher score, larger square, earlier."""
    score = v.record.score if v.record.score is not None else float("-inf")
    return (not v.keep, -score, -v.qsize, v.index)


def resolve_overlaps(verdicts: list, cfg: FilterConfig) -> None:
    """Greedy suppression within one image: a face whose rect overlaps a better, kept
    face by IoU > max_overlap fails `overlap`; others pass with their largest IoU."""
    boxes = {id(v): geometry.rect_full(v.record.face_spec.rect, v.record.face_spec.shrink)
             for v in verdicts}
    kept: list = []
    for v in sorted(verdicts, key=_overlap_rank):
        best = max(((box_iou(boxes[id(v)], boxes[id(k)]), k) for k in kept),
                   key=lambda t: t[0], default=(0.0, None))
        iou, other = best
        if other is not None and iou > cfg.max_overlap:
            v.checks.append(Check("overlap", False, {"iou": round(iou, 4), "with_face_idx":
                                                     other.record.face_idx}, f"IoU <= {cfg.max_overlap:g}"))
        else:
            v.checks.append(Check("overlap", True, {"iou": round(iou, 4)}, f"IoU <= {cfg.max_overlap:g}"))
            kept.append(v)


def _duplicate_rank(v: FaceVerdict) -> tuple:
    score = v.record.score if v.record.score is not None else float("-inf")
    return (-v.qsize, -score, v.index)


def resolve_duplicates(verdicts: list, cfg: FilterConfig) -> None:
    """Across objects: among faces still kept, one whose hash is within max_hash_distance
    of a better face of another object fails `near_duplicate` (naming the closest, then
    the better). Order-independent of how the work was split, so the same for any worker
    count. Near-linear (core.hamming): a face that passes records no distance, as its
    nearest face is farther than the limit."""
    if cfg.max_hash_distance < 0:
        return
    limit = f"> {cfg.max_hash_distance} bits from other objects"
    cands = sorted((v for v in verdicts if v.keep and v.measures is not None), key=_duplicate_rank)
    codes: dict = {}
    objects = np.array([codes.setdefault(v.record.obj_id, len(codes)) for v in cands], dtype=np.int64)
    hashes = np.array([int(v.measures.phash, 16) for v in cands], dtype=np.uint64)
    match, dist, others = greedy_duplicates(hashes, objects, cfg.max_hash_distance)
    for v, j, d, other in zip(cands, match.tolist(), dist.tolist(), others.tolist()):
        if j >= 0:
            o = cands[j].record
            v.checks.append(Check("near_duplicate", False, {"distance": d, "duplicate_of":
                                                            str(o.key)}, limit))
        elif other:
            v.checks.append(Check("near_duplicate", True, {"distance": None}, limit))
        else:
            v.checks.append(Check("near_duplicate", True, {"distance": None}, "first of its kind"))
