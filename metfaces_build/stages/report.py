"""Reports a person reads: markdown, a self-contained HTML page, stats.json, contact sheets.

`write_report(work_dir)` gathers whatever the stages left in a work directory (filter:
filtered.json, rejected.jsonl, filter_summary.json; compare: compare.json,
compare_faces.jsonl, compare_crops.json) and writes `work_dir/report/`:

  report.md     the numbers, tables and links to the sheets
  report.html   the same page with every image inlined (base64), one file to send around
  stats.json    the numbers behind the page
  kept.png      a contact sheet of kept faces
  rejected.png  rejected faces, each labelled with its reasons
  mismatch.png  the worst landmark mismatches: stored (green) and regenerated (magenta)
                landmarks drawn on the source image

Pillow only. Tiles come from aligned crops in work_dir/images/ when they exist, else from
a quick approximate crop of the source image.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import geometry
from ..core.errors import UsageError
from ..core.records import FaceKey
from ..infra.stage import StageSummary, force_opt, opt
from ..infra.files import read_json_or_none
from ..infra.workdir import (COMPARE, FACES, FILTER_SUMMARY, FILTERED, IMAGES_DIR, MANIFEST,
                             OBJECTS, REJECTED, Work, as_work)

# the files a report is made from: a report stamped with the same ones is current
REPORT_INPUTS = (OBJECTS, FACES, FILTERED, REJECTED, FILTER_SUMMARY, f"{IMAGES_DIR}/{MANIFEST}",
                 COMPARE)

STORED_COLOUR = (0, 200, 70)
REGEN_COLOUR = (235, 0, 200)
BG = (250, 250, 248)
INK = (30, 30, 30)
REJECT_INK = (170, 20, 20)


# ---- drawing ------------------------------------------------------------------------------

def load_font(size: int = 13):
    """Pillow's built-in scalable font (FreeType builds), else its bitmap font."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


@dataclass
class Tile:
    """One picture on a contact sheet with up to three short caption lines."""
    image: object  # PIL image (any size; fitted into the tile)
    lines: list = field(default_factory=list)
    ink: tuple = INK


def contact_sheet(tiles: list, columns: int = 6, tile: int = 180, title: str = "",
                  legend: Optional[list] = None, caption_lines: int = 3):
    """A grid of tiles with captions below each, a title and an optional colour legend."""
    from PIL import Image, ImageDraw
    font, title_font = load_font(12), load_font(18)
    pad, line_h = 8, 15
    cap_h = caption_lines * line_h + 4
    columns = max(1, min(columns, len(tiles) or 1))
    rows = (len(tiles) + columns - 1) // columns
    head = 34 if title else 0
    head += 20 if legend else 0
    w = pad + columns * (tile + pad)
    h = head + pad + max(rows, 1) * (tile + cap_h + pad)
    sheet = Image.new("RGB", (w, h), BG)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 8), title, fill=INK, font=title_font)
    if legend:
        x = pad
        for colour, text in legend:
            draw.ellipse((x, head - 14, x + 10, head - 4), fill=colour)
            draw.text((x + 14, head - 16), text, fill=INK, font=font)
            x += 24 + int(draw.textlength(text, font=font))
    if not tiles:
        draw.text((pad, head + pad), "(none)", fill=INK, font=font)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        x0, y0 = pad + c * (tile + pad), head + pad + r * (tile + cap_h + pad)
        im = t.image.convert("RGB")
        im.thumbnail((tile, tile))
        sheet.paste(im, (x0 + (tile - im.width) // 2, y0 + (tile - im.height) // 2))
        for i, line in enumerate(t.lines[:caption_lines]):
            draw.text((x0, y0 + tile + 2 + i * line_h), _fit(draw, line, font, tile),
                      fill=t.ink if i else INK, font=font)
    return sheet


def _fit(draw, text: str, font, width: int) -> str:
    """Trim text with an ellipsis so it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


# 68-point outlines (open or closed polylines) that make a face shape readable at a glance
OUTLINES = [(range(0, 17), False), (range(17, 22), False), (range(22, 27), False),
            (range(27, 31), False), (range(31, 36), False), (range(36, 42), True),
            (range(42, 48), True), (range(48, 60), True), (range(60, 68), True)]


def draw_points(draw, pts: np.ndarray, colour: tuple, radius: float = 2.0) -> None:
    for x, y in pts:
        draw.ellipse((x - radius - 1, y - radius - 1, x + radius + 1, y + radius + 1), fill=(0, 0, 0))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def draw_face(draw, pts: np.ndarray, colour: tuple, radius: float = 2.0) -> None:
    """A 68-point face: region outlines, then the points (black-rimmed, visible on any art)."""
    for idx, closed in OUTLINES:
        line = [tuple(map(float, pts[i])) for i in idx]
        draw.line(line + ([line[0]] if closed else []), fill=colour, width=1)
    draw_points(draw, pts, colour, radius)


def placeholder(size: int, text: str):
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (size, size), (205, 205, 205))
    d = ImageDraw.Draw(im)
    d.text((8, size // 2 - 8), text, fill=INK, font=load_font(12))
    return im


# ---- pictures of faces -------------------------------------------------------------------

def face_crops(recs: list, source_root: Path, images_dir: Optional[Path], size: int = 180) -> list:
    """A picture per record: the aligned crop when it exists, else a quick crop from the
    source (one decode per source image), else a grey placeholder saying why."""
    from PIL import Image

    from .filter import measurement_crops
    from ..infra.images import ImageProblem, open_image
    from ..infra.files import safe_join
    out: list = [None] * len(recs)
    todo: dict[str, list] = {}
    for i, r in enumerate(recs):
        p = images_dir / r.crop_name if images_dir else None
        if p is not None and p.is_file():
            try:
                with Image.open(p) as im:
                    out[i] = im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
                continue
            except OSError:
                pass
        todo.setdefault(r.source_path, []).append(i)
    for sp, idxs in todo.items():
        try:
            path = safe_join(source_root, sp)
            head = open_image(path, load=False)
            dims = head.size
            head.close()
            crops = measurement_crops(str(path), dims, [recs[i] for i in idxs], size)
        except (ImageProblem, ValueError) as e:
            why = getattr(e, "status", "bad path")
            crops = [placeholder(size, why) for _ in idxs]
        for i, c in zip(idxs, crops):
            out[i] = c
    return out


def source_region(path: Path, box: tuple, size: int):
    """The square `box` (x0, y0, side) of a source image, `size` pixels wide, decoding
    at reduced scale when the region is large. Returns (image, pixels per source pixel)."""
    from PIL import Image

    from ..infra.images import open_image
    x0, y0, side = box
    head = open_image(path, load=False)
    w, h = head.size
    head.close()
    scale = side / (2.0 * size)
    im = open_image(path, draft=("RGB", (int(w / scale), int(h / scale))) if scale >= 2 else None)
    f = im.width / w  # decoded pixels per source pixel
    region = im.convert("RGB").crop((int(round(x0 * f)), int(round(y0 * f)),
                                     int(round((x0 + side) * f)), int(round((y0 + side) * f))))
    return region.resize((size, size), Image.Resampling.LANCZOS), size / side


def mismatch_tile(stored, regen, source_root: Path, size: int = 260):
    """Both landmark sets on the source around the face: stored green, regenerated magenta,
    orange lines joining corresponding points."""
    from PIL import Image, ImageDraw

    from ..infra.images import ImageProblem
    from ..infra.files import safe_join
    s_lm, r_lm = (geometry.landmarks_full(f.face_spec.landmarks, f.face_spec.shrink).astype(np.float64) + 0.5
                  for f in (stored, regen))  # + 0.5: pixel index -> continuous coordinate
    pts = np.vstack([s_lm, r_lm])
    io_d = max(geometry.inter_ocular(s_lm), 1.0)
    lo, hi = pts.min(axis=0) - 0.6 * io_d, pts.max(axis=0) + 0.6 * io_d
    side = float(max(hi - lo))
    centre = (lo + hi) / 2
    x0, y0 = centre - side / 2
    image = None
    for sp in dict.fromkeys((regen.source_path, stored.source_path)):
        try:
            image, k = source_region(safe_join(source_root, sp), (x0, y0, side), size)
            break
        except (ImageProblem, ValueError):
            continue
    if image is None:
        image, k = placeholder(size, "source image not found"), size / side
    # washed out, so the landmarks stand out on busy paintings
    image = Image.blend(image.convert("RGB"), Image.new("RGB", image.size, (255, 255, 255)), 0.45)
    draw = ImageDraw.Draw(image)
    s_px, r_px = (s_lm - [x0, y0]) * k, (r_lm - [x0, y0]) * k
    for a, b in zip(s_px, r_px):  # error vectors
        draw.line((tuple(a), tuple(b)), fill=(255, 170, 0), width=1)
    draw_face(draw, s_px, STORED_COLOUR, radius=max(1.5, size / 130))
    draw_face(draw, r_px, REGEN_COLOUR, radius=max(1.5, size / 130))
    return image


# ---- the page: a few block types rendered to markdown and to HTML ----------------------

@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    headers: list
    rows: list


@dataclass
class Figure:
    path: Path  # a PNG in the report folder
    caption: str


def render_markdown(blocks: list, base: Path) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(b.text + "\n")
        elif isinstance(b, Table):
            out.append("| " + " | ".join(map(str, b.headers)) + " |")
            out.append("|" + "|".join("---" for _ in b.headers) + "|")
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path.relative_to(base).as_posix()})\n\n*{b.caption}*\n")
    return "\n".join(out)


def render_html(blocks: list, title: str) -> str:
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
           "color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
           "padding:3px 9px;text-align:left}th{background:#f0f0ec}td.n{text-align:right;"
           "font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #ddd}"
           "figcaption{color:#555;font-style:italic;margin-bottom:1.5em}")
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(
                f"<td class='n'>{html.escape(_cell(c))}</td>" if _numeric(c)
                else f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(b, Figure):
            kind, raw = inline_image(b.path)
            data = base64.b64encode(raw).decode("ascii")
            body.append(f"<figure><img alt='{html.escape(b.caption)}' src='data:{kind};base64,"
                        f"{data}'><figcaption>{html.escape(b.caption)}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def inline_image(path: Path, quality: int = 85) -> tuple:
    """(MIME type, bytes) of a sheet to inline in report.html: a JPEG when that is
    smaller (contact sheets of paintings are photographs: PNG makes them several times
    larger, and the one-file report weighed megabytes), else the PNG itself."""
    from PIL import Image
    png = path.read_bytes()
    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    jpeg = buf.getvalue()
    return ("image/jpeg", jpeg) if len(jpeg) < len(png) else ("image/png", png)


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, str) and v.endswith("%") and v[:-1]
                                           .replace(".", "", 1).isdigit())


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


# ---- sections -----------------------------------------------------------------------------

@dataclass
class Section:
    blocks: list
    stats: dict
    sheets: dict  # name -> PNG path


def _str(v) -> str:
    return v if isinstance(v, str) else ""


def _faces_by_key(path: Path) -> dict:
    from ..infra.faces import load_faces
    if not path.is_file():
        return {}
    return {f.key: f for f in load_faces(path, skip_bad=True, pack=True).faces}  # landmarks packed


def _spread(items: list, n: int) -> list:
    """Up to n items evenly spread over the list (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def filter_section(work: Path, out: Path, source_root: Optional[Path], max_tiles: int) -> Optional[Section]:
    """Counts by reason, thresholds, kept and rejected contact sheets."""
    from ..infra.files import read_json, read_jsonl
    from ..infra.workdir import clean_filter_summary
    from ..core.records import Rejection
    layout = Work(work)
    if not layout.filtered_json.is_file():
        return None
    summary = clean_filter_summary(read_json(layout.filter_summary_json)
                                   if layout.filter_summary_json.is_file() else {}) or {}
    kept = list(_faces_by_key(layout.filtered_json).values())
    rejected = []
    for r in read_jsonl(layout.rejected_jsonl):
        try:
            rejected.append(Rejection.from_json(r))
        except ValueError:  # a damaged line names no face: left out of the counts
            continue
    src = summary.get("source_images")
    root = source_root or Path(src if isinstance(src, str) and src else work)
    total = len(kept) + len(rejected)
    counts: dict[str, int] = {}
    for r in rejected:
        for reason in r.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    blocks = [Heading("Filter"),
              Para(f"{total} faces in, {len(kept)} kept, {len(rejected)} rejected. A face may "
                   f"fail several tests; each failed test is counted below.")]
    if counts:
        blocks.append(Table(["test failed", "faces", "share of input"],
                            [[k, v, _pct(v / total)] for k, v in
                             sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]))
    measures = [f.extra.get("filter") if isinstance(f.extra.get("filter"), dict) else {} for f in kept]
    gray = sum(1 for m in measures if isinstance(m.get("grayscale"), dict) and m["grayscale"].get("grayscale"))
    sharp = [m.get("sharpness") for m in measures]
    sharp = [s for s in sharp if isinstance(s, (int, float)) and not isinstance(s, bool)]
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
    if layout.review_page.parent == out:
        blocks.append(Para(f"Every face with its decision and reasons, to sort and overrule: "
                           f"{layout.review_page.name} in this folder (written by run, demo and "
                           f"`metfaces-build review`; open it in a browser)."))
    sheets = {}
    images_dir = layout.images_dir
    shown = _spread(kept, max_tiles)
    pics = face_crops(shown, root, images_dir)
    tiles = [Tile(p, [str(f.key), _kept_caption(f)]) for f, p in zip(shown, pics)]
    sheets["kept"] = out / "kept.png"
    save_png(contact_sheet(tiles, title=f"Kept faces ({len(shown)} of {len(kept)})"), sheets["kept"])
    blocks.append(Figure(sheets["kept"], f"Kept faces, {len(shown)} of {len(kept)} evenly sampled "
                                         "(aligned crops when aligned, else approximate crops)."))
    faces = _faces_by_key(layout.faces_json)
    shown_r = _spread_by_reason([r for r in rejected if (r.obj_id, r.face_idx) in faces], max_tiles)
    pics = face_crops([faces[(r.obj_id, r.face_idx)] for r in shown_r], root, None)
    tiles = [Tile(p, [str(FaceKey(r.obj_id, r.face_idx)), ", ".join(r.reasons), _reject_detail(r)],
                  ink=REJECT_INK) for r, p in zip(shown_r, pics)]
    sheets["rejected"] = out / "rejected.png"
    save_png(contact_sheet(tiles, title=f"Rejected faces ({len(shown_r)} of {len(rejected)}), "
                                        "with reasons"), sheets["rejected"])
    blocks.append(Figure(sheets["rejected"], "Rejected faces (approximate crops), labelled with "
                                             "the tests they failed."))
    stats = {"faces": total, "kept": len(kept), "rejected": len(rejected), "reasons": counts,
             "grayscale_kept": gray, "config": cfg}
    return Section(blocks, stats, sheets)


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
    from .compare import FaceMatch
    from ..infra.files import read_json, read_jsonl
    layout = as_work(work)
    if not layout.compare_json.is_file():
        return None
    stats = read_json(layout.compare_json, "compare.json")
    need = ("matched", "missed", "extra", "median_nme", "p90_nme")
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k), (int, float, type(None))) for k in need) \
            or not all(k in stats for k in need):
        raise UsageError(f"{layout.compare_json} is damaged (expected compare's statistics with "
                         f"{', '.join(need)}): run compare again")
    matches = []
    for d in read_jsonl(layout.compare_faces_jsonl):
        try:
            matches.append(FaceMatch.from_json(d))
        except ValueError:  # a damaged line: left out
            continue
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
    m = sorted((x for x in matches if x.status == "matched" and x.nme is not None),
               key=lambda x: (-x.nme, x.obj_id, x.stored_face_idx))[:worst_n]
    if m:
        blocks.append(Table(["obj_id", "stored face", "regen face", "NME", "worst region", "IoU",
                             "shrink stored/regen"],
                            [[x.obj_id, x.stored_face_idx, x.regen_face_idx, x.nme,
                              max(x.regions, key=x.regions.get) if x.regions else "-", x.iou,
                              f"{x.stored_shrink}/{x.regen_shrink}"] for x in m]))
    lost = [x for x in matches if x.status != "matched"][:20]
    if lost:
        blocks.append(Para("Unmatched (first 20): " + ", ".join(
            f"{FaceKey(x.obj_id, x.stored_face_idx if x.status == 'missed' else x.regen_face_idx)} "
            f"{x.status}" for x in lost)))
    sheets = {}
    stored = _faces_by_key(Path(_str(stats.get("stored_path"))))
    regen = _faces_by_key(Path(_str(stats.get("regenerated_path"))))
    root = source_root or Path(_str(stats.get("source_images")) or work)
    pairs = [(x, stored.get((x.obj_id, x.stored_face_idx)), regen.get((x.obj_id, x.regen_face_idx)))
             for x in m]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if pairs:
        tiles = [Tile(mismatch_tile(s, r, root), [f"{x.obj_id}: stored #{x.stored_face_idx}, ours #{x.regen_face_idx}",
                                                  f"NME {x.nme:.3f}  IoU {_cell(x.iou)}"])
                 for x, s, r in pairs]
        sheets["mismatch"] = out / "mismatch.png"
        save_png(contact_sheet(tiles, columns=4, tile=260, title="Worst landmark mismatches",
                               legend=[(STORED_COLOUR, "stored"), (REGEN_COLOUR, "regenerated")],
                               caption_lines=2), sheets["mismatch"])
        blocks.append(Figure(sheets["mismatch"], "Worst matched faces: stored landmarks green, "
                                                 "regenerated magenta, orange lines joining each "
                                                 "pair, on the (lightened) source image."))
    return Section(blocks, stats, sheets)


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
    from ..infra.files import read_json
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


# ---- the whole report ---------------------------------------------------------------------

@dataclass
class ReportPaths:
    folder: Path
    markdown: Path
    html: Path
    stats: Path
    sheets: dict


def write_report(work_dir, *, source_images=None, out_dir=None, max_tiles: int = 48,
                 title: str = "MetFaces build report") -> ReportPaths:
    """Write `report/` (or `out_dir`) for whatever outputs `work_dir` holds; sections for
    stages that have not run are left out. Returns the paths written."""
    from ..infra.files import atomic_write_json, atomic_write_text
    from ..infra.executors import library_versions
    work = Path(work_dir)
    out = Path(out_dir) if out_dir else Work(work).report_dir
    out.mkdir(parents=True, exist_ok=True)
    root = Path(source_images) if source_images else None
    sections = {"pipeline": pipeline_section(work),
                "filter": filter_section(work, out, root, max_tiles),
                "compare": compare_section(work, out, root),
                "crops": crops_section(work)}
    blocks: list = [Heading(title, 1), Para(f"Work directory: {work.resolve()}")]
    stats: dict = {"versions": library_versions()}
    sheets: dict = {}
    for name, sec in sections.items():
        if sec is not None:
            blocks += sec.blocks
            stats[name] = sec.stats
            sheets.update(sec.sheets)
    if all(s is None for s in sections.values()):
        blocks.append(Para("Nothing to report yet: run filter or compare first."))
    stats["sheets"] = {k: v.name for k, v in sheets.items()}
    paths = ReportPaths(out, out / "report.md", out / "report.html", out / "stats.json", sheets)
    atomic_write_text(paths.markdown, render_markdown(blocks, out))
    atomic_write_text(paths.html, render_html(blocks, title))
    atomic_write_json(paths.stats, stats)
    return paths


def save_png(image, path: Path) -> Path:
    """Write a PNG atomically (a killed run never leaves half a sheet)."""
    from ..infra.files import atomic_write_bytes
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ---- the stage ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportOptions:
    """Options of the report stage: where source_path resolves for the sheets (default:
    the work directory), where to write (default: WORK/report), tiles per sheet; `force`
    writes it again even when its inputs have not changed since the last report."""
    source_images: Optional[str] = opt(None, "where source_path resolves", metavar="DIR",
                                       shown="--work")
    out_dir: Optional[str] = opt(None, "where to write", metavar="DIR", shown="DIR/report")
    max_tiles: int = opt(48, "faces per contact sheet", metavar="N", limits=">= 1")
    title: str = opt("MetFaces build report", "the report's title", metavar="TEXT")
    force: bool = force_opt("write it even if its inputs are unchanged")


@dataclass
class ReportSummary(StageSummary):
    """report's outcome: the paths written (`paths`) and which sections it holds;
    `up_to_date` when nothing changed since the last report (nothing was written)."""
    paths: Optional[ReportPaths] = None
    sections: list = field(default_factory=list)
    up_to_date: bool = False


def report(work, opts: ReportOptions = ReportOptions()) -> ReportSummary:
    """Write the report of whatever `work` holds (see `write_report`). In the work
    directory's own report/ it is skipped when its inputs are those it was made from."""
    import time
    from dataclasses import asdict

    from ..core.errors import UsageError
    from ..infra.recipe import changed_inputs, inputs_stamp, read_stamps, write_stamp
    t0 = time.monotonic()
    work = as_work(work)
    if not work.path.is_dir():
        raise UsageError(f"work directory not found: {work.path}")
    own = opts.out_dir is None
    stamp = {"inputs": inputs_stamp(work.path, REPORT_INPUTS),
             "options": {k: v for k, v in asdict(opts).items() if k != "force"
                         and not (k == "source_images" and v is not None
                                  and Path(v).resolve() == work.path.resolve())}}
    out_dir = Path(opts.out_dir) if opts.out_dir else work.report_dir
    paths = ReportPaths(out_dir, out_dir / "report.md", out_dir / "report.html",
                        out_dir / "stats.json", {})
    old = read_stamps(work.stamps_json).get("report") or {}
    current = own and not opts.force and old.get("options") == stamp["options"] \
        and not changed_inputs(work.path, old.get("inputs"), REPORT_INPUTS) \
        and all(p.exists() for p in (paths.markdown, paths.html, paths.stats))
    if not current:
        paths = write_report(work.path, source_images=opts.source_images or work.path,
                             out_dir=opts.out_dir, max_tiles=opts.max_tiles, title=opts.title)
        if own:
            write_stamp(work.stamps_json, "report", stamp)
    stats = read_json_or_none(paths.stats) or {}
    sections = [k for k in ("pipeline", "filter", "compare", "crops") if k in stats]
    line = f"report: {paths.markdown}" + (" (up to date)" if current else "")
    return ReportSummary("report", {}, {"markdown": paths.markdown, "html": paths.html,
                                        "stats": paths.stats}, time.monotonic() - t0, 0,
                         [line], paths=paths, sections=sections, up_to_date=current)
