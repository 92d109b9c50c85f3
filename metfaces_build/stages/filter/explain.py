"""`--explain OBJ_ID`: every test of one object's faces, as lines; writes nothing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...core.errors import UsageError
from ...core.records import FaceKey
from ...infra.files import read_json_or_none
from ...infra.readers import read_rejections
from ...infra.workdir import as_work
from .config import FilterConfig
from .results import Check
from .tasks import check_image_faces, filter_tasks


def explain(work: Path, faces: list, source_root: Path, cfg: FilterConfig, obj_id: str) -> list:
    """Print every test for one object's faces (the near-duplicate test needs every
    other face, so its outcome is read from the last full run when there is one)."""
    lines: list = []
    mine = [f for f in faces if f.obj_id == obj_id]
    if not mine:
        raise UsageError(f"--explain: no faces with obj_id {obj_id!r} in faces.json")
    index = {f.key: i for i, f in enumerate(faces)}
    previous = _previous_duplicate_checks(work)
    tasks = filter_tasks(mine, source_root, cfg)
    for t in tasks:
        t = dataclasses.replace(t, faces=tuple((index[r.key], r) for _, r in t.faces))
        res = check_image_faces(t)
        size = f"{res.size[0]}x{res.size[1]}" if res.size else "unreadable"
        lines.append(f"object {obj_id}: {len(res.verdicts)} face(s) in {t.source_path} ({size})")
        for v in res.verdicts:
            dup = previous.get(v.record.key)
            if dup is not None:
                v.checks.append(dup)
            lines.append(f"  face {v.record.face_idx}: {'KEEP' if v.keep else 'REJECT ' + ', '.join(v.reasons)}"
                  f"  (qsize {v.qsize:.1f} px)")
            for c in v.checks:
                lines.append(f"    {c.line()}")
            if dup is None and cfg.max_hash_distance >= 0 and v.measures is not None:
                why = ("needs every other face: run the stage first" if v.keep
                       else "not tested: already rejected")
                lines.append(f"    ---- {'near_duplicate':<18} phash {v.measures.phash}, {why}")
    return lines


def _previous_duplicate_checks(work: Path) -> dict:
    """Near-duplicate outcomes recorded by the last full run, keyed by face."""
    layout = as_work(work)
    out: dict = {}
    for r in read_rejections(layout.rejected_jsonl):  # damaged lines left out
        if "near_duplicate" in r.reasons:
            out[FaceKey(r.obj_id, r.face_idx)] = Check(
                "near_duplicate", False, r.values.get("near_duplicate"), "(last run)")
    kept = read_json_or_none(layout.filtered_json) or []
    for d in kept if isinstance(kept, list) else []:
        vals = (d.get("filter") or {}) if isinstance(d, dict) else {}
        if "near_duplicate" in vals:
            out[FaceKey(str(d.get("obj_id")), d.get("face_idx"))] = Check(
                "near_duplicate", True, vals["near_duplicate"], "(last run)")
    return out
