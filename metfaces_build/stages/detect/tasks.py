"""detect's tasks: one per source image (from objects.jsonl, originals/ or a folder), and
the worker that detects in one image (models loaded once per process, the next image
decoded ahead in serial runs)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ...core.errors import UsageError
from ...core.records import FaceKey, FaceRecord, FaceSpec, as_object_id, obj_id_sort_key
from ...core.status import BAD_CONTENT, MISSING_SOURCE, NO_FACE, OK
from ...infra.files import check_relative_path, file_digest
from ...infra.models import load_models
from ...infra.workdir import as_work
from .decode import load_shrunk
from .detector import Detection, run_detector
from .journal import SourceVersion, file_stat_key
from .options import IMAGE_SUFFIXES, DetectOptions


@dataclass(frozen=True)
class DetectTask:
    """One source image and the metadata its face records carry."""
    obj_id: str
    source_path: str  # relative to the input root, as written in the records
    path: str  # absolute path to read
    title: str = ""
    artist: str = ""
    department: str = ""
    source_url: str = ""
    meta_url: str = ""
    sha256: str = ""  # from objects.jsonl (work directories)
    md5: str = ""
    stat: str = ""    # "size:mtime_ns" (image folders)
    # serial runs only: the image to decode in the background while this one is detected
    next_path: str = ""

    @property
    def version(self) -> SourceVersion:
        return SourceVersion(self.sha256, self.md5, self.stat)


@dataclass
class DetectResult:
    """One journal line: the outcome for one image, with its face records."""
    obj_id: str
    source_path: str
    status: str
    reason: str = ""
    source_md5: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    shrink: int = 0
    shrink_method: str = ""
    exif_orientation: int = 1
    cnn_ran: bool = False
    settings: dict = field(default_factory=dict)
    faces: list = field(default_factory=list)  # FaceRecord JSON dicts
    source_sha256: str = ""
    source_stat: str = ""

    def to_json(self) -> dict:
        return asdict(self)
_WORKER: dict = {}


def init_worker(model_paths, opts: DetectOptions, max_pixels: Optional[int]) -> None:
    """Per-process setup: load models once (never at import)."""
    _WORKER["models"] = load_models(model_paths)
    _WORKER["opts"] = opts
    _WORKER["max_pixels"] = max_pixels


def detect_task(task: DetectTask) -> DetectResult:
    """Detect faces in one source image; failures come back as statuses."""
    from ...infra.images import ImageProblem  # loads PIL and numpy: not at import (--help)
    opts: DetectOptions = _WORKER["opts"]
    res = DetectResult(task.obj_id, task.source_path, OK, settings=opts.signature(),
                       source_sha256=task.sha256, source_stat=task.stat)
    pending = _PREFETCH.pop(task.path, None)
    if task.next_path:
        prefetch(task.next_path, opts.max_side, _WORKER["max_pixels"])
    try:
        res.source_md5 = file_digest(task.path)
        shrunk = pending.result() if pending else \
            load_shrunk(task.path, opts.max_side, _WORKER["max_pixels"])
    except ImageProblem as e:
        res.status, res.reason = e.status, e.reason
        return res
    except OSError as e:
        status = MISSING_SOURCE if isinstance(e, (FileNotFoundError, IsADirectoryError)) else BAD_CONTENT
        res.status, res.reason = status, f"cannot read {task.path}: {e}"
        return res
    res.width, res.height, res.mode = shrunk.width, shrunk.height, shrunk.mode
    res.shrink, res.shrink_method = shrunk.shrink, shrunk.method
    res.exif_orientation = shrunk.exif_orientation
    run = run_detector(shrunk.pixels, opts, _WORKER["models"], shrunk.shrink)
    res.cnn_ran = run.cnn_ran
    res.faces = [face_record(task, res, i, d).to_json() for i, d in enumerate(run.detections)]
    if not res.faces:
        res.status, res.reason = NO_FACE, f"{opts.detector} found no face"
    return res
_PREFETCH: dict = {}


def prefetch(path: str, max_side: int, max_pixels: Optional[int]) -> None:
    """Start decoding `path` (load_shrunk) on a helper thread: Pillow's decoder and dlib's
    detector release the GIL, so a serial run decodes the next image while it detects in
    this one (and the first image while the models load). Its errors surface on use."""
    if "pool" not in _WORKER:
        _WORKER["pool"] = ThreadPoolExecutor(1, thread_name_prefix="decode")
    _PREFETCH[path] = _WORKER["pool"].submit(load_shrunk, path, max_side, max_pixels)


def face_record(task: DetectTask, res: DetectResult, face_idx: int, det: Detection):
    return FaceRecord(
        obj_id=task.obj_id, source_path=task.source_path, face_idx=face_idx,
        face_spec=FaceSpec(rect=det.rect, landmarks=det.landmarks, shrink=res.shrink),
        meta_url=task.meta_url, source_url=task.source_url, source_md5=res.source_md5,
        image_path=f"images/{FaceKey(task.obj_id, face_idx).crop_name}", title=task.title,
        artist_display_name=task.artist, detector=det.detector, score=det.score,
        subdetector=det.subdetector, image_width=res.width, image_height=res.height,
        shrink_method=res.shrink_method, exif_orientation=res.exif_orientation,
        department=task.department or None,
        extra={"source_sha256": task.sha256} if task.sha256 else {})


def tasks_from_work(work) -> list:
    """objects.jsonl `ok` lines (latest line per id), else every image in originals/."""
    return tasks_and_damage(work)[0]


def tasks_and_damage(work) -> tuple:
    """(tasks, damaged objects.jsonl lines or None): `tasks_from_work`, and the journal's
    damaged lines, whose objects must keep their earlier detections."""
    work = as_work(work)
    if not work.objects_jsonl.exists():
        return tasks_from_folder(work.originals_dir, prefix="originals/"), None
    tasks = []
    objects, damage = work.objects_checked()
    for oid, d in objects.items():
        if not isinstance(oid, int) or as_object_id(oid) is None:  # fetch writes int ids
            continue
        oid, rel = str(oid), d.get("path") or ""
        if not isinstance(rel, str):
            continue
        if d.get("status") != OK or check_relative_path(rel) or check_relative_path(oid) or "/" in oid:
            continue
        tasks.append(DetectTask(obj_id=oid, source_path=rel, path=str(work.path / rel),
                                title=str(d.get("title") or ""), artist=str(d.get("artist") or ""),
                                department=str(d.get("department") or ""),
                                source_url=str(d.get("image_url") or ""),
                                meta_url=str(d.get("meta_url") or ""),
                                sha256=str(d.get("sha256") or ""), md5=str(d.get("md5") or ""),
                                # no checksum recorded (a hand-made journal): size and mtime
                                stat="" if d.get("sha256") else file_stat_key(work.path / rel)))
    return sorted(tasks, key=lambda t: obj_id_sort_key(t.obj_id)), damage or None


def tasks_from_folder(folder: Path, prefix: str = "") -> list:
    """Every image file directly in `folder` (by suffix), obj_id = stem, in id order."""
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}")
    seen: dict = {}
    tasks = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        if p.stem in seen:
            raise UsageError(f"{folder}: {seen[p.stem]} and {p.name} would both be obj_id "
                             f"{p.stem!r}; rename one")
        seen[p.stem] = p.name
        tasks.append(DetectTask(obj_id=p.stem, source_path=prefix + p.name, path=str(p),
                                stat=file_stat_key(p)))
    return sorted(tasks, key=lambda t: obj_id_sort_key(t.obj_id))
