"""report's pictures: contact sheets of faces with captions, landmarks drawn on the
source, and the picture of a face (its aligned crop, else a quick crop of the source).

Pillow only; the sections (report_sections.py) choose what to show, this draws it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import geometry
from ..infra.files import atomic_write_bytes, safe_join
from ..infra.images import ImageProblem, open_image
from .filter import measurement_crops

STORED_COLOUR = (0, 200, 70)
REGEN_COLOUR = (235, 0, 200)
BG = (250, 250, 248)
INK = (30, 30, 30)
REJECT_INK = (170, 20, 20)


# ---- drawing ------------------------------------------------------------------------------

def load_font(size: int = 13):
    """Pillow's built-in scalable font (FreeType builds), else its bitmap font."""
    from PIL import ImageFont  # Pillow: loaded when drawing, not on import
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
    from PIL import Image, ImageDraw  # Pillow: loaded when drawing, not on import
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
    from PIL import Image, ImageDraw  # Pillow: loaded when drawing, not on import
    im = Image.new("RGB", (size, size), (205, 205, 205))
    d = ImageDraw.Draw(im)
    d.text((8, size // 2 - 8), text, fill=INK, font=load_font(12))
    return im


# ---- pictures of faces -------------------------------------------------------------------

def face_crops(recs: list, source_root: Path, images_dir: Optional[Path], size: int = 180) -> list:
    """A picture per record: the aligned crop when it exists, else a quick crop from the
    source (one decode per source image), else a grey placeholder saying why."""
    from PIL import Image  # Pillow: loaded when drawing, not on import
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
    from PIL import Image  # Pillow: loaded when drawing, not on import
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
    from PIL import Image, ImageDraw  # Pillow: loaded when drawing, not on import
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



def save_png(image, path: Path) -> Path:
    """Write a PNG atomically (a killed run never leaves half a sheet)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
