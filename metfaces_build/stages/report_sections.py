"""report's sections, one per stage that left files: the pipeline's outcome counts,
the filter (counts by reason, thresholds, kept and rejected sheets), compare (landmarks
regenerated vs stored, the worst drawn) and the crops compared. Each returns None when
its stage has not run; report.py puts them on one page."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import UsageError
from ..core.records import FaceKey, FaceRecord
from ..core.status import MATCHED, MISSED
from ..infra.faces import load_faces
from ..infra.files import read_json, read_jsonl
from ..infra.jsonstream import read_json_items
from ..infra.readers import read_rejections
from ..infra.workdir import Work, as_work, clean_filter_summary
from .compare import FaceMatch
from .report_draw import (REGEN_COLOUR, REJECT_INK, STORED_COLOUR, Tile, contact_sheet,
                          face_crops, mismatch_tile, save_png)
from .report_page import Figure, Heading, Para, Table, _cell, _pct


# ---- sections -----------------------------------------------------------------------------

@dataclass
class Section:
    blocks: list
    stats: dict
    sheets: dict  # name -> PNG path


def _str(v) -> str:
    return v if isinstance(v, str) else ""


def _faces_by_key(path: Path) -> dict:
    if not path.is_file():
        return {}
    return {f.key: f for f in load_faces(path, skip_bad=True, pack=True).faces}  # landmarks packed


def _iter_faces(path: Path):
    """The records `_faces_by_key` gives, in order, one at a time (landmarks packed): a
    list file is read item by item, so a report over 200,000 faces holds none of them
    whole. A file that is not a list (no stage writes one) is read whole."""
    if not path.is_file():
        return
    items = read_json_items(path, "face list")
    if not hasattr(items, "__next__"):
        yield from _faces_by_key(path).values()
        return
    seen: set = set()
    for i, d in enumerate(items):
        try:
            rec = FaceRecord.from_json(d, i)
        except ValueError:
            continue  # as load_faces(skip_bad=True): a bad record is left out
        if rec.key not in seen:  # a duplicate: the first one counts
            seen.add(rec.key)
            yield rec.replace(face_spec=rec.face_spec.packed())


def _kept_measures(path: Path) -> tuple:
    """(kept faces, their numeric sharpness values, how many are tagged grayscale) of
    filtered.json in one streamed pass: the numbers the filter section shows."""
    n, sharp, gray = 0, [], 0
    for f in _iter_faces(path):
        n += 1
        m = f.extra.get("filter") if isinstance(f.extra.get("filter"), dict) else {}
        s = m.get("sharpness")
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            sharp.append(s)
        gray += _gray(m)
    return n, sharp, gray


def _spread(items: list, n: int) -> list:
    """Up to n items evenly spread over the list (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def filter_section(work: Path, out: Path, source_root: Optional[Path], max_tiles: int) -> Optional[Section]:
    """Counts by reason, thresholds, kept and rejected contact sheets."""
    layout = Work(work)
    if not layout.filtered_json.is_file():
        return None
    summary = clean_filter_summary(read_json(layout.filter_summary_json)
                                   if layout.filter_summary_json.is_file() else {}) or {}
    # streamed: the counts and measures, then only the records the sheet shows
    n_kept, sharp, gray = _kept_measures(layout.filtered_json)
    picked = set(_spread(range(n_kept), max_tiles))
    shown = [f for i, f in enumerate(_iter_faces(layout.filtered_json)) if i in picked]
    rejected = list(read_rejections(layout.rejected_jsonl))  # damaged lines left out
    src = summary.get("source_images")
    root = source_root or Path(src if isinstance(src, str) and src else work)
    counts = reason_counts(rejected)
    blocks = filter_blocks(n_kept, sharp, gray, rejected, counts, summary)
    if layout.review_page.parent == out:
        blocks.append(Para(f"Every face with its decision and reasons, to sort and overrule: "
                           f"{layout.review_page.name} in this folder (written by run, demo and "
                           f"`metfaces-build review`; open it in a browser)."))
    sheets = {"kept": out / "kept.png", "rejected": out / "rejected.png"}
    blocks.append(kept_sheet(shown, n_kept, root, layout.images_dir, sheets["kept"]))
    blocks.append(rejected_sheet(rejected, layout.faces_json, root, sheets["rejected"],
                                 max_tiles))
    stats = {"faces": n_kept + len(rejected), "kept": n_kept, "rejected": len(rejected),
             "reasons": counts, "grayscale_kept": gray, "config": summary.get("config")}
    return Section(blocks, stats, sheets)


def reason_counts(rejected: list) -> dict:
    """{failed test: faces that failed it} (a face may fail several)."""
    counts: dict[str, int] = {}
    for r in rejected:
        for reason in r.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _gray(m: dict) -> bool:
    return bool(isinstance(m.get("grayscale"), dict) and m["grayscale"].get("grayscale"))


def filter_blocks(n_kept: int, sharp: list, gray: int, rejected: list, counts: dict,
                  summary: dict) -> list:
    """The filter's numbers: faces in and out, counts by test, kept faces' measures
    (`_kept_measures`) and the thresholds it held them to."""
    total = n_kept + len(rejected)
    blocks = [Heading("Filter"),
              Para(f"{total} faces in, {n_kept} kept, {len(rejected)} rejected. A face may "
                   f"fail several tests; each failed test is counted below.")]
    if counts:
        blocks.append(Table(["test failed", "faces", "share of input"],
                            [[k, v, _pct(v / total)] for k, v in
                             sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]))
    if sharp:
        crop = (summary.get("config") or {}).get("crop_size", 128)
        blocks.append(Para(f"Kept faces tagged grayscale: {gray}. Sharpness (variance of the "
                           f"Laplacian of a {crop} px crop) of kept faces: median {np.median(sharp):.1f}, "
                           f"10th percentile {np.percentile(sharp, 10):.1f}."))
    cfg = summary.get("config")
    if cfg:
        blocks.append(Para("qsize: the side, in source pixels, of the square a face is cropped "
                           "from (MetFaces' term); below the output size the crop is upscaled."))
        blocks.append(Table(["threshold", "value", "meaning"],
                            [[k, threshold_text(v), THRESHOLD_MEANING.get(k, "")]
                             for k, v in cfg.items()]))
    return blocks


def kept_sheet(shown: list, n_kept: int, root: Path, images_dir: Path, path: Path) -> Figure:
    """A contact sheet of the kept faces `shown` (evenly sampled from `n_kept`), saved at
    `path`."""
    pics = face_crops(shown, root, images_dir)
    tiles = [Tile(p, [str(f.key), _kept_caption(f)]) for f, p in zip(shown, pics)]
    save_png(contact_sheet(tiles, title=f"Kept faces ({len(shown)} of {n_kept})"), path)
    return Figure(path, f"Kept faces, {len(shown)} of {n_kept} evenly sampled "
                        "(aligned crops when aligned, else approximate crops).")


def rejected_sheet(rejected: list, faces_json: Path, root: Path, path: Path,
                   max_tiles: int) -> Figure:
    """A contact sheet of rejected faces (every first reason shown) from their records in
    `faces_json`, saved at `path`. The face list is streamed twice, for its keys and then
    for the records shown, never held."""
    known = {f.key for f in _iter_faces(faces_json)}
    shown = _spread_by_reason([r for r in rejected if FaceKey(r.obj_id, r.face_idx) in known],
                              max_tiles)
    wanted = {FaceKey(r.obj_id, r.face_idx) for r in shown}
    faces = {f.key: f for f in _iter_faces(faces_json) if f.key in wanted}
    pics = face_crops([faces[FaceKey(r.obj_id, r.face_idx)] for r in shown], root, None)
    tiles = [Tile(p, [str(FaceKey(r.obj_id, r.face_idx)), ", ".join(r.reasons), _reject_detail(r)],
                  ink=REJECT_INK) for r, p in zip(shown, pics)]
    save_png(contact_sheet(tiles, title=f"Rejected faces ({len(shown)} of {len(rejected)}), "
                                        "with reasons"), path)
    return Figure(path, "Rejected faces (approximate crops), labelled with the tests they failed.")


# what each filter threshold means (FilterConfig's fields), for the report's table
THRESHOLD_MEANING = {
    "min_size": "smallest qsize, source pixels",
    "min_score": "smallest detector score, per detector",
    "max_roll": "largest head tilt, degrees",
    "min_mouth_drop": "mouth below the eye line, in eye distances",
    "eye_jaw_min": "outer-eye distance / jaw width, at least",
    "eye_jaw_max": "outer-eye distance / jaw width, at most",
    "max_yaw": "left/right asymmetry (a turned head), at most",
    "max_landmark_outside": "landmarks outside the image, in inter-ocular distances",
    "max_padding": "share of the crop square outside the image",
    "max_overlap": "box overlap (IoU) with another face of the same image",
    "max_hash_distance": "perceptual-hash bits under which two faces are near-duplicates",
    "min_sharpness": "smallest variance of the Laplacian",
    "grayscale_chroma": "colour spread under which a face counts as grayscale",
    "reject_grayscale": "reject grayscale faces (else tag them)",
    "crop_tests": "measure sharpness, grayscale and duplicates on a crop",
    "crop_size": "side of that measurement crop, pixels",
}


def threshold_text(v) -> str:
    """A threshold as a person reads it: `cnn 0.3, hog 0`, `off`, `yes`."""
    if v is None:
        return "off (tag only)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in sorted(v.items())) or "-"
    return _cell(v)


def _kept_caption(f) -> str:
    v = f.extra.get("filter", {})
    q = v.get("qsize")
    gray = (v.get("grayscale") or {}).get("grayscale")
    return (f"qsize {q:.0f}" if isinstance(q, (int, float)) else "") + (" gray" if gray else "")


def _reject_detail(r) -> str:
    """The measured value behind the first failed test, e.g. `qsize 512 < 1024`."""
    if not r.reasons:
        return ""
    first = r.reasons[0]
    v = r.values.get(first)
    if first == "resolution":
        return f"qsize {_cell(r.values.get('qsize'))}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
    return f"measured {_cell(v)}"


def _spread_by_reason(rejected: list, n: int) -> list:
    """Round-robin over first reasons, so every kind of rejection shows on the sheet."""
    groups: dict[str, list] = {}
    for r in rejected:
        groups.setdefault(r.reasons[0] if r.reasons else "?", []).append(r)
    order = sorted(groups)
    out: list = []
    while len(out) < n and any(groups.values()):
        for k in order:
            if groups[k] and len(out) < n:
                out.append(groups[k].pop(0))
    return out


def compare_section(work: Path, out: Path, source_root: Optional[Path], worst_n: int = 12) -> Optional[Section]:
    """Run statistics, per-region medians, the worst faces and their drawing."""
    layout = as_work(work)
    if not layout.compare_json.is_file():
        return None
    stats = compare_stats(layout)
    matches = []
    for d in read_jsonl(layout.compare_faces_jsonl):
        try:
            matches.append(FaceMatch.from_json(d))
        except ValueError:  # a damaged line: left out
            continue
    worst = sorted((x for x in matches if x.status == MATCHED and x.nme is not None),
                   key=lambda x: (-x.nme, x.obj_id, x.stored_face_idx))[:worst_n]
    blocks = compare_blocks(stats, matches, worst)
    root = source_root or Path(_str(stats.get("source_images")) or work)
    sheet = mismatch_sheet(stats, worst, root, out / "mismatch.png")
    if sheet is not None:
        blocks.append(sheet)
    return Section(blocks, stats, {"mismatch": sheet.path} if sheet is not None else {})


COMPARE_NEEDS = ("matched", "missed", "extra", "median_nme", "p90_nme")


def compare_stats(layout: Work) -> dict:
    """compare.json's statistics; UsageError when it is damaged."""
    stats = read_json(layout.compare_json, "compare.json")
    need = COMPARE_NEEDS
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k), (int, float, type(None))) for k in need) \
            or not all(k in stats for k in need):
        raise UsageError(f"{layout.compare_json} is damaged (expected compare's statistics with "
                         f"{', '.join(need)}): run compare again")
    return stats


def compare_blocks(stats: dict, matches: list, worst: list) -> list:
    """The statistics table, per-region medians, the worst matches and the unmatched."""
    blocks = [Heading("Landmarks: regenerated vs stored"),
              Para("Faces matched per object on eye-centre distance (gate "
                   f"{stats.get('gate')} x inter-ocular). NME = mean landmark error over the stored "
                   "outer-eye-corner distance, in full-resolution pixels."),
              Table(["matched", "missed", "extra", "median NME", "p90 NME", "within 0.05",
                     "within 0.10", "median rect IoU", "same shrink"],
                    [[stats["matched"], stats["missed"], stats["extra"], stats["median_nme"],
                      stats["p90_nme"], _pct(stats.get("within_0.05")), _pct(stats.get("within_0.10")),
                      stats.get("median_iou"), _pct(stats.get("same_shrink"))]])]
    reg = stats.get("region_median_nme") or {}
    if isinstance(reg, dict) and reg:
        blocks.append(Table(["region"] + list(reg), [["median NME"] + list(reg.values())]))
    if worst:
        blocks.append(Table(["obj_id", "stored face", "regen face", "NME", "worst region", "IoU",
                             "shrink stored/regen"],
                            [[x.obj_id, x.stored_face_idx, x.regen_face_idx, x.nme,
                              max(x.regions, key=x.regions.get) if x.regions else "-", x.iou,
                              f"{x.stored_shrink}/{x.regen_shrink}"] for x in worst]))
    lost = [x for x in matches if x.status != MATCHED][:20]
    if lost:
        blocks.append(Para("Unmatched (first 20): " + ", ".join(
            f"{FaceKey(x.obj_id, x.stored_face_idx if x.status == MISSED else x.regen_face_idx)} "
            f"{x.status}" for x in lost)))
    return blocks


def mismatch_sheet(stats: dict, worst: list, root: Path, path: Path) -> Optional[Figure]:
    """The worst matched faces drawn on their source (saved at `path`), or None when no
    face list of compare's is there to draw them from."""
    stored = _faces_by_key(Path(_str(stats.get("stored_path"))))
    regen = _faces_by_key(Path(_str(stats.get("regenerated_path"))))
    pairs = [(x, stored.get(FaceKey(x.obj_id, x.stored_face_idx)),
              regen.get(FaceKey(x.obj_id, x.regen_face_idx))) for x in worst]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if not pairs:
        return None
    tiles = [Tile(mismatch_tile(s, r, root), [f"{x.obj_id}: stored #{x.stored_face_idx}, ours #{x.regen_face_idx}",
                                              f"NME {x.nme:.3f}  IoU {_cell(x.iou)}"])
             for x, s, r in pairs]
    save_png(contact_sheet(tiles, columns=4, tile=260, title="Worst landmark mismatches",
                           legend=[(STORED_COLOUR, "stored"), (REGEN_COLOUR, "regenerated")],
                           caption_lines=2), path)
    return Figure(path, "Worst matched faces: stored landmarks green, regenerated magenta, "
                        "orange lines joining each pair, on the (lightened) source image.")


def pipeline_section(work: Path) -> Optional[Section]:
    """Per-stage outcome counts read from the stages' own files (fetch, detect, align)."""
    layout = Work(work)
    outcomes = layout.outcomes()
    if not outcomes:
        return None
    files = {"fetch": layout.rel(layout.objects_jsonl),
             "detect": f"{layout.rel(layout.detect_journal)} ({layout.face_count()} faces)",
             "align": layout.rel(layout.aligned_manifest)}
    stats = {stage: dict(c) for stage, c in outcomes.items()}
    table = [[stage, files[stage], sum(c.values()),
              ", ".join(f"{v} {k}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))]
             for stage, c in outcomes.items()]
    blocks = [Heading("Pipeline"),
              Para("Outcome of every item, as each stage recorded it (reasons are in its file)."),
              Table(["stage", "file", "items", "outcomes"], table)]
    return Section(blocks, stats, {})


def crops_section(work: Path) -> Optional[Section]:
    if not as_work(work).compare_crops_json.is_file():
        return None
    s = read_json(as_work(work).compare_crops_json, "compare_crops.json")
    blocks = [Heading("Crops: A vs B"),
              Para(f"A = {s.get('a')}, B = {s.get('b')}."),
              Table(["crops", "compared", "identical", "median PSNR (dB)", "min PSNR (dB)",
                     "max pixel diff", "statuses"],
                    [[s["crops"], s["compared"], s["identical"], s["median_psnr"], s["min_psnr"],
                      s["max_diff"], ", ".join(f"{k} {v}" for k, v in s["statuses"].items())]])]
    return Section(blocks, s, {})
