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

# the module's public names, as `from metfaces_build.stages import detect` always had them
from .decode import ShrunkImage, choose_shrink, draft_scale, load_shrunk, to_rgb8
from .detector import (Detection, DetectorRun, as_rgb_array, cascade_boxes, cnn_boxes, cnn_reduce,
                       detect_faces, hog_boxes, order_faces, predict_landmarks, reduced_cnn_boxes,
                       run_detector, same_face, scan_upsample, smallest_box)
from .journal import SourceVersion, face_changes, file_stat_key, reusable_detections, same_source
from .options import (CNN_MIN_BOX, DEFAULT_CASCADE_SCORE, DEFAULT_CNN_UPSAMPLE, DEFAULT_MAX_SIDE,
                      DEFAULT_MIN_FACE, DEFAULT_UPSAMPLE, DETECTION, DETECTORS, DONE_STATUSES,
                      HOG_MIN_BOX, IMAGE_SUFFIXES, IO, JOURNAL_VERSION, JPEG_DRAFT_SCALES,
                      QSIZE_PER_BOX, SAME_FACE_IOU, SETTINGS, DetectOptions)
from .stage import DetectPlan, DetectSummary, StagePaths, detect, stage_inputs
from .tasks import (DetectResult, DetectTask, detect_task, face_record, init_worker, prefetch,
                    tasks_and_damage, tasks_from_folder, tasks_from_work)

__all__ = [
    "CNN_MIN_BOX", "DEFAULT_CASCADE_SCORE", "DEFAULT_CNN_UPSAMPLE", "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_FACE", "DEFAULT_UPSAMPLE", "DETECTORS", "DONE_STATUSES", "DetectOptions",
    "DetectPlan", "DetectResult", "DetectSummary", "DetectTask", "Detection", "DetectorRun",
    "HOG_MIN_BOX", "IMAGE_SUFFIXES", "JOURNAL_VERSION", "JPEG_DRAFT_SCALES", "QSIZE_PER_BOX",
    "SAME_FACE_IOU", "SETTINGS", "ShrunkImage", "SourceVersion", "StagePaths", "as_rgb_array",
    "cascade_boxes", "choose_shrink", "cnn_boxes", "cnn_reduce", "detect", "detect_faces",
    "detect_task", "draft_scale", "face_changes", "face_record", "file_stat_key", "hog_boxes",
    "init_worker", "load_shrunk", "order_faces", "predict_landmarks", "prefetch",
    "reduced_cnn_boxes", "reusable_detections", "run_detector", "same_face", "same_source",
    "scan_upsample", "smallest_box", "stage_inputs", "tasks_and_damage", "tasks_from_folder",
    "tasks_from_work", "to_rgb8", "IO", "DETECTION",
]
