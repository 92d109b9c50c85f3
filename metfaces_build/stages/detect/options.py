"""detect's settings: every default, DetectOptions (the flags) and the signature a
journal line must match to be reused."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...core.status import DETECT_DONE
from ...infra.stage import (executor_opt, force_opt, opt, quiet_opt, scheduler_opt,
                            workers_opt)

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
