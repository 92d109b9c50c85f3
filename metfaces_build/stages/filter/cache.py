"""filter_cache.json: each image's per-face results keyed by its content (source_sha256),
its faces and the config, so an update measures only the faces of changed images."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from ...infra.files import atomic_open, read_json_or_none
from .results import Check, CropMeasures, FaceVerdict, FilterResult, FilterTask, json_safe


CACHE_VERSION = 2  # 2: limits read "needs >= ..."
_CACHE_FACE_KEYS = ("face_idx", "face_spec", "score", "detector", "image_width", "image_height")


def image_cache_key(task: FilterTask) -> str:
    """sha256 over the image's content key, its faces as the tests see them and the
    config; "" (no caching) when the faces carry no source_sha256 (NVIDIA's json, a
    plain folder)."""
    recs = [r.to_json() for _, r in task.faces]
    shas = {r.get("source_sha256") for r in recs}
    if len(shas) != 1 or not isinstance(next(iter(shas)), str) or not next(iter(shas)):
        return ""
    payload = [CACHE_VERSION, task.source_path, next(iter(shas)), task.config.to_json(),
               [[r.get(k) for k in _CACHE_FACE_KEYS] for r in recs]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_entry(res: FilterResult) -> dict:
    """The per-face results of one image as JSON (checks after overlap resolution)."""
    return {"faces": [{"qsize": v.qsize,
                       "checks": [[c.name, bool(c.passed), _plain(c.value), c.limit] for c in v.checks],
                       "measures": None if v.measures is None else dataclasses.asdict(v.measures)}
                      for v in res.verdicts]}


def cached_result(task: FilterTask, entry: Any) -> Optional[FilterResult]:
    """The FilterResult a cache entry stands for, with the task's current records (their
    titles may have changed), or None when the entry does not fit."""
    try:
        faces = entry["faces"]
        if len(faces) != len(task.faces):
            return None
        verdicts = [FaceVerdict(rec, i, float(f["qsize"]), [Check(*c) for c in f["checks"]],
                                None if f["measures"] is None else CropMeasures(**f["measures"]))
                    for (i, rec), f in zip(task.faces, faces)]
    except (KeyError, TypeError, ValueError):
        return None
    return FilterResult(task.source_path, verdicts)


def read_cache(path: Path) -> dict:
    """filter_cache.json's entries; {} when missing, damaged or of another version."""
    data = read_json_or_none(path)
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION \
            or not isinstance(data.get("images"), dict):
        return {}
    return data["images"]


def write_cache(path: Path, images: dict) -> None:
    """filter_cache.json, entry by entry (the bytes of json.dumps of the whole, indent
    None), from entries held as dicts or as their JSON text."""
    with atomic_open(path, "wb") as f:
        f.write(f'{{"version": {CACHE_VERSION}, "images": {{'.encode())
        for n, (key, entry) in enumerate(images.items()):
            text = entry if isinstance(entry, str) else json.dumps(entry)
            f.write(f'{", " if n else ""}{json.dumps(key)}: {text}'.encode())
        f.write(b"}}\n")


def _plain(v: Any) -> Any:
    """A check value as JSON has it (numpy scalars to Python, tuples to lists)."""
    return json.loads(json.dumps(json_safe(v), default=lambda x: x.item() if hasattr(x, "item") else str(x)))
