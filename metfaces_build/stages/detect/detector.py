"""Detection on one array: dlib's HOG, its CNN or the cascade of both, the smallest face
worth finding (how far to upsample or reduce), landmarks and the face_idx order."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from ...infra.models import load_models, resolve_models
from .decode import to_rgb8
from .options import (CNN_MIN_BOX, DEFAULT_CASCADE_SCORE, DEFAULT_CNN_UPSAMPLE, DEFAULT_UPSAMPLE,
                      DETECTORS, HOG_MIN_BOX, QSIZE_PER_BOX, SAME_FACE_IOU, DetectOptions)

# numpy, PIL and dlib are imported where used: `import stages.detect` stays light (--help)


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
        models = load_models(resolve_models(need_cnn=detector != "hog"))
    return run_detector(as_rgb_array(image), opts, models).detections


def predict_landmarks(image, rect, models=None) -> tuple:
    """68 (x, y) integer landmarks for a face box (l, t, r, b), with dlib's predictor."""
    import dlib
    if models is None:
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
    from ...core.metrics import box_iou, rect_edges  # numpy: not at import (see top)
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
