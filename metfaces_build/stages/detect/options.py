"""detect's settings: every default, DetectOptions (the flags) and the signature a
journal line must match to be reused."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ...core.status import DETECT_DONE
from ...infra.stage import default_workers

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


@dataclass(frozen=True)
class DetectOptions:
    """Options of the detect stage (names and defaults of its CLI flags). The first five
    decide which faces are found and are recorded with each result (`signature`)."""
    detector: str = "hog"
    upsample: int = DEFAULT_UPSAMPLE
    cnn_upsample: int = DEFAULT_CNN_UPSAMPLE
    cascade_score: float = DEFAULT_CASCADE_SCORE
    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: Optional[int] = None  # None: images.DEFAULT_MAX_PIXELS
    # smallest crop side (full-res px) worth finding; 0: scan as fine as the upsampling says
    min_face: int = DEFAULT_MIN_FACE
    models_dir: Optional[str] = None
    images: Optional[str] = None  # detect in this folder instead of a work directory
    out: Optional[str] = None     # faces.json to write with `images`
    workers: int = field(default_factory=default_workers)
    force: bool = False
    quiet: bool = False
    executor: str = "local"
    scheduler: Optional[str] = None

    # checked for the CLI and the API alike (infra.stage.check_values)
    CHOICES = {"detector": DETECTORS, "executor": ("local", "dask")}
    LIMITS = {"upsample": (0, None), "cnn_upsample": (0, None), "max_side": (1, None),
              "min_face": (0, None)}

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
