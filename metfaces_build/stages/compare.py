"""Compare regenerated landmarks with stored ones, or two folders of crops.

Landmark mode (--stored, --regenerated): both face lists are brought to full-resolution
pixels, (p + 0.5) * shrink, so faces detected at different shrinks compare directly.
Within each obj_id the faces are matched by an optimal assignment (Hungarian, scipy's
linear_sum_assignment) on the eye-centre distance: the mean of the left-eye-centre and
right-eye-centre distances. A pair is accepted only when that distance is at most
--gate (default 0.5) times the stored face's inter-ocular distance; this keeps a
different face of the same painting from counting as a badly placed match.

Per matched face: NME = mean distance of the 68 points over the stored face's
inter-ocular distance (outer eye corners 36 and 45), the same per region (jaw, brows,
nose, eyes, mouth), the IoU of the two detector rects, and the shrink of each. Per run:
matched / missed (stored faces without a match) / extra (regenerated faces without one),
median and p90 NME, and the share of matched faces with NME <= 0.05 and <= 0.10.

With --out DIR: DIR/compare.json (run statistics; top-level keys matched, missed, extra,
median_nme, p90_nme, within_0.05, within_0.10, ...), DIR/compare_faces.jsonl (one line
per face: status matched | missed | extra and the measures) and DIR/report/ (markdown,
self-contained HTML, stats.json, a sheet of the worst mismatches drawn on the source;
source images are looked up under --source-images, default the regenerated file's folder).

Landmark mode exits 0 whatever the error levels (missed and extra faces are results, not
failures), and 1 only when --skip-bad skipped malformed records.

Crop mode (--crops A B): per PNG name, PSNR and largest absolute pixel difference between
the two folders (RGB), plus names present on one side only. With --out DIR:
DIR/compare_crops.json (summary) and DIR/compare_crops.jsonl (per crop). Exit status 1
when a crop is missing on one side, unreadable, or of another size.

examples:
  metfaces-build compare --stored metfaces.json --regenerated work/faces.json --out work
  metfaces-build compare --crops stored-crops/ work/images/ --out work
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import geometry
from ..core.errors import UsageError
from ..core.metrics import box_iou, psnr_and_max
from ..core.records import FaceRecord
from ..core.status import (EXTRA, MATCHED, MISSED, OK, ONLY_IN_A, ONLY_IN_B, SIZE_MISMATCH,
                           UNREADABLE)
from ..infra.executors import LocalExecutor, Progress
from ..infra.files import atomic_write_json, write_jsonl
from ..infra.images import MAX_CROP_PIXELS, ImageProblem, open_image
from ..infra.faces import load_faces
from ..infra.stage import StageSummary, opt, quiet_opt, skip_bad_opt, workers_opt
from ..infra.workdir import COMPARE, COMPARE_CROPS, COMPARE_FACES

DEFAULT_GATE = 0.5
THRESHOLDS = (0.05, 0.10)


# ---- landmark comparison -------------------------------------------------------------------

@dataclass
class FaceMatch:
    """One stored face and its regenerated counterpart (either may be absent)."""
    obj_id: str
    status: str                      # matched | missed | extra
    stored_face_idx: Optional[int] = None
    regen_face_idx: Optional[int] = None
    nme: Optional[float] = None
    regions: dict = field(default_factory=dict)
    iou: Optional[float] = None
    stored_shrink: Optional[int] = None
    regen_shrink: Optional[int] = None
    eye_distance: Optional[float] = None   # the matching cost, full-res pixels
    inter_ocular: Optional[float] = None   # the normaliser, full-res pixels

    def to_json(self) -> dict:
        return {k: _round(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: dict) -> "FaceMatch":
        """A compare_faces.jsonl line; ValueError when a field has the wrong type (a
        damaged line)."""
        if not isinstance(d, dict):
            raise ValueError("not an object")
        kw = {k: d.get(k) for k in cls.__dataclass_fields__ if k in d}
        if not isinstance(kw.get("obj_id"), str) or kw.get("status") not in (MATCHED, MISSED, EXTRA):
            raise ValueError("needs obj_id and status matched | missed | extra")
        for k in ("stored_face_idx", "regen_face_idx", "stored_shrink", "regen_shrink"):
            if kw.get(k) is not None and not _is_int(kw[k]):
                raise ValueError(f"{k}: expected an integer")
        for k in ("nme", "iou", "eye_distance", "inter_ocular"):
            if kw.get(k) is not None and not _is_number(kw[k]):
                raise ValueError(f"{k}: expected a number")
        regions = kw.get("regions")
        if regions is not None and not (isinstance(regions, dict) and all(_is_number(v) for v in regions.values())):
            raise ValueError("regions: expected {region: number}")
        if kw.get("regions") is None:
            kw.pop("regions", None)
        return cls(**kw)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _round(v):
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def eye_cost(stored_lm: np.ndarray, regen_lm: np.ndarray) -> float:
    """Mean of the left- and right-eye-centre distances, full-res pixels."""
    (sl, sr), (rl, rr) = geometry.eye_centres(stored_lm), geometry.eye_centres(regen_lm)
    d = lambda a, b: float(np.hypot(*(a.astype(np.float64) - b)))  # noqa: E731
    return 0.5 * (d(sl, rl) + d(sr, rr))


def landmark_errors(stored_lm: np.ndarray, regen_lm: np.ndarray) -> tuple:
    """(NME, {region: NME}) normalised by the stored outer-eye-corner distance."""
    inter_ocular = geometry.inter_ocular(stored_lm)
    dist = np.hypot(*(regen_lm.astype(np.float64) - stored_lm.astype(np.float64)).T)
    if inter_ocular <= 0:
        return float("nan"), {r: float("nan") for r in geometry.REGIONS}
    regions = {name: float(dist[s].mean() / inter_ocular) for name, s in geometry.REGIONS.items()}
    return float(dist.mean() / inter_ocular), regions


def match_object(obj_id: str, stored: list, regen: list, gate: float = DEFAULT_GATE) -> list:
    """Optimal gated assignment of one object's faces; matched and missed in stored order,
    then extras in regenerated order."""
    from scipy.optimize import linear_sum_assignment  # scipy: loaded only when matching
    s_lm = [_full(f) for f in stored]
    r_lm = [_full(f) for f in regen]
    pairs: dict[int, int] = {}
    if stored and regen:
        cost = np.array([[eye_cost(a, b) for b in r_lm] for a in s_lm])
        limit = np.array([gate * geometry.inter_ocular(a) for a in s_lm])[:, None]
        big = 1e12
        gated = np.where(cost <= limit, cost, big)
        rows, cols = linear_sum_assignment(gated)
        pairs = {int(i): int(j) for i, j in zip(rows, cols) if gated[i, j] < big}
    out = []
    for i, s in enumerate(stored):
        if i not in pairs:
            out.append(FaceMatch(obj_id, MISSED, stored_face_idx=s.face_idx,
                                 stored_shrink=s.face_spec.shrink,
                                 inter_ocular=geometry.inter_ocular(s_lm[i])))
            continue
        j = pairs[i]
        r = regen[j]
        nme, regions = landmark_errors(s_lm[i], r_lm[j])
        iou = box_iou(geometry.rect_full(s.face_spec.rect, s.face_spec.shrink),
                                geometry.rect_full(r.face_spec.rect, r.face_spec.shrink))
        out.append(FaceMatch(obj_id, MATCHED, s.face_idx, r.face_idx, nme, regions, iou,
                             s.face_spec.shrink, r.face_spec.shrink, eye_cost(s_lm[i], r_lm[j]),
                             geometry.inter_ocular(s_lm[i])))
    taken = set(pairs.values())
    for j, r in enumerate(regen):
        if j not in taken:
            out.append(FaceMatch(obj_id, EXTRA, regen_face_idx=r.face_idx,
                                 regen_shrink=r.face_spec.shrink))
    return out


def _full(rec: FaceRecord) -> np.ndarray:
    return geometry.landmarks_full(rec.face_spec.landmarks, rec.face_spec.shrink)


def compare_faces(stored: list, regen: list, gate: float = DEFAULT_GATE) -> list:
    """Match every object's faces: objects in stored order, then objects only regenerated."""
    by_obj_s: dict[str, list] = {}
    by_obj_r: dict[str, list] = {}
    for f in stored:
        by_obj_s.setdefault(f.obj_id, []).append(f)
    for f in regen:
        by_obj_r.setdefault(f.obj_id, []).append(f)
    order = list(by_obj_s) + [o for o in by_obj_r if o not in by_obj_s]
    out: list = []
    for obj in order:
        out += match_object(obj, by_obj_s.get(obj, []), by_obj_r.get(obj, []), gate)
    return out


@dataclass
class CompareStats:
    matched: int
    missed: int
    extra: int
    median_nme: Optional[float]
    p90_nme: Optional[float]
    within: dict              # threshold -> share of matched faces
    region_median_nme: dict
    median_iou: Optional[float]
    same_shrink: Optional[float]  # share of matched faces detected at the stored shrink
    objects: int
    objects_missing: int      # stored objects with no regenerated face at all
    gate: float

    def to_json(self) -> dict:
        d = {"matched": self.matched, "missed": self.missed, "extra": self.extra,
             "median_nme": self.median_nme, "p90_nme": self.p90_nme}
        for t, share in self.within.items():
            d[f"within_{t:.2f}"] = share
        d.update({"region_median_nme": self.region_median_nme, "median_iou": self.median_iou,
                  "same_shrink": self.same_shrink, "objects": self.objects,
                  "objects_missing": self.objects_missing, "gate": self.gate,
                  "nme_normaliser": "outer eye corners (36, 45) of the stored face"})
        return _round(d)


def run_stats(matches: list, gate: float = DEFAULT_GATE) -> CompareStats:
    m = [x for x in matches if x.status == MATCHED and x.nme is not None and math.isfinite(x.nme)]
    nme = np.array([x.nme for x in m])
    q = (lambda a, p: float(np.percentile(a, p)) if len(a) else None)  # noqa: E731
    regions = {r: q(np.array([x.regions[r] for x in m]), 50) for r in geometry.REGIONS}
    objs = {x.obj_id for x in matches if x.status != EXTRA}
    objs_hit = {x.obj_id for x in matches if x.status in (MATCHED, EXTRA)}
    obj_missing = {x.obj_id for x in matches if x.status == MISSED} - objs_hit
    return CompareStats(
        matched=sum(x.status == MATCHED for x in matches),
        missed=sum(x.status == MISSED for x in matches),
        extra=sum(x.status == EXTRA for x in matches),
        median_nme=q(nme, 50), p90_nme=q(nme, 90),
        within={t: (float((nme <= t).mean()) if len(nme) else None) for t in THRESHOLDS},
        region_median_nme=regions,
        median_iou=q(np.array([x.iou for x in m]), 50),
        same_shrink=float(np.mean([x.stored_shrink == x.regen_shrink for x in m])) if m else None,
        objects=len(objs), objects_missing=len(obj_missing), gate=gate)


def stats_line(stats: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    return (f"compare: {stats['matched']} matched, {stats['missed']} missed, {stats['extra']} extra; "
            f"NME median {f(stats['median_nme'])}, p90 {f(stats['p90_nme'])}; "
            f"within 0.05: {pct(stats['within_0.05'])}, within 0.10: {pct(stats['within_0.10'])}")


# ---- crop comparison -----------------------------------------------------------------------

@dataclass
class CropDiff:
    """One crop name compared across folders A and B."""
    name: str
    status: str              # ok | only_in_a | only_in_b | size_mismatch | unreadable
    psnr: Optional[float] = None  # None when identical (infinite) or not compared
    max_diff: Optional[int] = None
    identical: bool = False
    reason: str = ""

    def to_json(self) -> dict:
        return _round(dict(self.__dict__))


@dataclass(frozen=True)
class CropPair:
    name: str
    a: str
    b: str


def compare_crop_pair(pair: CropPair) -> CropDiff:
    if not pair.a:
        return CropDiff(pair.name, ONLY_IN_B)
    if not pair.b:
        return CropDiff(pair.name, ONLY_IN_A)
    try:  # the project's decode guard: a pixel limit read from the header, before decoding
        limit = "a crop is at most 8192x8192"
        with open_image(pair.a, MAX_CROP_PIXELS, limit_name=limit) as ia, \
                open_image(pair.b, MAX_CROP_PIXELS, limit_name=limit) as ib:
            a = np.asarray(ia.convert("RGB"))
            b = np.asarray(ib.convert("RGB"))
    except ImageProblem as e:
        return CropDiff(pair.name, UNREADABLE, reason=e.reason)
    except Exception as e:  # permission, a decoder error after the header ...
        return CropDiff(pair.name, UNREADABLE, reason=str(e))
    if a.shape != b.shape:
        return CropDiff(pair.name, SIZE_MISMATCH,
                        reason=f"{a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    psnr, mx = psnr_and_max(a, b)
    return CropDiff(pair.name, OK, None if math.isinf(psnr) else psnr, mx, math.isinf(psnr))


def crop_pairs(a_dir: Path, b_dir: Path) -> list:
    """PNG names present in either folder, sorted; a missing side has an empty path."""
    for d in (a_dir, b_dir):
        if not d.is_dir():
            raise UsageError(f"--crops: {d} is not a folder")
    a = {p.name: str(p) for p in a_dir.glob("*.png")}
    b = {p.name: str(p) for p in b_dir.glob("*.png")}
    if not a and not b:
        raise UsageError(f"--crops: no .png files in {a_dir} or {b_dir}")
    return [CropPair(n, a.get(n, ""), b.get(n, "")) for n in sorted(set(a) | set(b))]


def compare_crops(a_dir: Path, b_dir: Path, workers: int = 1, quiet: bool = True) -> list:
    pairs = crop_pairs(a_dir, b_dir)
    out = []
    with Progress(len(pairs), "compare crops", quiet=quiet, unit="crop") as bar:
        for d in LocalExecutor(min(workers, len(pairs))).imap(compare_crop_pair, pairs):
            out.append(d)
            bar.update(1)
    return out


def crop_summary(diffs: list) -> dict:
    ok = [d for d in diffs if d.status == OK]
    finite = np.array([d.psnr for d in ok if d.psnr is not None])
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.status] = counts.get(d.status, 0) + 1
    return _round({
        "crops": len(diffs), "compared": len(ok), "identical": sum(d.identical for d in ok),
        "statuses": counts,
        "median_psnr": float(np.median(finite)) if len(finite) else None,
        "min_psnr": float(finite.min()) if len(finite) else None,
        "max_diff": max((d.max_diff for d in ok), default=None),
        "psnr_note": "identical crops (infinite PSNR) are excluded from median/min PSNR",
    })


def crop_summary_line(s: dict) -> str:
    psnr = "-" if s["median_psnr"] is None else f"{s['median_psnr']:.2f} dB"
    worst = "-" if s["min_psnr"] is None else f"{s['min_psnr']:.2f} dB"
    others = ", ".join(f"{v} {k}" for k, v in s["statuses"].items() if k != OK)
    return (f"compare crops: {s['compared']} compared, {s['identical']} identical; median PSNR "
            f"of differing {psnr}, worst {worst}; max pixel difference {s['max_diff']}"
            + (f"; {others}" if others else ""))


# ---- the stage -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareOptions:
    """Options of the compare stage (names and defaults of its CLI flags): landmarks
    (`stored` vs `regenerated` face lists) or crops (`crops` = two folders)."""
    stored: Optional[str] = opt(None, "reference face list, e.g. metfaces.json",
                                metavar="JSON")
    regenerated: Optional[str] = opt(None, "our face list, e.g. WORK/faces.json",
                                     metavar="JSON", shown="DIR/faces.json")
    crops: Optional[tuple] = opt(None, "compare two folders of PNG crops instead",
                                 metavar=("A", "B"), nargs=2)
    out: Optional[str] = opt(None, "write compare.json and report/ here", metavar="DIR",
                             shown="DIR")
    gate: float = opt(DEFAULT_GATE, "max eye-centre distance, inter-ocular units",
                      metavar="X", limits=">= 0")
    source_images: Optional[str] = opt(None, "where source_path resolves (mismatches)",
                                       metavar="DIR", shown="DIR")
    skip_bad: bool = skip_bad_opt("count malformed records instead of stopping")
    workers: int = workers_opt()
    quiet: bool = quiet_opt()


@dataclass
class CompareSummary(StageSummary):
    """compare's outcome: `stats` is what compare.json (or compare_crops.json) holds;
    `source_images` where the report resolves source_path (landmarks mode)."""
    stats: dict = field(default_factory=dict)
    source_images: Optional[Path] = None


def compare(opts: CompareOptions) -> CompareSummary:
    """Regenerated vs stored landmarks, or two folders of crops (pixel differences);
    with `opts.out`, writes the statistics and per-face rows there."""
    if opts.crops:
        if opts.stored or opts.regenerated:
            raise UsageError("use either --crops A B or --stored/--regenerated, not both")
        return compare_crop_folders(opts)
    if not (opts.stored and opts.regenerated):
        raise UsageError("need --stored JSON and --regenerated JSON (or --crops A B); "
                         "see `metfaces-build compare --help`")
    return compare_landmarks(opts)


def compare_landmarks(opts: CompareOptions) -> CompareSummary:
    t0 = time.monotonic()
    stored = load_faces(opts.stored, skip_bad=opts.skip_bad, what="stored face list")
    regen = load_faces(opts.regenerated, skip_bad=opts.skip_bad, what="regenerated face list")
    matches = compare_faces(stored.faces, regen.faces, opts.gate)
    stats = run_stats(matches, opts.gate).to_json()
    stats["bad_records"] = {"stored": len(stored.bad), "regenerated": len(regen.bad)}
    stats["stored_path"] = str(Path(opts.stored).resolve())
    stats["regenerated_path"] = str(Path(opts.regenerated).resolve())
    src = Path(opts.source_images) if opts.source_images else Path(opts.regenerated).resolve().parent
    stats["source_images"] = str(src.resolve())
    outputs = {}
    if opts.out:
        out = Path(opts.out)
        outputs = {"stats": out / COMPARE, "faces": out / COMPARE_FACES}
        atomic_write_json(outputs["stats"], stats)
        write_jsonl(outputs["faces"], (m.to_json() for m in matches))
    counts = {k: stats.get(k, 0) for k in (MATCHED, MISSED, EXTRA)}
    return CompareSummary(stage="compare", counts=counts, outputs=outputs,
                          elapsed=time.monotonic() - t0, failed=len(stored.bad) + len(regen.bad),
                          lines=[stats_line(stats)], stats=stats, source_images=src)


def compare_crop_folders(opts: CompareOptions) -> CompareSummary:
    t0 = time.monotonic()
    a, b = (Path(p) for p in opts.crops)
    diffs = compare_crops(a, b, opts.workers, opts.quiet)
    summary = crop_summary(diffs)
    summary["a"], summary["b"] = str(a.resolve()), str(b.resolve())
    outputs = {}
    if opts.out:
        out = Path(opts.out)
        outputs = {"stats": out / COMPARE_CROPS, "crops": (out / COMPARE_CROPS).with_suffix(".jsonl")}
        atomic_write_json(outputs["stats"], summary)
        write_jsonl(outputs["crops"], (d.to_json() for d in diffs))
    bad = [d for d in diffs if d.status != OK]
    notes = [f"  {d.status}: {d.name} {d.reason}".rstrip() for d in bad[:10]]
    return CompareSummary(stage="compare", counts=dict(summary["statuses"]), outputs=outputs,
                          elapsed=time.monotonic() - t0, failed=len(bad),
                          lines=[crop_summary_line(summary)], notes=notes, stats=summary)
