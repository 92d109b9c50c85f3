"""Prune detected faces with explicit, recorded heuristics.

NVIDIA pruned MetFaces with automatic filters they never published; ours are spelled out.
Each test is a pure function of a face record (plus the image size, plus a small aligned
crop where needed) returning a pass/fail with the measured value, so every rejection in
rejected.jsonl says which tests failed and by how much.

Tests (defaults in brackets; every one can be set by a flag or a TOML file):
  resolution        crop square side in source pixels, qsize >= --min-size [1024]
  score             detector score >= --min-score DETECTOR=VALUE [cnn=0.3, hog=0.0];
                    detectors not listed, or records without a score, pass
  roll              |eye-line angle| <= --max-roll degrees [45]
  mouth_below_eyes  mouth centre below the eye line, in eye distances >= [0.4]
  eye_jaw_ratio     outer-eye-corner distance / jaw width within [0.4, 0.95]
  yaw               nose-to-outer-eye-corner asymmetry <= --max-yaw [0.35]
  landmarks_outside farthest landmark outside the image, in inter-ocular units <= [0.1]
  padding           share of the crop square outside the image <= --max-padding [0.5]
  overlap           two detections in one image with rect IoU > --max-overlap [0.3]:
                    keep the better (passes the other tests, then score, then size)
  near_duplicate    64-bit perceptual hash of the crop within --max-hash-distance [6]
                    bits of a face of another object: keep the larger (then higher
                    score, then earlier in faces.json), record the other (with its
                    distance; a face that passes records none: multi-index hashing
                    looks only within the limit, in near-linear time)
  sharpness         variance of the Laplacian of the crop; tagged, rejects only with
                    --min-sharpness
  grayscale         mean channel spread of the crop < --grayscale-chroma [0.02]; tagged,
                    rejects only with --reject-grayscale

Reads DIR/faces.json, with each source_path resolved under --source-images (default
DIR). Writes DIR/filtered.json (metfaces.json-compatible; kept faces carry a "filter" key
with their measured values), DIR/rejected.jsonl (one line per dropped face: obj_id,
face_idx, reasons, values) and DIR/filter_summary.json; DIR/filter_cache.json keeps each
image's per-face results keyed by the image's content (source_sha256), its faces and
the config, so after an update only faces of changed images are measured again (the
cross-object near-duplicate test reruns over the cached hashes). Every input face lands in exactly
one of filtered.json and rejected.jsonl. Faces whose source image is missing or unreadable
are rejected with the image status as reason, and the exit status is 1.

A person's decisions (--overrides FILE, as the review page saves it: {"faces":
{"436015-00": "keep", "436008-00": "reject"}}) are applied after every test: the file
replaces DIR/overrides.json, which every later run applies too (so `run` carries them
through to align and export). A face a person rejected is in rejected.jsonl with reason
"override"; one a person kept is in filtered.json; either way its values hold
"override": {"decision", "tests_failed"}. An id in --overrides that is not a face of
faces.json is an error and nothing is written, unless its object was fetched into DIR or
the decision is in force already (a face an update withdrew: the review page saves those
too). Decisions about faces that faces.json no longer has (an update re-detected or
withdrew their image) are kept in DIR/overrides.json, not applied, and reported (exit
status 1), and apply again when the face comes back; --overrides replaces the decisions
about faces of faces.json and never drops those stale ones (edit the file to remove one).

TOML configuration (--config FILE; flags override it):
  [filter]
  min_size = 512
  max_padding = 0.3
  [filter.min_score]
  cnn = 0.8

examples:
  metfaces-build filter --work ./work
  metfaces-build filter --work ./work --min-size 512 --min-score cnn=0.8 --reject-grayscale
  metfaces-build filter --work ./work --explain 436838
  metfaces-build filter --work ./work --overrides ~/Downloads/overrides.json
"""

from __future__ import annotations

# the module's public names, as `from metfaces_build.stages import filter` always had them
from ...core.metrics import hash_distance, popcount  # noqa: F401 (API)
from .cache import CACHE_VERSION, cache_entry, cached_result, image_cache_key, write_cache
from .checks import (check_crop, check_face, check_landmarks, check_padding, check_resolution,
                     check_score, crop_measures, perceptual_hash)
from .config import (CONFIG_FIELDS, DEFAULT_MIN_SCORE, THRESHOLDS, FilterConfig, FilterOptions,
                     Thresholds, build_config, config_from_mapping, load_toml_config)
from .duplicates import resolve_duplicates, resolve_overlaps
from .explain import explain
from .overrides import (OVERRIDES_FILE, apply_overrides, face_id, face_object, load_overrides,
                        overrides_digest, overrides_in_force, parse_overrides)
from .results import (OVERRIDE_DECISIONS, OVERRIDE_REASON, Check, CropMeasures, FaceVerdict,
                      FilterOutcome, FilterResult, FilterTask)
from .stage import FilterSummary, filter, filter_faces, summary_line, write_outputs  # noqa: A004
from .tasks import check_image_faces, filter_tasks, measurement_crops

__all__ = [
    "CACHE_VERSION", "CONFIG_FIELDS", "Check", "CropMeasures", "DEFAULT_MIN_SCORE", "FaceVerdict",
    "FilterConfig", "FilterOptions", "FilterOutcome", "FilterResult", "FilterSummary",
    "FilterTask", "OVERRIDES_FILE", "OVERRIDE_DECISIONS", "OVERRIDE_REASON", "apply_overrides",
    "build_config", "cache_entry", "cached_result", "check_crop", "check_face",
    "check_image_faces", "check_landmarks", "check_padding", "check_resolution", "check_score",
    "config_from_mapping", "crop_measures", "explain", "face_id", "face_object", "filter",
    "filter_faces", "filter_tasks", "hash_distance", "image_cache_key", "load_overrides",
    "load_toml_config", "measurement_crops", "overrides_digest", "overrides_in_force",
    "parse_overrides", "perceptual_hash", "popcount", "resolve_duplicates", "resolve_overlaps",
    "summary_line", "write_cache", "write_outputs", "THRESHOLDS", "Thresholds",
]
