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

import dataclasses
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core import geometry
from ..core.errors import UsageError
from ..core.metrics import box_iou, hash_distance, popcount  # noqa: F401 (hash_distance: API)
from ..core.records import FaceKey, FaceRecord, Rejection
from ..infra.faces import load_faces
from ..infra.stage import (StageSummary, force_opt, opt, overridable, quiet_opt, skip_bad_opt,
                           workers_opt)
from ..infra.workdir import OVERRIDES as OVERRIDES_FILE  # the decisions in force
from ..infra.workdir import FACES, as_work

# ---- configuration: every default lives here -------------------------------------------

DEFAULT_MIN_SCORE = {"cnn": 0.3, "hog": 0.0}
OVERRIDE_REASON = "override"
OVERRIDE_DECISIONS = ("keep", "reject")


def _t(default, help, metavar="X", limits=">= 0", **kw):
    """A threshold: a FilterConfig field with a flag, a TOML key and a recipe entry."""
    return opt(default, help, metavar=metavar, limits=limits, threshold=True, **kw)


@dataclass
class FilterConfig:
    """Thresholds of every test (the TOML keys; the flags of those marked `_t`)."""
    min_size: float = _t(1024.0, "min crop side, source px", "PX")   # no upsampling
    min_score: dict = opt(help="min detector score per detector",
                          factory=lambda: dict(DEFAULT_MIN_SCORE))
    max_roll: float = _t(45.0, "max |eye-line angle|, degrees", "DEG")
    min_mouth_drop: float = _t(0.4, "mouth below eye line, eye distances", limits=None)
    eye_jaw_min: float = _t(0.4, "min outer-eye distance / jaw width")
    eye_jaw_max: float = _t(0.95, "max outer-eye distance / jaw width")
    max_yaw: float = _t(0.35, "max nose-to-eye asymmetry")
    max_landmark_outside: float = _t(0.1, "landmarks outside image, eye distances")
    max_padding: float = _t(0.5, "max share of the crop outside the image", "SHARE")
    max_overlap: float = _t(0.3, "max box IoU of two faces of an image", "IOU")
    max_hash_distance: int = _t(6, "near-duplicate pHash bits; < 0: off", "BITS",
                                limits=None)
    min_sharpness: Optional[float] = _t(None, "min Laplacian variance (rejects)", "VAR",
                                        shown="none: tag only")
    grayscale_chroma: float = _t(0.02, "grayscale below this channel spread")
    reject_grayscale: bool = opt(False, "reject grayscale faces (else tag them)")
    crop_tests: bool = opt(True, "decode images for the crop tests")
    crop_size: int = _t(128, "side of the measurement crop", "PX", limits=">= 1")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(FilterConfig)}


def config_from_mapping(values: dict, base: Optional[FilterConfig] = None,
                        where: str = "config") -> FilterConfig:
    """Overlay `values` (TOML table or flags) on `base`, checking names and types."""
    cfg = dataclasses.replace(base or FilterConfig())
    changes: dict[str, Any] = {}
    for k, v in values.items():
        if k not in CONFIG_FIELDS:
            raise UsageError(f"{where}: unknown setting {k!r} (known: {', '.join(CONFIG_FIELDS)})")
        default = getattr(FilterConfig(), k)
        if k == "min_score":
            if not isinstance(v, dict) or not all(_is_number(x) for x in v.values()):
                raise UsageError(f"{where}: min_score must map detector names to numbers")
            merged = dict(cfg.min_score)
            merged.update({str(n): float(x) for n, x in v.items()})
            changes[k] = merged
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise UsageError(f"{where}: {k} must be true or false, got {v!r}")
            changes[k] = v
        elif k == "min_sharpness" and v is None:
            changes[k] = None
        elif isinstance(default, int) and not isinstance(default, bool) and k != "min_size":
            if not isinstance(v, int) or isinstance(v, bool):
                raise UsageError(f"{where}: {k} must be a whole number, got {v!r}")
            changes[k] = v
        else:
            if not _is_number(v):
                raise UsageError(f"{where}: {k} must be a number, got {v!r}")
            changes[k] = float(v)
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.crop_size < 16:
        raise UsageError(f"{where}: crop_size must be at least 16")
    if cfg.eye_jaw_min > cfg.eye_jaw_max:
        raise UsageError(f"{where}: eye_jaw_min ({cfg.eye_jaw_min}) > eye_jaw_max ({cfg.eye_jaw_max})")
    return cfg


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_toml_config(path: str) -> dict:
    """The `[filter]` table of a TOML file (or its top level when there is no such table)."""
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise UsageError("--config needs Python 3.11+ (tomllib) or the 'tomli' package; "
                             "use flags instead, or `pip install tomli`") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
    table = data.get("filter", data)
    if not isinstance(table, dict):
        raise UsageError(f"config file {path}: [filter] must be a table")
    return table


# ---- results -----------------------------------------------------------------------------

@dataclass
class Check:
    """One test on one face: passed or not, the measured value, and the limit applied."""
    name: str
    passed: bool
    value: Any = None
    limit: str = ""

    def __post_init__(self) -> None:
        if type(self.limit) is str:  # one copy of each limit text, not one per face
            self.limit = sys.intern(self.limit)

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark} {self.name:<18} {_fmt(self.value):<30} {self.limit}"


@dataclass
class CropMeasures:
    """What the measurement crop tells: focus, colour and a perceptual hash."""
    sharpness: float
    chroma: float
    phash: str  # 16 hex digits


@dataclass
class FaceVerdict:
    """Every check on one face; kept when all of them passed, unless a person decided
    (`override`: "keep" or "reject", from overrides.json), which wins over the tests."""
    record: FaceRecord
    index: int  # position in faces.json: the tie-breaker that keeps output deterministic
    qsize: float
    checks: list = field(default_factory=list)
    measures: Optional[CropMeasures] = None
    override: Optional[str] = None

    @property
    def passed(self) -> bool:
        """What the tests alone decided."""
        return all(c.passed for c in self.checks)

    @property
    def keep(self) -> bool:
        return self.passed if self.override is None else self.override == "keep"

    @property
    def failed(self) -> list:
        """The tests this face failed (whatever a person decided)."""
        return [c.name for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list:
        if self.override is not None:
            return [] if self.override == "keep" else [OVERRIDE_REASON]
        return self.failed

    def values(self) -> dict:
        out: dict[str, Any] = {"qsize": round(self.qsize, 2)}
        for c in self.checks:
            out[c.name] = _json_safe(c.value)
        if self.measures is not None:
            out["phash"] = self.measures.phash
        if self.override is not None:
            out[OVERRIDE_REASON] = {"decision": self.override, "tests_failed": self.failed,
                                    "limits": {c.name: c.limit for c in self.checks if not c.passed}}
        return out

    def rejection(self) -> Rejection:
        limits = {c.name: c.limit for c in self.checks if not c.passed}
        return Rejection(self.record.obj_id, self.record.face_idx, self.reasons, self.values(),
                         limits)


def _json_safe(v: Any) -> Any:
    """Non-finite floats (degenerate landmarks) become None: JSON has no infinity."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


# ---- pure per-face tests -----------------------------------------------------------------

def check_resolution(qsize: float, cfg: FilterConfig) -> Check:
    return Check("resolution", qsize >= cfg.min_size, round(qsize, 2), f"needs >= {cfg.min_size:g} px")


def check_score(rec: FaceRecord, cfg: FilterConfig) -> Check:
    limit = cfg.min_score.get(rec.detector) if rec.detector else None
    if rec.score is None or limit is None:
        return Check("score", True, rec.score, f"no threshold for detector {rec.detector!r}")
    return Check("score", float(rec.score) >= limit, float(rec.score), f"needs >= {limit:g} ({rec.detector})")


def check_landmarks(lm: np.ndarray, width: int, height: int, cfg: FilterConfig) -> list:
    """Roll, mouth below eyes, eye/jaw proportion, yaw proxy, points inside the image."""
    roll = geometry.roll_degrees(lm)
    drop = geometry.mouth_drop(lm)
    ratio = geometry.eye_jaw_ratio(lm)
    yaw = geometry.yaw_asymmetry(lm)
    inter_ocular = geometry.inter_ocular(lm)
    outside = (geometry.landmarks_outside(lm, width, height) / inter_ocular
               if inter_ocular > 0 else float("inf"))
    return [
        Check("roll", abs(roll) <= cfg.max_roll, round(roll, 2), f"needs |deg| <= {cfg.max_roll:g}"),
        Check("mouth_below_eyes", drop >= cfg.min_mouth_drop, round(drop, 4),
              f"needs >= {cfg.min_mouth_drop:g} eye distances"),
        Check("eye_jaw_ratio", cfg.eye_jaw_min <= ratio <= cfg.eye_jaw_max, round(ratio, 4),
              f"needs [{cfg.eye_jaw_min:g}, {cfg.eye_jaw_max:g}]"),
        Check("yaw", yaw <= cfg.max_yaw, round(yaw, 4), f"needs <= {cfg.max_yaw:g}"),
        Check("landmarks_outside", outside <= cfg.max_landmark_outside, round(outside, 4),
              f"needs <= {cfg.max_landmark_outside:g} inter-ocular"),
    ]


def check_padding(square: geometry.Square, width: int, height: int, cfg: FilterConfig) -> Check:
    share = geometry.outside_fraction(square.quad(), width, height)
    return Check("padding", share <= cfg.max_padding, round(share, 4), f"needs <= {cfg.max_padding:g}")


def check_crop(m: Optional[CropMeasures], cfg: FilterConfig) -> list:
    """Sharpness and grayscale: tags unless a threshold turns them into tests."""
    if m is None:
        return []
    sharp_ok = cfg.min_sharpness is None or m.sharpness >= cfg.min_sharpness
    sharp_limit = "tag only" if cfg.min_sharpness is None else f"needs >= {cfg.min_sharpness:g}"
    gray = m.chroma < cfg.grayscale_chroma
    return [
        Check("sharpness", sharp_ok, round(m.sharpness, 2), sharp_limit),
        Check("grayscale", not (gray and cfg.reject_grayscale),
              {"grayscale": bool(gray), "chroma": round(m.chroma, 4)},
              f"chroma < {cfg.grayscale_chroma:g}" + ("" if cfg.reject_grayscale else " (tag only)")),
    ]


def crop_measures(crop) -> CropMeasures:
    """Sharpness, colour spread and pHash of a measurement crop (a PIL RGB image).

    Measured on the central 60% so black fill outside the source and background edges
    count little; the crop is at a fixed size, so values compare across faces."""
    from scipy import ndimage
    rgb = np.asarray(crop.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    centre = rgb[int(h * 0.2):int(h * 0.8), int(w * 0.2):int(w * 0.8)]
    gray = centre @ [0.299, 0.587, 0.114]
    sharpness = float(ndimage.laplace(gray).var())
    chroma = float((centre.max(axis=2) - centre.min(axis=2)).mean() / 255.0)
    return CropMeasures(sharpness, chroma, perceptual_hash(crop))


def perceptual_hash(image) -> str:
    """64-bit DCT hash (pHash): low 8x8 DCT coefficients of a 32x32 grayscale above
    their median. Robust to rescaling and mild recompression, not to re-framing."""
    from PIL import Image
    from scipy.fft import dctn
    g = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    low = dctn(g, norm="ortho")[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


# ---- the faces of one image (one worker task) -------------------------------------------

@dataclass(frozen=True)
class FilterTask:
    source_path: str
    path: str        # resolved file, "" when the source path is unsafe
    faces: tuple     # ((input index, FaceRecord), ...)
    config: FilterConfig


@dataclass
class FilterResult:
    source_path: str
    verdicts: list
    size: Optional[tuple] = None
    problem: Optional[str] = None  # image status when it could not be used


def check_image_faces(task: FilterTask) -> FilterResult:
    """All per-face tests, then overlap resolution, for the faces of one source image."""
    cfg = task.config
    from ..infra.images import ImageProblem
    try:
        size, crops = _load_for_checks(task)
    except ImageProblem as e:
        verdicts = []
        for i, rec in task.faces:
            sq = geometry.face_square(geometry.landmarks_full(rec.face_spec.landmarks, rec.face_spec.shrink))
            verdicts.append(FaceVerdict(rec, i, float(sq.qsize), [Check(e.status, False, e.reason, "readable image")]))
        return FilterResult(task.source_path, verdicts, None, e.status)
    width, height = size
    verdicts = []
    for (i, rec), measures in zip(task.faces, crops):
        verdicts.append(check_face(rec, i, width, height, cfg, measures))
    resolve_overlaps(verdicts, cfg)
    return FilterResult(task.source_path, verdicts, size)


def check_face(rec: FaceRecord, index: int, width: int, height: int, cfg: FilterConfig,
               measures: Optional[CropMeasures] = None) -> FaceVerdict:
    """Every per-face test (everything but overlap and near-duplicates)."""
    lm = geometry.landmarks_full(rec.face_spec.landmarks, rec.face_spec.shrink)
    sq = geometry.face_square(lm)
    qsize = float(sq.qsize)  # geometry keeps numpy's dtype for the aligner; plain float here
    checks = [check_resolution(qsize, cfg), check_score(rec, cfg)]
    checks += check_landmarks(lm, width, height, cfg)
    checks.append(check_padding(sq, width, height, cfg))
    checks += check_crop(measures, cfg)
    return FaceVerdict(rec, index, qsize, checks, measures)


def _load_for_checks(task: FilterTask) -> tuple:
    """(image size, [CropMeasures or None per face]); decodes only when crop tests are on."""
    from ..infra.images import ImageProblem, open_image
    recs = [rec for _, rec in task.faces]
    if not task.path:
        raise ImageProblem("missing_source", f"unsafe source_path {task.source_path!r}")
    known = [(r.image_width, r.image_height) for r in recs]
    if not task.config.crop_tests and all(w and h for w, h in known):
        return known[0], [None] * len(recs)
    head = open_image(task.path, load=False)
    size = head.size
    head.close()
    if not task.config.crop_tests:
        return size, [None] * len(recs)
    return size, _measure_crops(task.path, size, recs, task.config.crop_size)


def _measure_crops(path: str, size: tuple, recs: list, crop_size: int) -> list:
    return [crop_measures(c) for c in measurement_crops(path, size, recs, crop_size)]


def measurement_crops(path: str, size: tuple, recs: list, crop_size: int) -> list:
    """Approximate aligned crops (PIL, crop_size square) of `recs` from one source image.

    Decodes once, at the smallest scale (JPEG draft, then box reduction) that keeps every
    face at least twice the crop size, so big originals are cheap and crops barely alias.
    Raises ImageProblem when the image cannot be used."""
    from ..infra.images import quick_crop
    from ..infra.images import open_image
    lms = [geometry.landmarks_full(r.face_spec.landmarks, r.face_spec.shrink) for r in recs]
    min_q = min(float(geometry.face_square(lm).qsize) for lm in lms)
    scale = max(1.0, min_q / (2.0 * crop_size))
    want = (max(1, int(size[0] / scale)), max(1, int(size[1] / scale)))
    im = open_image(path, draft=("RGB", want) if scale >= 2 else None)
    im = im.convert("RGB")
    factor = int(im.width / want[0]) if im.width > want[0] else 1
    if factor >= 2:
        im = im.reduce(factor)
    fx = size[0] / im.width  # full-res pixels per decoded pixel
    out = []
    for lm in lms:
        # full-res pixel index p spans [p, p+1): decoded index = (p + 0.5) / fx - 0.5, and
        # quick_crop adds 0.5 again (shrink 1), hence the - 1.
        local = (lm.astype(np.float64) + 0.5) / fx - 1.0
        out.append(quick_crop(im, local, 1, size=crop_size))
    return out


def _overlap_rank(v: FaceVerdict) -> tuple:
    """Better first: passes its own tests, higher score, larger square, earlier."""
    score = v.record.score if v.record.score is not None else float("-inf")
    return (not v.keep, -score, -v.qsize, v.index)


def resolve_overlaps(verdicts: list, cfg: FilterConfig) -> None:
    """Greedy suppression within one image: a face whose rect overlaps a better, kept
    face by IoU > max_overlap fails `overlap`; others pass with their largest IoU."""
    boxes = {id(v): geometry.rect_full(v.record.face_spec.rect, v.record.face_spec.shrink)
             for v in verdicts}
    kept: list = []
    for v in sorted(verdicts, key=_overlap_rank):
        best = max(((box_iou(boxes[id(v)], boxes[id(k)]), k) for k in kept),
                   key=lambda t: t[0], default=(0.0, None))
        iou, other = best
        if other is not None and iou > cfg.max_overlap:
            v.checks.append(Check("overlap", False, {"iou": round(iou, 4), "with_face_idx":
                                                     other.record.face_idx}, f"IoU <= {cfg.max_overlap:g}"))
        else:
            v.checks.append(Check("overlap", True, {"iou": round(iou, 4)}, f"IoU <= {cfg.max_overlap:g}"))
            kept.append(v)


def _duplicate_rank(v: FaceVerdict) -> tuple:
    score = v.record.score if v.record.score is not None else float("-inf")
    return (-v.qsize, -score, v.index)


def resolve_duplicates(verdicts: list, cfg: FilterConfig) -> None:
    """Across objects: among faces still kept, one whose hash is within max_hash_distance
    of a better face of another object fails `near_duplicate` (naming the closest, then
    the better). Order-independent of how the work was split, so the same for any worker
    count. Near-linear (core.hamming): a face that passes records no distance, as its
    nearest face is farther than the limit."""
    if cfg.max_hash_distance < 0:
        return
    from ..core.hamming import greedy_duplicates
    limit = f"> {cfg.max_hash_distance} bits from other objects"
    cands = sorted((v for v in verdicts if v.keep and v.measures is not None), key=_duplicate_rank)
    codes: dict = {}
    objects = np.array([codes.setdefault(v.record.obj_id, len(codes)) for v in cands], dtype=np.int64)
    hashes = np.array([int(v.measures.phash, 16) for v in cands], dtype=np.uint64)
    match, dist, others = greedy_duplicates(hashes, objects, cfg.max_hash_distance)
    for v, j, d, other in zip(cands, match.tolist(), dist.tolist(), others.tolist()):
        if j >= 0:
            o = cands[j].record
            v.checks.append(Check("near_duplicate", False, {"distance": d, "duplicate_of":
                                                            str(o.key)}, limit))
        elif other:
            v.checks.append(Check("near_duplicate", True, {"distance": None}, limit))
        else:
            v.checks.append(Check("near_duplicate", True, {"distance": None}, "first of its kind"))


# ---- overrides: a person's keep / reject decisions ----------------------------------------


def face_id(obj_id: str, face_idx: int) -> str:
    """The id a person sees and overrides.json uses: the crop's name (`FaceKey`)."""
    return str(FaceKey(obj_id, face_idx))


def parse_overrides(data: Any, known_ids, where: str = "overrides", absent_ok=()) -> dict:
    """Validate `{"faces": {"436015-00": "keep", ...}}` against the faces of faces.json.

    Returns {face id: decision}. Any problem (wrong shape, a decision other than keep or
    reject, an id that is not a face of faces.json nor in `absent_ok`) raises a UsageError
    naming it, so a bad file changes nothing."""
    if not isinstance(data, dict) or not isinstance(data.get("faces"), dict):
        raise UsageError(f"{where}: expected {{\"faces\": {{\"OBJID-NN\": \"keep\" or \"reject\", ...}}}}")
    faces = data["faces"]
    bad = [f"{k!r}: {v!r}" for k, v in faces.items() if v not in OVERRIDE_DECISIONS]
    if bad:
        raise UsageError(f"{where}: decisions must be \"keep\" or \"reject\"; got "
                         + ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
    known = set(faces if known_ids is None else known_ids) | set(absent_ok)
    unknown = sorted(k for k in faces if k not in known)
    if unknown:
        raise UsageError(f"{where}: {len(unknown)} id(s) are not faces of faces.json: "
                         + ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
                         + " (ids are {obj_id}-{face_idx:02d}, e.g. 436015-00); nothing was changed")
    return {str(k): str(v) for k, v in sorted(faces.items())}


def load_overrides(path: Path, known_ids=None, absent_ok=()) -> dict:
    from ..infra.files import read_json
    return parse_overrides(read_json(path, "overrides file"), known_ids, str(path), absent_ok)


def face_object(fid: str) -> Optional[str]:
    """The obj_id of a well-formed face id `{obj_id}-{face_idx:02d}`, else None."""
    key = FaceKey.parse(fid)
    return key.obj_id if key else None


def _absent_faces_of_known_objects(work, ids) -> set:
    """The ids among `ids` whose object this work directory fetched (a face an update
    withdrew or re-detected: a decision about it is kept, not a typo)."""
    objs = {f: face_object(f) for f in ids}
    wanted = {int(o) for o in objs.values() if o and o.isdigit() and len(o) < 19}
    if not wanted:
        return set()
    fetched = {str(i) for i in work.objects_of(wanted)}
    return {f for f, o in objs.items() if o in fetched}


def apply_overrides(verdicts: list, overrides: dict) -> int:
    """Set each overridden face's decision (pure: on the verdicts only). Runs after every
    test, overlaps and near-duplicates included, so a person's decision is final. Returns
    how many faces a decision moved (kept <-> rejected)."""
    moved = 0
    for v in verdicts:
        decision = overrides.get(face_id(v.record.obj_id, v.record.face_idx))
        v.override = decision
        if decision is not None and v.keep != v.passed:
            moved += 1
    return moved


def overrides_in_force(opts: "FilterOptions", work, faces: list) -> tuple:
    """(decisions to apply, stale ids). `opts.overrides` is validated in full (an unknown id
    is a UsageError: nothing changes) and saved as DIR/overrides.json, which later runs
    apply. Decisions saved there for faces that faces.json no longer has (an update
    re-detected or withdrew an image) are stale: kept in the file, not applied, and
    reported, so an update run is not stopped by a decision about a face that is gone;
    they apply again when the face comes back. A person's decision is never dropped by a
    stage: --overrides replaces the decisions about faces in faces.json, while stale ones
    it does not mention stay in force, and an id of --overrides that names a face absent
    now is accepted as stale when it is in force already or its object was fetched here
    (the review page saves them all)."""
    from ..infra.files import atomic_write_json
    known = {face_id(f.obj_id, f.face_idx) for f in faces}
    stored = work.overrides_json
    saved = load_overrides(stored, None) if stored.exists() else {}  # ids may be stale
    if opts.overrides:
        given = Path(opts.overrides)
        from ..infra.files import read_json
        raw = read_json(given, "overrides file")
        ids = raw.get("faces") if isinstance(raw, dict) else None
        absent = [k for k in ids if k not in known and k not in saved] if isinstance(ids, dict) else []
        ok = set(saved) | _absent_faces_of_known_objects(work, absent)
        overrides = {**{k: v for k, v in saved.items() if k not in known},
                     **parse_overrides(raw, known, str(given), ok)}
        overrides = dict(sorted(overrides.items()))
        if not stored.exists() or overrides != saved:
            atomic_write_json(stored, {"faces": overrides})
        saved = overrides
    stale = sorted(k for k in saved if k not in known)
    return {k: v for k, v in saved.items() if k in known}, stale


def overrides_digest(overrides: dict) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()


# ---- the stage -----------------------------------------------------------------------------

@dataclass
class FilterOutcome:
    """Everything the stage decided, in faces.json order."""
    verdicts: list
    bad_records: list
    image_problems: dict  # source_path -> status
    measured: int = 0     # images measured now (the rest came from the cache)
    cache: dict = field(default_factory=dict)  # the per-image cache entries of this input (dicts, or their JSON text)
    overrides: dict = field(default_factory=dict)  # face id -> decision, as applied
    stale_overrides: list = field(default_factory=list)  # saved decisions for faces gone

    @property
    def kept(self) -> list:
        return [v for v in self.verdicts if v.keep]

    @property
    def rejected(self) -> list:
        return [v for v in self.verdicts if not v.keep]

    def reason_counts(self) -> Counter:
        c: Counter = Counter()
        for v in self.rejected:
            c.update(v.reasons)
        if self.bad_records:
            c["bad_record"] += len(self.bad_records)
        return c


def filter_tasks(faces: list, source_root: Path, cfg: FilterConfig) -> list:
    """One task per source image, in order of first appearance in faces.json."""
    from ..infra.files import safe_join
    groups: dict[str, list] = {}
    for i, rec in enumerate(faces):
        groups.setdefault(rec.source_path, []).append((i, rec))
    tasks = []
    for sp, items in groups.items():
        try:
            path = str(safe_join(source_root, sp))
        except ValueError:
            path = ""
        tasks.append(FilterTask(sp, path, tuple(items), cfg))
    return tasks


def filter_faces(faces: list, source_root: Path, cfg: FilterConfig, workers: int = 1,
                 quiet: bool = True, bad_records: Optional[list] = None,
                 cache: Optional[dict] = None) -> FilterOutcome:
    """Run every test on every face; the reusable core of the stage (no output files).
    `cache` (filter_cache.json's entries) supplies the per-image results of images whose
    content, faces and config are unchanged; the outcome's `cache` holds this input's."""
    from ..infra.executors import LocalExecutor, Progress
    tasks = filter_tasks(faces, source_root, cfg)
    verdicts: list = []
    problems: dict = {}
    keys = {t.source_path: image_cache_key(t) for t in tasks}
    new_cache: dict = {}
    todo = []
    for t in tasks:
        entry = (cache or {}).get(keys[t.source_path]) if keys[t.source_path] else None
        res = cached_result(t, entry) if entry is not None else None
        if res is None:
            todo.append(t)
        else:
            verdicts.extend(res.verdicts)
            new_cache[keys[t.source_path]] = entry
    kept = sum(v.keep for v in verdicts)  # a running count: no rescan per image
    with Progress(len(todo), "filter", quiet=quiet or not todo, unit="img") as bar:
        for res in LocalExecutor(min(workers, max(1, len(todo)))).imap(check_image_faces, todo):
            for v in res.verdicts:  # the parent's record, not a worker's copy of it
                v.record = faces[v.index]
            verdicts.extend(res.verdicts)
            kept += sum(v.keep for v in res.verdicts)
            if res.problem:
                problems[res.source_path] = res.problem
            elif keys[res.source_path]:
                new_cache[keys[res.source_path]] = json.dumps(cache_entry(res))  # text: ~1/4 the memory
            # faces passing the per-image tests so far; duplicates and overrides come after
            bar.update(1, passed=kept)
    verdicts.sort(key=lambda v: v.index)
    resolve_duplicates(verdicts, cfg)
    return FilterOutcome(verdicts, list(bad_records or []), problems, len(todo), new_cache)


# ---- the per-image cache: results keyed by content ---------------------------------------

CACHE_VERSION = 2  # 2: limits read "needs >= ..."
_CACHE_FACE_KEYS = ("face_idx", "face_spec", "score", "detector", "image_width", "image_height")


def image_cache_key(task: FilterTask) -> str:
    """sha256 over the image's content key, its faces as the tests see them and the
    config; "" (no caching) when the faces carry no source_sha256 (NVIDIA's json, a
    plain folder)."""
    import hashlib
    import json
    recs = [r.to_json() for _, r in task.faces]
    shas = {r.get("source_sha256") for r in recs}
    if len(shas) != 1 or not isinstance(next(iter(shas)), str) or not next(iter(shas)):
        return ""
    payload = [CACHE_VERSION, task.source_path, next(iter(shas)), task.config.to_json(),
               [[r.get(k) for k in _CACHE_FACE_KEYS] for r in recs]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_entry(res: FilterResult) -> dict:
    """The per-face results of one image as JSON (checks after overlap resolution)."""
    return {"faces": [{"qsize": v.qsize,
                       "checks": [[c.name, bool(c.passed), _plain(c.value), c.limit] for c in v.checks],
                       "measures": None if v.measures is None else dataclasses.asdict(v.measures)}
                      for v in res.verdicts]}


def cached_result(task: FilterTask, entry: Any) -> Optional[FilterResult]:
    """The FilterResult a cache entry stands for, with the task's current records (their
    titles may have changed), or None when the entry does not fit."""
    try:
        faces = entry["faces"]
        if len(faces) != len(task.faces):
            return None
        verdicts = [FaceVerdict(rec, i, float(f["qsize"]), [Check(*c) for c in f["checks"]],
                                None if f["measures"] is None else CropMeasures(**f["measures"]))
                    for (i, rec), f in zip(task.faces, faces)]
    except (KeyError, TypeError, ValueError):
        return None
    return FilterResult(task.source_path, verdicts)


def write_cache(path: Path, images: dict) -> None:
    """filter_cache.json, entry by entry (the bytes of json.dumps of the whole, indent
    None), from entries held as dicts or as their JSON text."""
    from ..infra.files import atomic_open
    with atomic_open(path, "wb") as f:
        f.write(f'{{"version": {CACHE_VERSION}, "images": {{'.encode())
        for n, (key, entry) in enumerate(images.items()):
            text = entry if isinstance(entry, str) else json.dumps(entry)
            f.write(f'{", " if n else ""}{json.dumps(key)}: {text}'.encode())
        f.write(b"}}\n")


def _plain(v: Any) -> Any:
    """A check value as JSON has it (numpy scalars to Python, tuples to lists)."""
    import json
    return json.loads(json.dumps(_json_safe(v), default=lambda x: x.item() if hasattr(x, "item") else str(x)))


def write_outputs(work, outcome: FilterOutcome, cfg: FilterConfig, input_digest: str,
                  source_root: Optional[Path] = None) -> dict:
    """filtered.json, rejected.jsonl and filter_summary.json (each written atomically)."""
    from ..infra.files import atomic_write_json, write_jsonl
    from ..infra.executors import library_versions
    from ..infra.jsonstream import atomic_write_json_list
    kept = outcome.kept
    rows = [v.rejection().to_json() for v in outcome.rejected]
    for b in outcome.bad_records:
        rows.append(Rejection(b.obj_id or "", -1 if b.face_idx is None else b.face_idx,
                              ["bad_record"], {"record_index": b.index, "error": b.reason}).to_json())
    work = as_work(work)
    # one record at a time: never the whole list as dicts and text
    atomic_write_json_list(work.filtered_json, ({**v.record.to_json(), "filter": v.values()}
                                                for v in kept))
    write_jsonl(work.rejected_jsonl, rows)
    decided = [v for v in outcome.verdicts if v.override is not None]
    summary = {
        "input": FACES, "input_sha256": input_digest,
        "source_images": str((source_root or work.path).resolve()),
        # the sources are the work directory itself: still true after the folder is moved
        "source_is_work": (source_root or work.path).resolve() == work.path.resolve(),
        "faces": len(outcome.verdicts) + len(outcome.bad_records),
        "kept": len(kept), "rejected": len(rows),
        "reasons": dict(sorted(outcome.reason_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
        "grayscale_kept": sum(1 for v in outcome.kept
                              if (v.values().get("grayscale") or {}).get("grayscale")),
        "image_problems": outcome.image_problems,
        "overrides": {"file": OVERRIDES_FILE, "sha256": overrides_digest(outcome.overrides),
                      "keep": sum(1 for v in decided if v.override == "keep"),
                      "reject": sum(1 for v in decided if v.override == "reject"),
                      "moved": sum(1 for v in decided if v.keep != v.passed),
                      "stale": outcome.stale_overrides},
        "config": cfg.to_json(), "versions": library_versions(),
    }
    atomic_write_json(work.filter_summary_json, summary)
    return summary


def summary_line(summary: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items())
    o = summary.get("overrides") or {}
    decided = (o.get("keep") or 0) + (o.get("reject") or 0)
    return (f"filter: {summary['kept']} kept, {summary['rejected']} rejected of {summary['faces']}"
            + (f" ({reasons})" if reasons else "")
            + (f"; {decided} decided by a person ({o.get('keep')} keep, {o.get('reject')} reject, "
               f"{o.get('moved')} against the tests; {OVERRIDES_FILE})" if decided else ""))


def build_config(opts: "FilterOptions") -> FilterConfig:
    """Defaults, then the TOML file, then flags."""
    cfg = FilterConfig()
    if opts.config:
        cfg = config_from_mapping(load_toml_config(opts.config), cfg, where=opts.config)
    flags: dict[str, Any] = {name: getattr(opts, name) for name in THRESHOLDS
                             if getattr(opts, name) is not None}
    if opts.min_score:
        flags["min_score"] = dict(_parse_score(s) for s in opts.min_score)
    if opts.reject_grayscale:
        flags["reject_grayscale"] = True
    if opts.no_crop_tests:
        flags["crop_tests"] = False
    return config_from_mapping(flags, cfg, where="flags")


def _parse_score(s: str) -> tuple:
    name, sep, val = s.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name.strip(), float(val)
    except ValueError:
        raise UsageError(f"--min-score: expected DETECTOR=NUMBER (e.g. cnn=0.5), got {s!r}") from None


THRESHOLDS = tuple(f.name for f in dataclasses.fields(FilterConfig) if f.metadata.get("threshold"))
# each threshold as an option: None takes the TOML file's value, else FilterConfig's
Thresholds = overridable(FilterConfig, THRESHOLDS, "Thresholds", group="thresholds")


@dataclass(frozen=True)
class FilterOptions(Thresholds):
    """Options of the filter stage (names of its CLI flags): the thresholds (`Thresholds`,
    made from FilterConfig) and these."""
    source_images: Optional[str] = opt(None, "where source_path resolves", metavar="DIR",
                                       shown="--work")
    faces: Optional[str] = opt(None, "input face list", metavar="JSON",
                               shown="DIR/faces.json")
    config: Optional[str] = opt(None, "thresholds from a TOML file ([filter])",
                                metavar="TOML")
    explain: Optional[str] = opt(None, "print every test of one object; write nothing",
                                 metavar="OBJ_ID")
    skip_bad: bool = skip_bad_opt("reject malformed records (bad_record), go on")
    min_score: Optional[tuple] = opt(None, "min score of a detector (repeatable)",
                                     metavar="DETECTOR=VALUE", repeat=True, group="thresholds",
                                     shown="cnn=0.3, hog=0.0")
    reject_grayscale: bool = opt(False, "reject grayscale faces (else tag them)",
                                 group="thresholds")
    no_crop_tests: bool = opt(False, "skip the tests that decode images", group="thresholds")
    overrides: Optional[str] = opt(None, "a person's keep/reject decisions (review page)",
                                   metavar="JSON")
    workers: int = workers_opt()
    force: bool = force_opt()
    quiet: bool = quiet_opt()

    @staticmethod
    def validate_values(values: dict, where: str) -> None:
        """min_score: DETECTOR=NUMBER strings (infra.stage.check_values calls this)."""
        for s in values.get("min_score") or ():
            if not isinstance(s, str):
                raise UsageError(f"{where}: min_score takes DETECTOR=NUMBER strings (the "
                                 f"API also a dict such as {{'cnn': 0.8}}), got {s!r}")
            _parse_score(s)


@dataclass
class FilterSummary(StageSummary):
    """filter's outcome: `counts` has kept and rejected; `reasons` the rejections' tests."""
    kept: int = 0
    rejected: int = 0
    reasons: dict = field(default_factory=dict)
    up_to_date: bool = False
    measured: int = 0       # images whose faces were measured now
    from_cache: int = 0     # images whose results came from filter_cache.json


def filter(work, opts: FilterOptions = FilterOptions()) -> FilterSummary:  # noqa: A001
    """Run every test on every face of faces.json in `work`; write filtered.json,
    rejected.jsonl and filter_summary.json. Skipped when inputs and config are unchanged
    (unless `opts.force`). With `opts.explain`, prints one object's tests, writes nothing."""
    import time

    t0 = time.monotonic()
    work = as_work(work)
    faces_path = Path(opts.faces) if opts.faces else work.faces_json
    source_root = Path(opts.source_images) if opts.source_images else work.path
    cfg = build_config(opts)
    loaded = load_faces(faces_path, skip_bad=opts.skip_bad, what="faces file", pack=True)
    if not source_root.is_dir():
        raise UsageError(f"--source-images {source_root} is not a folder")
    if opts.explain is not None:
        lines = explain(work.path, loaded.faces, source_root, cfg, str(opts.explain))
        return FilterSummary("filter", elapsed=time.monotonic() - t0, lines=lines)
    from ..infra.lock import work_lock
    with work_lock(work.path, command="filter"):  # one writer per work directory
        return _filter_locked(opts, work, faces_path, source_root, cfg, loaded, t0)


def _filter_locked(opts: FilterOptions, work, faces_path: Path, source_root: Path,
                   cfg: "FilterConfig", loaded, t0: float) -> FilterSummary:
    import time

    from ..infra.files import file_digest, read_json
    from ..infra.workdir import clean_filter_summary
    overrides, stale = overrides_in_force(opts, work, loaded.faces)  # checked before writing
    digest = file_digest(faces_path, "sha256")
    outputs = {"filtered": work.filtered_json, "rejected": work.rejected_jsonl,
               "summary": work.filter_summary_json}
    if not opts.force and all(p.exists() for p in outputs.values()):
        old = read_json(work.filter_summary_json, "filter summary")
        # a damaged summary (a field of the wrong type) is not up to date: filter again
        if isinstance(old, dict) and clean_filter_summary(old) == old \
                and old.get("input_sha256") == digest \
                and old.get("config") == cfg.to_json() \
                and (old.get("source_images") == str(source_root.resolve())
                     or old.get("source_is_work") is True
                     and source_root.resolve() == work.path.resolve()) \
                and (old.get("overrides") or {}).get("sha256", overrides_digest({})) \
                == overrides_digest(overrides) \
                and (old.get("overrides") or {}).get("stale", []) == stale:
            failed = len(old.get("image_problems") or {}) + (old.get("reasons") or {}).get("bad_record", 0)
            return _summary(old, outputs, time.monotonic() - t0, failed + bool(stale),
                            [summary_line(old) + " (up to date; --force redoes it)"],
                            _stale_notes(stale, work) + _duplicate_notes(opts, work), True)
    cache = {} if opts.force else _read_cache(work.filter_cache_json)
    outcome = filter_faces(loaded.faces, source_root, cfg, opts.workers, opts.quiet, loaded.bad,
                           cache)
    apply_overrides(outcome.verdicts, overrides)
    outcome.overrides, outcome.stale_overrides = overrides, stale
    summary = write_outputs(work, outcome, cfg, digest, source_root)
    write_cache(work.filter_cache_json, outcome.cache)
    notes = _stale_notes(stale, work) + _duplicate_notes(opts, work)
    if outcome.image_problems:
        notes.append(f"{len(outcome.image_problems)} source image(s) unusable; their faces are "
                     f"in rejected.jsonl")
    n_images = len({f.source_path for f in loaded.faces})
    line = summary_line(summary) + (f"; {outcome.measured} images measured, "
                                    f"{n_images - outcome.measured} from {work.filter_cache_json.name}"
                                    if outcome.measured < n_images else "")
    out = _summary(summary, outputs, time.monotonic() - t0,
                   len(outcome.image_problems) + len(outcome.bad_records) + bool(stale), [line],
                   notes, False)
    out.measured, out.from_cache = outcome.measured, n_images - outcome.measured
    return out


def _duplicate_notes(opts, work) -> list:
    """A warning per decision file naming a face twice (JSON keeps the last silently)."""
    from ..infra.files import duplicate_keys
    paths = [Path(opts.overrides)] if opts.overrides else []
    if work.overrides_json.is_file() and not any(p.resolve() == work.overrides_json.resolve() for p in paths):
        paths.append(work.overrides_json)
    out = []
    for p in paths:
        dups = duplicate_keys(p)
        if dups:
            out.append(f"warning: {p} names {', '.join(repr(d) for d in dups)} more than once: "
                       "the last decision for each was used")
    return out


def _stale_notes(stale: list, work) -> list:
    if not stale:
        return []
    shown = ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else "")
    return [f"{len(stale)} decision(s) in {work.overrides_json} name faces that faces.json no "
            f"longer has ({shown}): not applied, kept in the file; review the new faces and "
            f"save overrides again, or delete those ids"]


def _read_cache(path: Path) -> dict:
    from ..infra.files import read_json_or_none
    data = read_json_or_none(path)
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION \
            or not isinstance(data.get("images"), dict):
        return {}
    return data["images"]


def _summary(s: dict, outputs: dict, elapsed: float, failed: int, lines: list, notes: list,
             up_to_date: bool) -> FilterSummary:
    return FilterSummary("filter", {"kept": s.get("kept", 0), "rejected": s.get("rejected", 0)},
                         outputs, elapsed, failed, lines, notes, kept=s.get("kept", 0),
                         rejected=s.get("rejected", 0), reasons=dict(s.get("reasons") or {}),
                         up_to_date=up_to_date)


def explain(work: Path, faces: list, source_root: Path, cfg: FilterConfig, obj_id: str) -> list:
    """Print every test for one object's faces (the near-duplicate test needs every
    other face, so its outcome is read from the last full run when there is one)."""
    lines: list = []
    mine = [f for f in faces if f.obj_id == obj_id]
    if not mine:
        raise UsageError(f"--explain: no faces with obj_id {obj_id!r} in faces.json")
    index = {f.key: i for i, f in enumerate(faces)}
    previous = _previous_duplicate_checks(work)
    tasks = filter_tasks(mine, source_root, cfg)
    for t in tasks:
        t = dataclasses.replace(t, faces=tuple((index[r.key], r) for _, r in t.faces))
        res = check_image_faces(t)
        size = f"{res.size[0]}x{res.size[1]}" if res.size else "unreadable"
        lines.append(f"object {obj_id}: {len(res.verdicts)} face(s) in {t.source_path} ({size})")
        for v in res.verdicts:
            dup = previous.get(v.record.key)
            if dup is not None:
                v.checks.append(dup)
            lines.append(f"  face {v.record.face_idx}: {'KEEP' if v.keep else 'REJECT ' + ', '.join(v.reasons)}"
                  f"  (qsize {v.qsize:.1f} px)")
            for c in v.checks:
                lines.append(f"    {c.line()}")
            if dup is None and cfg.max_hash_distance >= 0 and v.measures is not None:
                why = ("needs every other face: run the stage first" if v.keep
                       else "not tested: already rejected")
                lines.append(f"    ---- {'near_duplicate':<18} phash {v.measures.phash}, {why}")
    return lines


def _previous_duplicate_checks(work: Path) -> dict:
    """Near-duplicate outcomes recorded by the last full run, keyed by face."""
    from ..infra.files import read_json_or_none, read_jsonl
    from ..infra.workdir import FILTERED, REJECTED
    out: dict = {}
    for row in read_jsonl(work / REJECTED):
        if "near_duplicate" in row.get("reasons", []):
            out[(str(row["obj_id"]), row["face_idx"])] = Check(
                "near_duplicate", False, row["values"].get("near_duplicate"), "(last run)")
    kept = read_json_or_none(work / FILTERED) or []
    for d in kept if isinstance(kept, list) else []:
        vals = (d.get("filter") or {}) if isinstance(d, dict) else {}
        if "near_duplicate" in vals:
            out[(str(d.get("obj_id")), d.get("face_idx"))] = Check(
                "near_duplicate", True, vals["near_duplicate"], "(last run)")
    return out
