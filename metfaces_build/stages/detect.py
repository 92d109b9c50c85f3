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
(--force redoes them) and retries failed ones. faces.json is rebuilt from the journal.

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

from ..core.records import obj_id_sort_key

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
DONE_STATUSES = ("ok", "no_face")
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


@dataclass(frozen=True)
class DetectOptions:
    """Everything that decides which faces are found (recorded with each result)."""
    detector: str = "hog"
    upsample: int = DEFAULT_UPSAMPLE
    cnn_upsample: int = DEFAULT_CNN_UPSAMPLE
    cascade_score: float = DEFAULT_CASCADE_SCORE
    max_side: int = DEFAULT_MAX_SIDE
    # smallest crop side (full-res px) worth finding; 0: scan as fine as the upsampling says
    min_face: int = 0

    def signature(self) -> dict:
        """The settings a journal line must match to be reused."""
        d = asdict(self)
        if self.detector == "hog":
            d.pop("cnn_upsample")
            d.pop("cascade_score")
        elif self.detector == "cnn":
            d.pop("upsample")
            d.pop("cascade_score")
        d["version"] = JOURNAL_VERSION
        return d


@dataclass
class DetectorRun:
    detections: list
    cnn_ran: bool = False


def detect_faces(image, detector: str = "hog", upsample: int = DEFAULT_UPSAMPLE,
                 models=None, cnn_upsample: int = DEFAULT_CNN_UPSAMPLE,
                 cascade_score: float = DEFAULT_CASCADE_SCORE) -> list:
    """Faces (list of Detection, in face_idx order) in a PIL image or HxW(x3) uint8 array,
    in that image's own pixel frame (no shrinking here; see `load_shrunk`)."""
    opts = DetectOptions(detector=detector, upsample=upsample, cnn_upsample=cnn_upsample,
                         cascade_score=cascade_score)
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
    return iou(a, b) >= SAME_FACE_IOU or _contains_centre(a, b) or _contains_centre(b, a)


def iou(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


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
class ImageTask:
    """One source image and the metadata its face records carry."""
    obj_id: str
    source_path: str  # relative to the input root, as written in the records
    path: str  # absolute path to read
    title: str = ""
    artist: str = ""
    department: str = ""
    source_url: str = ""
    meta_url: str = ""
    # serial runs only: the image to decode in the background while this one is detected
    next_path: str = ""


@dataclass
class ImageResult:
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

    def to_json(self) -> dict:
        return asdict(self)


_WORKER: dict = {}


def init_worker(model_paths, opts: DetectOptions, max_pixels: Optional[int]) -> None:
    """Per-process setup: load models once (never at import)."""
    from ..infra.models import load_models
    _WORKER["models"] = load_models(model_paths)
    _WORKER["opts"] = opts
    _WORKER["max_pixels"] = max_pixels


def detect_image(task: ImageTask) -> ImageResult:
    """Detect faces in one source image; failures come back as statuses."""
    from ..infra.images import ImageProblem
    from ..infra.files import file_digest
    opts: DetectOptions = _WORKER["opts"]
    res = ImageResult(task.obj_id, task.source_path, "ok", settings=opts.signature())
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


def face_record(task: ImageTask, res: ImageResult, face_idx: int, det: Detection):
    from ..core.records import FaceRecord, FaceSpec
    return FaceRecord(
        obj_id=task.obj_id, source_path=task.source_path, face_idx=face_idx,
        face_spec=FaceSpec(rect=det.rect, landmarks=det.landmarks, shrink=res.shrink),
        meta_url=task.meta_url, source_url=task.source_url, source_md5=res.source_md5,
        image_path=f"images/{task.obj_id}-{face_idx:02d}.png", title=task.title,
        artist_display_name=task.artist, detector=det.detector, score=det.score,
        subdetector=det.subdetector, image_width=res.width, image_height=res.height,
        shrink_method=res.shrink_method, exif_orientation=res.exif_orientation,
        department=task.department or None)


# ---- inputs -------------------------------------------------------------------------------

def tasks_from_work(work: Path) -> list:
    """objects.jsonl `ok` lines (last line per id wins), else every image in originals/."""
    from ..infra.files import check_relative_path, read_jsonl
    objects = work / "objects.jsonl"
    if not objects.exists():
        return tasks_from_folder(work / "originals", prefix="originals/")
    latest: dict = {}
    for d in read_jsonl(objects):
        if "id" in d:
            latest[str(d["id"])] = d
    tasks = []
    for oid, d in latest.items():
        rel = d.get("path") or ""
        if d.get("status") != "ok" or check_relative_path(rel) or check_relative_path(oid) or "/" in oid:
            continue
        tasks.append(ImageTask(obj_id=oid, source_path=rel, path=str(work / rel),
                               title=str(d.get("title") or ""), artist=str(d.get("artist") or ""),
                               department=str(d.get("department") or ""),
                               source_url=str(d.get("image_url") or ""),
                               meta_url=str(d.get("meta_url") or "")))
    return sorted(tasks, key=lambda t: obj_id_sort_key(t.obj_id))


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
        tasks.append(ImageTask(obj_id=p.stem, source_path=prefix + p.name, path=str(p)))
    return sorted(tasks, key=lambda t: obj_id_sort_key(t.obj_id))


# ---- CLI ----------------------------------------------------------------------------------

def configure_parser(p) -> None:
    from ..app.cli import add_common, add_executor, nonneg_int, positive_int
    src = p.add_argument_group("input and output")
    src.add_argument("--work", metavar="DIR", default=None,
                     help="work directory: reads objects.jsonl + originals/, writes faces.json "
                          "and detect.jsonl (default: metfaces-work, unless --images is given)")
    src.add_argument("--images", metavar="DIR", help="detect in every image file in DIR instead")
    src.add_argument("--out", metavar="FILE", help="faces.json to write (required with --images)")
    det = p.add_argument_group("detection")
    det.add_argument("--detector", choices=DETECTORS, default="hog",
                     help="hog (default), cnn or cascade; see above")
    det.add_argument("--upsample", type=nonneg_int, default=DEFAULT_UPSAMPLE, metavar="N",
                     help="HOG: upsample the shrunk image N times to find smaller faces "
                          "(default: %(default)s)")
    det.add_argument("--cnn-upsample", type=nonneg_int, default=DEFAULT_CNN_UPSAMPLE, metavar="N",
                     help="CNN: upsample N times (each ~4x the time; default: %(default)s)")
    det.add_argument("--cascade-score", type=float, default=DEFAULT_CASCADE_SCORE, metavar="S",
                     help="cascade: run the CNN when HOG's best score is below S "
                          "(default: %(default)s)")
    det.add_argument("--max-side", type=positive_int, default=DEFAULT_MAX_SIDE, metavar="PX",
                     help="shrink = ceil(long side / PX) (default: %(default)s)")
    det.add_argument("--min-face", type=nonneg_int, default=DEFAULT_MIN_FACE, metavar="PX",
                     help="smallest crop side (original pixels) worth finding: faces too small "
                          "for the filter's resolution minimum (default: %(default)s = align's "
                          "--size) are not searched for, so large images need no upsampling "
                          "and the cascade's CNN runs on a reduced copy; 0: no minimum")
    det.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                     help="refuse (too_large) images with more pixels (default: 250,000,000)")
    det.add_argument("--models-dir", metavar="DIR",
                     help="folder with the dlib .dat files (else $METFACES_MODELS, the "
                          "repository's models/, the face_recognition_models package)")
    add_common(p)
    add_executor(p)


@dataclass(frozen=True)
class StagePaths:
    out: Path
    journal: Path


def stage_inputs(args):
    """(tasks, paths) from --work or --images/--out; UsageError on a bad combination."""
    from ..core.errors import UsageError
    if args.images:
        if args.work:
            raise UsageError("give either --work or --images, not both")
        if not args.out:
            raise UsageError("--images needs --out FILE (where to write faces.json)")
        out = Path(args.out)
        tasks = tasks_from_folder(Path(args.images))
        return tasks, StagePaths(out, out.with_name(out.stem + ".detect.jsonl"))
    if args.out:
        raise UsageError("--out goes with --images; with --work the output is DIR/faces.json")
    work = Path(args.work or "metfaces-work")
    if not work.is_dir():
        raise UsageError(f"work directory not found: {work} (run `metfaces-build fetch` first, "
                         "or use --images DIR --out FILE)")
    return tasks_from_work(work), StagePaths(work / "faces.json", work / "detect.jsonl")


def run(args) -> int:
    from ..infra.files import JsonlAppender, atomic_write_json, read_jsonl, write_jsonl
    from ..infra.models import resolve_models
    from ..infra.executors import Progress, make_executor
    tasks, paths = stage_inputs(args)
    opts = DetectOptions(detector=args.detector, upsample=args.upsample,
                         cnn_upsample=args.cnn_upsample, cascade_score=args.cascade_score,
                         max_side=args.max_side, min_face=args.min_face)
    model_paths = resolve_models(args.models_dir, need_cnn=opts.detector != "hog")
    model_paths = replace(model_paths, predictor=model_paths.predictor.absolute(),
                          cnn=model_paths.cnn and model_paths.cnn.absolute())
    done = {} if args.force else _reusable(read_jsonl(paths.journal), tasks, opts)
    # absolute paths: a Dask worker's current directory is not ours
    todo = [replace(t, path=os.path.abspath(t.path)) for t in tasks if t.source_path not in done]
    serial = getattr(args, "executor", "local") == "local" and min(args.workers, len(todo)) <= 1
    if serial and todo:  # decode one image ahead; the first while the models load
        todo = [replace(t, next_path=n.path) for t, n in zip(todo, todo[1:])] + todo[-1:]
        prefetch(todo[0].path, opts.max_side, args.max_pixels)
    results = dict(done)
    n_faces = sum(len(r["faces"]) for r in results.values())
    executor = make_executor(getattr(args, "executor", "local"), min(args.workers, max(1, len(todo))),
                             getattr(args, "scheduler", None), init_worker,
                             (model_paths, opts, args.max_pixels))
    with Progress(len(todo), "detect", args.quiet, unit="img") as prog, \
            JsonlAppender(paths.journal) as journal:
        for res in executor.imap(detect_image, todo):
            journal.write(res.to_json())
            results[res.source_path] = res.to_json()
            _warn(prog, res)
            n_faces += len(res.faces)
            prog.update(faces=n_faces)
    ordered = [results[t.source_path] for t in tasks]
    write_jsonl(paths.journal, ordered)  # compact: one line per image, in task order
    atomic_write_json(paths.out, [f for r in ordered for f in r["faces"]])
    return _report(ordered, len(done), paths)


def _reusable(lines, tasks, opts: DetectOptions) -> dict:
    """Journal lines (last per image) that a rerun can keep: done, same settings."""
    wanted = {t.source_path for t in tasks}
    sig = opts.signature()
    latest = {}
    for d in lines:
        if d.get("source_path") in wanted:
            latest[d["source_path"]] = d
    return {k: d for k, d in latest.items()
            if d.get("status") in DONE_STATUSES and d.get("settings") == sig
            and isinstance(d.get("faces"), list)}


def _warn(prog, res: ImageResult) -> None:
    if res.exif_orientation not in (1, 0):
        prog.write(f"warning: {res.source_path}: EXIF orientation {res.exif_orientation}; "
                   "coordinates are in the stored (untransposed) frame, as the aligner loads it")
    if res.status not in DONE_STATUSES:
        prog.write(f"{res.status}: {res.source_path}: {res.reason}")


def _report(ordered: list, reused: int, paths: StagePaths) -> int:
    from ..infra.executors import summarize
    counts: dict = {}
    for r in ordered:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    n_faces = sum(len(r["faces"]) for r in ordered)
    cnn = sum(1 for r in ordered if r.get("cnn_ran"))
    rotated = sum(1 for r in ordered if r.get("exif_orientation", 1) not in (0, 1))
    print(summarize(counts, "detect") + f"; {n_faces} faces -> {paths.out}"
          + (f"; CNN ran on {cnn} images" if cnn else "")
          + (f"; {rotated} with EXIF orientation != 1 (not transposed)" if rotated else "")
          + (f"; {reused} images reused from {paths.journal.name}" if reused else ""))
    failed = sum(v for k, v in counts.items() if k not in DONE_STATUSES)
    return 1 if failed else 0
