"""Rebuilding NVIDIA's `unprocessed/image-{id}.png` layout from a metfaces.json
(--from-json): one job per source image, written as PNG at its recorded source_path and
marked `changed` when its md5 no longer matches the recorded `source_md5`.

Only that layout is written (a `.png` under `unprocessed/`): a source_path from the file is
input, so it is checked before and after symlinks and never reaches a stage's own files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ...core.records import MetObject, as_object_id
from ...core.status import CHANGED, OK, REFUSED
from ...infra.faces import load_faces
from ...infra.files import atomic_open, check_relative_path, file_digest, safe_join
from ...infra.images import ImageProblem, open_image
from .objects import download_into

# --from-json writes only NVIDIA's layout: unprocessed/....png (never the stage's own files)
SOURCE_DIR = "unprocessed"


@dataclass(frozen=True)
class SourceJob:
    """One source image to rebuild from metfaces.json."""
    obj_id: int
    source_url: str
    source_path: str
    source_md5: str
    title: str = ""
    artist: str = ""
    width: Optional[int] = None
    height: Optional[int] = None


def source_jobs(path: str, log: Callable[[str], None]) -> tuple:
    """(jobs, refusals) from a metfaces.json: one job per source image; entries that cannot
    be used (e.g. a source_path with '..') become `refused` MetObjects when their id is valid."""
    loaded = load_faces(path, skip_bad=True, what="--from-json")
    jobs: dict = {}
    for f in loaded.faces:
        oid = as_object_id(f.obj_id)
        if oid is None:
            log(f"skipping face {f.key}: obj_id is not a whole number")
            continue
        if oid not in jobs:
            jobs[oid] = SourceJob(oid, f.source_url, f.source_path, f.source_md5, f.title,
                                  f.artist_display_name, f.image_width, f.image_height)
    refusals = {}
    for b in loaded.bad:
        oid = as_object_id(b.obj_id)
        if oid is None:
            log(f"refused --from-json {b.reason}")
        elif oid not in jobs:
            refusals[oid] = MetObject(oid, REFUSED, b.reason)
    return list(jobs.values()), list(refusals.values())


def source_settled(work: Path, job: SourceJob, status: Optional[str], skip: frozenset) -> bool:
    """Is `job` done already (its journal `status` one a rerun skips, and for ok/changed
    its PNG still there)?"""
    return status in skip and (status not in (OK, CHANGED) or _source_exists(work, job))


def _source_exists(work: Path, job: SourceJob) -> bool:
    if source_path_problem(job.source_path):
        return False  # refuse it (again) rather than trust an earlier ok
    try:
        return safe_join(work, job.source_path).is_file()
    except ValueError:
        return True  # refused again would change nothing


def fetch_source(client, work: Path, job: SourceJob) -> MetObject:
    """Download a metfaces.json source image, write it as PNG at its source_path, compare md5."""
    obj = MetObject(job.obj_id, OK, title=job.title, artist=job.artist, image_url=job.source_url)
    obj.extra["source_path"] = job.source_path
    why = source_path_problem(job.source_path)
    try:
        dest = safe_join(work, job.source_path) if why is None else None
    except ValueError as e:
        why = str(e)
    if dest is not None:  # a symlink inside --work may lead to the stage's own files
        why = _resolved_source_problem(work, dest)
    if why:
        obj.status, obj.reason = REFUSED, f"source_path: {why}"
        return obj
    obj = download_into(client, work, obj, job.source_url)
    if obj.status != OK:
        return obj
    try:
        with open_image(work / obj.path, client.cfg.max_pixels) as im:
            if im.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "1"):
                im = im.convert("RGB")
            with atomic_open(dest, "wb") as f:
                im.save(f, "PNG")
    except ImageProblem as e:
        obj.status, obj.reason = e.status, e.reason
        return obj
    except OSError as e:  # e.g. a folder where the PNG goes
        obj.status, obj.reason = REFUSED, f"source_path: cannot write {job.source_path}: {e.strerror or e}"
        return obj
    png_md5 = file_digest(dest, "md5")
    obj.extra["png_md5"] = png_md5
    obj.extra["source_md5"] = job.source_md5
    verdict = compare_source(png_md5, job.source_md5, (obj.width, obj.height), (job.width, job.height))
    obj.status, obj.reason = verdict
    return obj


def source_path_problem(rel: str) -> Optional[str]:
    """Why --from-json may not write a source image at `rel` (relative to --work), or None.

    Only NVIDIA's layout is written: a `.png` under `unprocessed/`, with no hidden, empty or
    over-long component. Anything else in the work directory (objects.jsonl, api/,
    originals/, faces.json, another stage's folder) belongs to a stage, not to the input.
    """
    why = check_relative_path(rel)
    if why:
        return why
    parts = rel.split("/")
    if "\\" in rel or parts[0] != SOURCE_DIR or len(parts) < 2:
        return f"{_clip(rel)} is not under {SOURCE_DIR}/ (only {SOURCE_DIR}/....png is written)"
    for part in parts[1:]:
        if not part or part in (".", "..") or part.startswith("."):
            return f"{_clip(rel)} has an empty or hidden component"
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            return f"a component of {_clip(rel)} is longer than 255 bytes"
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            return f"{_clip(rel)} contains control characters"
    if not parts[-1].lower().endswith(".png") or len(parts[-1]) <= 4:
        return f"{_clip(rel)} is not a .png file name"
    return None


def _resolved_source_problem(work: Path, dest: Path) -> Optional[str]:
    """The layout rule again on the path after symlinks, plus: not an existing non-file."""
    try:
        rel = dest.relative_to(work.resolve()).as_posix()
    except ValueError:
        return f"{dest} is outside --work"
    why = source_path_problem(rel)
    if why:
        return f"resolves to {why}"
    if dest.exists() and not dest.is_file():
        return f"{rel} exists and is not a regular file"
    return None


def _clip(s: str, n: int = 80) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def compare_source(png_md5: str, source_md5: str, size: tuple, recorded_size: tuple) -> tuple:
    """(status, reason): `changed` when our PNG's md5 differs from source_md5, saying which
    checks agree; an md5 is of a PNG *file*, so another encoder alone can explain it."""
    if not source_md5:
        return OK, "no source_md5 to compare with"
    if png_md5 == source_md5.lower():
        return OK, "PNG md5 matches source_md5"
    if None in recorded_size:
        dims = f"dimensions {size[0]}x{size[1]} (none recorded to compare)"
    elif tuple(size) == tuple(recorded_size):
        dims = f"dimensions agree ({size[0]}x{size[1]})"
    else:
        dims = f"dimensions differ ({size[0]}x{size[1]} now, {recorded_size[0]}x{recorded_size[1]} recorded)"
    return CHANGED, (f"PNG md5 {png_md5} != source_md5 {source_md5}; {dims}: a re-shot image "
                     "or a different PNG encoder")
