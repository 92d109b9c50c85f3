"""detect's journal (detect.jsonl): what an image *is* (its content key), which lines a
rerun may reuse, a reused line brought up to date, and the faces an update changed."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Union

from ...core.records import FaceKey, obj_id_sort_key
from ...core.status import DETECT_DONE
from ...infra.workdir import latest

if TYPE_CHECKING:  # tasks imports this module
    from .tasks import DetectTask


class SourceVersion:
    """The content of one source image as far as known without reading it: fetch's
    sha256 and md5 (objects.jsonl; never rehashed), or size and mtime for a plain folder."""
    __slots__ = ("sha256", "md5", "stat")

    def __init__(self, sha256: str = "", md5: str = "", stat: str = ""):
        self.sha256, self.md5, self.stat = sha256 or "", md5 or "", stat or ""

    def __repr__(self) -> str:
        return f"SourceVersion(sha256={self.sha256!r}, md5={self.md5!r}, stat={self.stat!r})"


def file_stat_key(path: Union[str, os.PathLike]) -> str:
    """"size:mtime_ns" of a file (the content key of a folder image), "" when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def same_source(line: dict, version: SourceVersion) -> bool:
    """Was a detect journal line made from this content? By sha256 when fetch knows it (a
    line from before sha256 was recorded matches on the md5 it measured), else by the
    folder file's size and mtime."""
    if version.sha256:
        if line.get("source_sha256"):
            return line["source_sha256"] == version.sha256
        return bool(version.md5) and line.get("source_md5") == version.md5
    return line.get("source_stat", "") == version.stat


def reusable_detections(journal_rows: Iterable[dict], wanted, signature: dict) -> dict:
    """Detect journal lines (latest per source_path in `wanted`) a rerun keeps: done
    (ok / no_face) with the same detection settings and, when `wanted` maps each
    source_path to its SourceVersion, of the same content (`same_source`)."""
    rows = latest((d for d in journal_rows if d.get("source_path") in wanted), "source_path")
    versions = wanted if isinstance(wanted, dict) else None
    return {k: d for k, d in rows.items()
            if d.get("status") in DETECT_DONE and d.get("settings") == signature
            and isinstance(d.get("faces"), list) and all(_face_like(f) for f in d["faces"])
            and (versions is None or same_source(d, versions[k]))}


def _face_like(f) -> bool:
    """A face record as detect writes it (a damaged journal line is detected again)."""
    return isinstance(f, dict) and isinstance(f.get("face_idx"), int) and isinstance(f.get("face_spec"), dict)


def with_version(line: dict, task: DetectTask) -> dict:
    """A reused journal line brought up to date without detecting again: its face records
    take the object's current record fields (a corrected title reaches faces.json) and
    the content key it was matched on (a line from before sha256 was recorded, matched on
    md5, gains it)."""
    meta = {"title": task.title, "artist_display_name": task.artist,
            "source_url": task.source_url, "meta_url": task.meta_url}
    if task.sha256:
        meta["source_sha256"] = task.sha256
    faces = []
    for f in line["faces"]:
        g = {**f, **meta}
        if task.department:
            g["department"] = task.department
        else:
            g.pop("department", None)
        faces.append(g)
    if faces == line["faces"] and (not task.sha256 or line.get("source_sha256") == task.sha256):
        return line
    return {**line, "faces": faces, **({"source_sha256": task.sha256} if task.sha256 else {})}


def face_changes(before, after) -> tuple:
    """({added, removed, moved}, sorted obj_ids concerned) between two sets of detect
    journal lines, matching faces by (obj_id, face_idx): moved = same key, other face_spec."""
    def faces_of(lines) -> dict:
        return {FaceKey(str(f.get("obj_id")), f.get("face_idx")): f.get("face_spec")
                for r in lines for f in (r.get("faces") if isinstance(r.get("faces"), list) else [])
                if isinstance(f, dict) and isinstance(f.get("face_idx"), int)}
    old, new = faces_of(before), faces_of(after)
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    moved = {k for k in new.keys() & old.keys() if new[k] != old[k]}
    objs = sorted({k.obj_id for k in added | removed | moved}, key=obj_id_sort_key)
    return {"added": len(added), "removed": len(removed), "moved": len(moved)}, objs
