"""Find every face in every original with dlib and write faces.json.

For each image: decode once at a reduced size (the integer `shrink`), detect faces, predict
68 landmarks per face, and write one record per face with NVIDIA's metfaces.json keys, so
`metfaces-build align` (and NVIDIA's own script) can crop them. Rect, landmarks and shrink
are in the shrunk frame: full-resolution pixel = (p + 0.5) * shrink.

shrink rule: shrink = ceil(long side / --max-side) (default 1024), so detection sees at
most --max-side pixels a side. JPEGs decode directly at 1/2, 1/4 or 1/8 scale (DCT scaling)
when that divides shrink; the rest is an exact integer box reduction (Image.reduce). Both
map pixel centres exactly as (p + 0.5) * shrink. `shrink_method` records what was done.

smallest face: faces whose crop could not reach --min-face original pixels (default 1024:
the filter's resolution minimum at align's default size) are not searched for: upsampling
stops where the detector already finds the smallest face worth keeping, so a 16 MP photo
needs none, and the cascade's CNN runs on a copy reduced as far as that allows.
--min-face 0 scans as finely as --upsample / --cnn-upsample say.

detectors:
  hog      dlib's HOG detector (default; --upsample, default 1): fast, misses more
           faces in paintings
  cnn      dlib's MMOD CNN (--cnn-upsample, default 0): better recall, ~20x slower
  cascade  HOG first; the CNN runs only where HOG's best score is below --cascade-score
           (nothing found, or unsure); CNN faces not overlapping a HOG face are added

face_idx: faces of one image are numbered by decreasing box area, then top, then left.
No EXIF transposition (coordinates are in the stored frame, as the aligner loads it); an
EXIF orientation other than 1 is warned about and recorded.

Every image gets one line in the journal (DIR/detect.jsonl; with --images, next to --out
as NAME.detect.jsonl): status ok | no_face | bad_content | too_large | missing_source, a
reason, and its faces. A rerun skips images already ok/no_face with the same settings
and the same content (--force redoes them) and retries failed ones. faces.json is rebuilt
from the journal. Content: the sha256 fetch recorded in objects.jsonl (never rehashed;
each line and face record carries it as `source_sha256`), or size and mtime for --images;
an original whose content changed is detected again, one that left objects.jsonl (withdrawn)
takes its faces out of faces.json. The summary counts detector calls and the faces added,
removed and moved (same face_idx, other face_spec) against the previous run.

inputs: --work DIR reads DIR/objects.jsonl (status ok lines; falls back to every image in
DIR/originals when it is absent) and writes DIR/faces.json; or --images DIR --out FILE
takes every image file directly in DIR (obj_id = file stem).

exit status: 0 every image ok or no_face; 1 some images failed (each recorded in the
journal with its reason); 2 usage error (bad flag, missing folder or model file).

examples:
  metfaces-build detect --work ./metfaces-work
  metfaces-build detect --images ./paintings --out faces.json --detector cascade
  # on a Dask cluster (work dir and models on a filesystem every worker shares)
  metfaces-build detect --work /shared/metfaces-work --models-dir /shared/models \\
      --executor dask --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

from ..core.records import FaceKey, obj_id_sort_key
from ..infra.stage import (StageSummary, executor_opt, force_opt, opt, quiet_opt, scheduler_opt,
                           workers_opt)
from ..infra.workdir import DETECT_DONE, JournalDamage, Work, as_work, file_stat_key, reusable_detections

DETECTORS = ("hog", "cnn", "cascade")
DEFAULT_MAX_SIDE = 1024
DEFAULT_UPSAMPLE = 1
DEFAULT_CNN_UPSAMPLE = 0
# HOG's best score below this sends an image to the CNN in cascade mode. HOG scores of
# clear faces are mostly > 1; painted faces HOG half-sees score around 0-0.5.
DEFAULT_CASCADE_SCORE = 0.6
# The smallest face worth finding: its crop side (qsize, full-resolution pixels) must reach
# the filter's resolution minimum, which by default is align's output size (no upscaling).
DEFAULT_MIN_FACE = 1024
# A face's crop side is at most this many detector-box sides (measured on dlib's photos,
# the teaser crops and the paintings: at most 2.24 for HOG boxes, 1.98 for CNN boxes).
QSIZE_PER_BOX = 2.5
# Smallest box side each detector finds without upsampling: HOG's window is 80 px (boxes down
# to 73 px are found); the CNN finds 80 px boxes, so it is shrunk only to keep >= 100 px.
HOG_MIN_BOX = 80
CNN_MIN_BOX = 100
# A CNN face overlapping a HOG face by this IoU (or containing its centre) is the same face.
SAME_FACE_IOU = 0.3
JPEG_DRAFT_SCALES = (8, 4, 2)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
DONE_STATUSES = DETECT_DONE
JOURNAL_VERSION = 1


# ---- public API ------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """One face in the frame of the image given: dlib rect (l, t, r, b), 68 (x, y)."""
    rect: tuple
    landmarks: tuple
    score: float
    detector: str  # "hog" or "cnn"
    subdetector: Optional[int] = None  # HOG's pose filter index; None for the CNN

    @property
    def area(self) -> int:
        l, t, r, b = self.rect
        return (r - l + 1) * (b - t + 1)


IO = "input and output"
DETECTION = "detection"


@dataclass(frozen=True)
class DetectOptions:
    """Options of the detect stage (names and defaults of its CLI flags). The first five
    decide which faces are found and are recorded with each result (`signature`)."""
    detector: str = opt("hog", "hog (fast), cnn (better, ~20x slower), cascade",
                        choices=DETECTORS, group=DETECTION, recipe=True)
    upsample: int = opt(DEFAULT_UPSAMPLE, "HOG: upsample N times (smaller faces)",
                        metavar="N", limits=">= 0", group=DETECTION, recipe=True)
    cnn_upsample: int = opt(DEFAULT_CNN_UPSAMPLE, "CNN: upsample N times (~4x time each)",
                            metavar="N", limits=">= 0", group=DETECTION, recipe=True)
    cascade_score: float = opt(DEFAULT_CASCADE_SCORE, "cascade: CNN when HOG's best < S",
                               metavar="S", group=DETECTION, recipe=True)
    max_side: int = opt(DEFAULT_MAX_SIDE, "shrink = ceil(long side / PX)", metavar="PX",
                        limits=">= 1", group=DETECTION, recipe=True)
    max_pixels: Optional[int] = opt(None, "refuse larger images", metavar="N",
                                    limits=">= 1", shown="250,000,000", group=DETECTION)
    # smallest crop side (full-res px) worth finding; 0: scan as fine as the upsampling says
    min_face: int = opt(DEFAULT_MIN_FACE, "smallest face worth finding; 0: any",
                        metavar="PX", limits=">= 0", group=DETECTION, recipe=True)
    models_dir: Optional[str] = opt(None, "folder of the dlib .dat files", metavar="DIR",
                                    shown="$METFACES_MODELS", group=DETECTION,
                                    recipe=True)
    images: Optional[str] = opt(None, "detect in every image of DIR instead", metavar="DIR",
                                group=IO)
    out: Optional[str] = opt(None, "faces.json to write (with --images)", metavar="FILE",
                             group=IO)
    workers: int = workers_opt()
    force: bool = force_opt()
    quiet: bool = quiet_opt()
    executor: str = executor_opt()
    scheduler: Optional[str] = scheduler_opt()

    def signature(self) -> dict:
        """The settings a journal line must match to be reused."""
        d = {k: getattr(self, k) for k in SETTINGS}
        if self.detector == "hog":
            d.pop("cnn_upsample")
            d.pop("cascade_score")
        elif self.detector == "cnn":
            d.pop("upsample")
            d.pop("cascade_score")
        d["version"] = JOURNAL_VERSION
        return d


SETTINGS = ("detector", "upsample", "cnn_upsample", "cascade_score", "max_side")


@dataclass
class DetectSummary(StageSummary):
    """detect's outcome: `counts` by image status, `faces` found, `reused` images;
    `detector_calls` images decoded and run through the detector now; `dropped` images
    no longer in the input (withdrawn); `changes` faces added / removed / moved against
    the previous run, with `changed_objects` the obj_ids concerned."""
    faces: int = 0
    reused: int = 0
    detector_calls: int = 0
    dropped: int = 0
    held: int = 0  # images kept as they were: a damaged objects.jsonl line may describe them
    changes: dict = field(default_factory=dict)
    changed_objects: list = field(default_factory=list)


@dataclass
class DetectorRun:
    detections: list
    cnn_ran: bool = False


def detect_faces(image, detector: str = "hog", upsample: int = DEFAULT_UPSAMPLE,
                 models=None, cnn_upsample: int = DEFAULT_CNN_UPSAMPLE,
                 cascade_score: float = DEFAULT_CASCADE_SCORE, min_face: int = 0) -> list:
    """Faces (list of Detection, in face_idx order) in a PIL image or HxW(x3) uint8 array,
    in that image's own pixel frame (no shrinking here; see `load_shrunk`). Every face the
    scan can find unless `min_face` (crop side in this image's pixels) says otherwise."""
    opts = DetectOptions(detector=detector, upsample=upsample, cnn_upsample=cnn_upsample,
                         cascade_score=cascade_score, min_face=min_face)
    _check_detector(detector)
    if models is None:
        from ..infra.models import load_models, resolve_models
        models = load_models(resolve_models(need_cnn=detector != "hog"))
    return run_detector(as_rgb_array(image), opts, models).detections


def predict_landmarks(image, rect, models=None) -> tuple:
    """68 (x, y) integer landmarks for a face box (l, t, r, b), with dlib's predictor."""
    import dlib
    if models is None:
        from ..infra.models import load_models, resolve_models
        models = load_models(resolve_models())
    shape = models.predictor(as_rgb_array(image), dlib.rectangle(*[int(v) for v in rect]))
    return tuple((p.x, p.y) for p in shape.parts())


def as_rgb_array(image):
    """A C-contiguous uint8 array dlib accepts (RGB or grayscale), from PIL or numpy."""
    import numpy as np
    if hasattr(image, "mode"):
        image = to_rgb8(image)
    arr = np.ascontiguousarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an HxW or HxWx3 uint8 image, got {arr.dtype} {arr.shape}")
    return arr


def _check_detector(detector: str) -> None:
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r} (choose {', '.join(DETECTORS)})")


# ---- detection on one array -------------------------------------------------------------

def run_detector(arr, opts: DetectOptions, models, shrink: int = 1) -> DetectorRun:
    """Detect (hog / cnn / cascade), predict landmarks, order by face_idx rule.

    `shrink` is how much `arr` was reduced from the original: with `opts.min_face`, no
    scan looks for faces smaller than a crop of min_face original pixels needs."""
    hog_up = scan_upsample(opts.upsample, smallest_box(opts.min_face, shrink), HOG_MIN_BOX)
    if opts.detector == "hog":
        boxes, cnn_ran = hog_boxes(arr, hog_up, models), False
    elif opts.detector == "cnn":
        box = smallest_box(opts.min_face, shrink)
        boxes, cnn_ran = cnn_boxes(arr, scan_upsample(opts.cnn_upsample, box, CNN_MIN_BOX),
                                   models), True
    else:
        boxes, cnn_ran = cascade_boxes(arr, replace(opts, upsample=hog_up), models, shrink)
    dets = [_with_landmarks(arr, box, models) for box in boxes]
    return DetectorRun(order_faces(dets), cnn_ran)


@dataclass(frozen=True)
class _Box:
    rect: tuple
    score: float
    detector: str
    subdetector: Optional[int]


def hog_boxes(arr, upsample: int, models) -> list:
    rects, scores, idx = models.hog.run(arr, upsample, 0.0)
    return [_Box(_rect_tuple(r), float(s), "hog", int(i)) for r, s, i in zip(rects, scores, idx)]


def cnn_boxes(arr, upsample: int, models) -> list:
    return [_Box(_rect_tuple(d.rect), float(d.confidence), "cnn", None)
            for d in models.cnn(arr, upsample)]


def cascade_boxes(arr, opts: DetectOptions, models, shrink: int = 1):
    """HOG's faces; plus the CNN's new faces when HOG's best score is below the bar. The
    CNN runs at the coarsest scale that still finds a face worth keeping (`cnn_reduce`)."""
    hog = hog_boxes(arr, opts.upsample, models)
    if hog and max(b.score for b in hog) >= opts.cascade_score:
        return hog, False
    box = smallest_box(opts.min_face, shrink)
    factor = cnn_reduce(box)
    if factor > 1:
        cnn = reduced_cnn_boxes(arr, factor, models)
    else:
        cnn = cnn_boxes(arr, scan_upsample(opts.cnn_upsample, box, CNN_MIN_BOX), models)
    new = [c for c in cnn if not any(same_face(c.rect, h.rect) for h in hog)]
    return hog + new, True


def smallest_box(min_face: int, shrink: int) -> float:
    """Side of the smallest detector box (in the shrunk frame) whose face could have a crop
    side of `min_face` original pixels; 0 when there is no minimum."""
    return min_face / (QSIZE_PER_BOX * shrink) if min_face > 0 else 0.0


def scan_upsample(upsample: int, box: float, min_box: int) -> int:
    """The fewest upsamplings (at most `upsample`) that still find boxes of side `box`:
    each doubles the image, halving the smallest box the detector finds."""
    u = 0
    while u < upsample and min_box / 2 ** u > box:
        u += 1
    return u


def cnn_reduce(box: float) -> int:
    """Integer factor the CNN's input can be reduced by and still find boxes of side `box`."""
    return max(1, int(box // CNN_MIN_BOX))


def reduced_cnn_boxes(arr, factor: int, models) -> list:
    """The CNN on `arr` box-reduced by `factor` (about factor**2 times faster); boxes are
    mapped back to `arr`'s frame (pixel p of the reduced copy covers p*f .. p*f + f - 1)."""
    import numpy as np
    from PIL import Image
    small = np.asarray(Image.fromarray(arr).reduce(factor))
    return [_Box((l * factor, t * factor, r * factor + factor - 1, b * factor + factor - 1),
                 box.score, box.detector, box.subdetector)
            for box in cnn_boxes(small, 0, models)
            for l, t, r, b in [box.rect]]


def same_face(a: tuple, b: tuple) -> bool:
    """Boxes overlap enough (IoU) or one contains the other's centre."""
    from ..core.metrics import box_iou, rect_edges
    return (box_iou(rect_edges(a), rect_edges(b)) >= SAME_FACE_IOU
            or _contains_centre(a, b) or _contains_centre(b, a))


def _contains_centre(outer: tuple, inner: tuple) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _rect_tuple(r) -> tuple:
    return (int(r.left()), int(r.top()), int(r.right()), int(r.bottom()))


def _with_landmarks(arr, box: _Box, models) -> Detection:
    import dlib
    shape = models.predictor(arr, dlib.rectangle(*box.rect))
    lm = tuple((int(p.x), int(p.y)) for p in shape.parts())
    return Detection(rect=box.rect, landmarks=lm, score=round(box.score, 6),
                     detector=box.detector, subdetector=box.subdetector)


def order_faces(dets: list) -> list:
    """face_idx order: decreasing box area, then top, then left (deterministic and
    detector-independent: the main sitter comes first)."""
    return sorted(dets, key=lambda d: (-d.area, d.rect[1], d.rect[0], d.rect[2], d.rect[3]))


# ---- decoding at the detection size -------------------------------------------------------

@dataclass
class ShrunkImage:
    """The copy detection runs on, and how it was made from the original."""
    pixels: object  # HxWx3 uint8 numpy array
    shrink: int
    method: str
    width: int  # the original's size
    height: int
    mode: str  # the original's PIL mode
    format: str
    exif_orientation: int


def choose_shrink(width: int, height: int, max_side: int) -> int:
    """Smallest integer factor that brings the long side to at most `max_side`."""
    return max(1, math.ceil(max(width, height) / max_side))


def draft_scale(shrink: int, width: int, height: int) -> int:
    """The JPEG DCT scale (8, 4, 2 or 1) to decode at: the largest that divides shrink."""
    for s in JPEG_DRAFT_SCALES:
        if shrink % s == 0 and min(width, height) >= 8 * s:
            return s
    return 1


def load_shrunk(path, max_side: int = DEFAULT_MAX_SIDE, max_pixels: Optional[int] = None) -> ShrunkImage:
    """Decode `path` reduced by the integer shrink; raises images.ImageProblem."""
    from ..infra.images import DEFAULT_MAX_PIXELS, ImageProblem, exif_orientation, open_image
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    head = open_image(path, max_pixels, load=False)
    w, h, fmt, mode, orient = head.width, head.height, head.format or "", head.mode, exif_orientation(head)
    head.close()
    shrink = choose_shrink(w, h, max_side)
    scale = draft_scale(shrink, w, h) if fmt == "JPEG" else 1
    draft = ("RGB", (w // scale, h // scale)) if scale > 1 else None
    im = open_image(path, max_pixels, draft=draft)
    steps = []
    if scale > 1:
        if im.size != (-(-w // scale), -(-h // scale)):
            im.close()
            raise ImageProblem("bad_content", f"JPEG draft gave {im.size}, expected 1/{scale} of {w}x{h}")
        steps.append(f"jpeg-draft/{scale}")
    import numpy as np
    try:
        rgb = to_rgb8(im)
        rest = shrink // scale
        if rest > 1:
            rgb = rgb.reduce(rest)
            steps.append(f"reduce/{rest}")
        pixels = np.asarray(rgb)
    except (OSError, ValueError) as e:  # a decoder error surfacing late
        raise ImageProblem("bad_content", f"cannot convert {path} ({mode}) to RGB: {e}") from None
    finally:
        im.close()
    return ShrunkImage(pixels=pixels, shrink=shrink, method="+".join(steps) or "none",
                       width=w, height=h, mode=mode, format=fmt, exif_orientation=orient)


def to_rgb8(im):
    """8-bit RGB as the aligner sees it (Pillow's convert('RGB')), except that 16-bit and
    float greyscale are scaled to 0-255 first rather than clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np
        from PIL import Image
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


# ---- the stage: tasks, one image, journal ------------------------------------------------

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
    def version(self):
        from ..infra.workdir import SourceVersion
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
    from ..infra.models import load_models
    _WORKER["models"] = load_models(model_paths)
    _WORKER["opts"] = opts
    _WORKER["max_pixels"] = max_pixels


def detect_task(task: DetectTask) -> DetectResult:
    """Detect faces in one source image; failures come back as statuses."""
    from ..infra.images import ImageProblem
    from ..infra.files import file_digest
    opts: DetectOptions = _WORKER["opts"]
    res = DetectResult(task.obj_id, task.source_path, "ok", settings=opts.signature(),
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
        status = "missing_source" if isinstance(e, (FileNotFoundError, IsADirectoryError)) else "bad_content"
        res.status, res.reason = status, f"cannot read {task.path}: {e}"
        return res
    res.width, res.height, res.mode = shrunk.width, shrunk.height, shrunk.mode
    res.shrink, res.shrink_method = shrunk.shrink, shrunk.method
    res.exif_orientation = shrunk.exif_orientation
    run = run_detector(shrunk.pixels, opts, _WORKER["models"], shrunk.shrink)
    res.cnn_ran = run.cnn_ran
    res.faces = [face_record(task, res, i, d).to_json() for i, d in enumerate(run.detections)]
    if not res.faces:
        res.status, res.reason = "no_face", f"{opts.detector} found no face"
    return res


_PREFETCH: dict = {}


def prefetch(path: str, max_side: int, max_pixels: Optional[int]) -> None:
    """Start decoding `path` (load_shrunk) on a helper thread: Pillow's decoder and dlib's
    detector release the GIL, so a serial run decodes the next image while it detects in
    this one (and the first image while the models load). Its errors surface on use."""
    from concurrent.futures import ThreadPoolExecutor
    if "pool" not in _WORKER:
        _WORKER["pool"] = ThreadPoolExecutor(1, thread_name_prefix="decode")
    _PREFETCH[path] = _WORKER["pool"].submit(load_shrunk, path, max_side, max_pixels)


def face_record(task: DetectTask, res: DetectResult, face_idx: int, det: Detection):
    from ..core.records import FaceRecord, FaceSpec
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


# ---- inputs -------------------------------------------------------------------------------

def tasks_from_work(work) -> list:
    """objects.jsonl `ok` lines (latest line per id), else every image in originals/."""
    return tasks_and_damage(work)[0]


def tasks_and_damage(work) -> tuple:
    """(tasks, damaged objects.jsonl lines or None): `tasks_from_work`, and the journal's
    damaged lines, whose objects must keep their earlier detections."""
    from ..infra.files import check_relative_path
    from ..core.records import as_object_id
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
        if d.get("status") != "ok" or check_relative_path(rel) or check_relative_path(oid) or "/" in oid:
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
    from ..core.errors import UsageError
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


# ---- the stage ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StagePaths:
    out: Path
    journal: Path
    damage: Optional[JournalDamage] = None  # damaged objects.jsonl lines (work directory)


def stage_inputs(work: Optional[Work], opts: DetectOptions):
    """(tasks, paths) from a work directory or opts.images/out; UsageError on a bad
    combination."""
    from ..core.errors import UsageError
    if opts.images:
        if work is not None:
            raise UsageError("give either --work or --images, not both")
        if not opts.out:
            raise UsageError("--images needs --out FILE (where to write faces.json)")
        out = Path(opts.out)
        tasks = tasks_from_folder(Path(opts.images))
        return tasks, StagePaths(out, out.with_name(out.stem + ".detect.jsonl"))
    if opts.out:
        raise UsageError("--out goes with --images; with --work the output is DIR/faces.json")
    work = as_work(work)
    if not work.path.is_dir():
        raise UsageError(f"work directory not found: {work.path} (run `metfaces-build fetch` "
                         "first, or use --images DIR --out FILE)")
    tasks, damage = tasks_and_damage(work)
    return tasks, StagePaths(work.faces_json, work.detect_journal, damage)


def detect(work: Optional[Work], opts: DetectOptions = DetectOptions()) -> DetectSummary:
    """Detect faces in every fetched original of `work` (or in `opts.images`), write
    faces.json and the journal, and return counts by image status. Resumes: images
    already done with the same settings are reused unless `opts.force`. One writer per
    work directory (a second run fails at once, naming the holder)."""
    from ..infra.lock import work_lock
    tasks, paths = stage_inputs(work, opts)
    with work_lock(paths.out.parent, command="detect"):
        return _detect_locked(opts, tasks, paths)


def _detect_locked(opts: DetectOptions, tasks: list, paths: "StagePaths") -> DetectSummary:
    import time

    from ..infra.executors import Progress, make_executor
    from ..infra.files import JsonlAppender, atomic_write_json, read_json_or_none, write_jsonl
    from ..infra.workdir import latest_records
    from ..infra.models import resolve_models
    t0 = time.monotonic()
    model_paths = resolve_models(opts.models_dir, need_cnn=opts.detector != "hog")
    model_paths = replace(model_paths, predictor=model_paths.predictor.absolute(),
                          cnn=model_paths.cnn and model_paths.cnn.absolute())
    before = latest_records(paths.journal, "source_path")  # the previous run, for `changes`
    done = {} if opts.force else reusable_detections(
        before.values(), {t.source_path: t.version for t in tasks}, opts.signature())
    by_path = {t.source_path: t for t in tasks}
    done = {sp: _with_version(d, by_path[sp]) for sp, d in done.items()}
    # an object a damaged objects.jsonl line may describe is not gone: its lines stay
    held = {sp: d for sp, d in before.items() if sp not in by_path and paths.damage
            and paths.damage.may_hide(d.get("obj_id"))}
    # absolute paths: a Dask worker's current directory is not ours
    todo = [replace(t, path=os.path.abspath(t.path)) for t in tasks if t.source_path not in done]
    serial = opts.executor == "local" and min(opts.workers, len(todo)) <= 1
    if serial and todo:  # decode one image ahead; the first while the models load
        todo = [replace(t, next_path=n.path) for t, n in zip(todo, todo[1:])] + todo[-1:]
        prefetch(todo[0].path, opts.max_side, opts.max_pixels)
    results = dict(done)
    n_faces = sum(len(r["faces"]) for r in results.values())
    executor = make_executor(opts.executor, min(opts.workers, max(1, len(todo))),
                             opts.scheduler, init_worker, (model_paths, opts, opts.max_pixels))
    with Progress(len(todo), "detect", opts.quiet, unit="img") as prog, \
            JsonlAppender(paths.journal) as journal:
        for res in executor.imap(detect_task, todo):
            journal.write(res.to_json())
            results[res.source_path] = res.to_json()
            _warn(prog, res)
            n_faces += len(res.faces)
            prog.update(faces=n_faces)
    ordered = [results[t.source_path] for t in tasks] + list(held.values())
    results.update(held)
    faces = [f for r in ordered for f in r.get("faces") or []]
    if ordered != list(before.values()) or not paths.out.exists():  # no change: no rewrite
        write_jsonl(paths.journal, ordered)  # compact: one line per image, in task order
        atomic_write_json(paths.out, faces)
    elif read_json_or_none(paths.out) != faces:
        atomic_write_json(paths.out, faces)
    s = _summary(ordered, len(done), paths, time.monotonic() - t0)
    s.detector_calls = sum(1 for t in todo if results[t.source_path].get("status") in DONE_STATUSES)
    s.dropped = len(set(before) - set(results))
    if paths.damage:
        s.notes += paths.damage.notes()
        s.held = len(held)
        s.failed += len(paths.damage.lines)
        s.lines.append(f"detect: {len(held)} image(s) kept as they were: objects.jsonl has "
                       f"{len(paths.damage.lines)} damaged line(s) (see the messages above)")
    s.changes, s.changed_objects = face_changes(before.values(), ordered)
    if before and (any(s.changes.values()) or s.dropped):  # an update, not a first run
        s.lines.append("detect changes: " + ", ".join(f"{v} faces {k}" for k, v in s.changes.items())
                       + (f"; {s.dropped} images no longer in the input" if s.dropped else ""))
    return s


def _with_version(line: dict, task: DetectTask) -> dict:
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
        return {(str(f.get("obj_id")), f.get("face_idx")): f.get("face_spec")
                for r in lines for f in (r.get("faces") if isinstance(r.get("faces"), list) else [])
                if isinstance(f, dict) and isinstance(f.get("face_idx"), int)}
    old, new = faces_of(before), faces_of(after)
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    moved = {k for k in new.keys() & old.keys() if new[k] != old[k]}
    objs = sorted({k[0] for k in added | removed | moved}, key=obj_id_sort_key)
    return {"added": len(added), "removed": len(removed), "moved": len(moved)}, objs


def _warn(prog, res: DetectResult) -> None:
    if res.exif_orientation not in (1, 0):
        prog.write(f"warning: {res.source_path}: EXIF orientation {res.exif_orientation}; "
                   "coordinates are in the stored (untransposed) frame, as the aligner loads it")
    if res.status not in DONE_STATUSES:
        prog.write(f"{res.status}: {res.source_path}: {res.reason}")


def _summary(ordered: list, reused: int, paths: StagePaths, elapsed: float) -> DetectSummary:
    from ..infra.executors import summarize
    from ..infra.workdir import status_counts
    counts = dict(status_counts(ordered))
    n_faces = sum(len(r.get("faces") or []) for r in ordered)
    cnn = sum(1 for r in ordered if r.get("cnn_ran"))
    rotated = sum(1 for r in ordered if r.get("exif_orientation", 1) not in (0, 1))
    line = (summarize(counts, "detect") + f"; {n_faces} faces -> {paths.out}"
            + (f"; CNN ran on {cnn} images" if cnn else "")
            + (f"; {rotated} with EXIF orientation != 1 (not transposed)" if rotated else "")
            + (f"; {reused} images reused from {paths.journal.name}" if reused else ""))
    failed = sum(v for k, v in counts.items() if k not in DONE_STATUSES)
    return DetectSummary("detect", counts, {"faces": paths.out, "journal": paths.journal},
                         elapsed, failed, [line], faces=n_faces, reused=reused)
