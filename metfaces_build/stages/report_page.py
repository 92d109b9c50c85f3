"""report's page: a few block types (heading, paragraph, table, figure) rendered to
markdown and to one self-contained HTML file (the figures inlined)."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path


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
    from PIL import Image  # Pillow: loaded when drawing, not on import
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
