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

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import UsageError
from ..infra.executors import library_versions
from ..infra.files import atomic_write_json, atomic_write_text, read_json_or_none
from ..infra.recipe import changed_inputs, inputs_stamp, read_stamps, write_stamp
from ..infra.stage import StageSummary, force_opt, opt
from ..infra.workdir import (COMPARE, FACES, FILTER_SUMMARY, FILTERED, IMAGES_DIR, MANIFEST,
                             OBJECTS, REJECTED, Work, as_work)
# the pictures, the page and the sections live beside this stage; their names are
# importable from here as before (review, the tests and tools use them)
from .report_draw import (REGEN_COLOUR, STORED_COLOUR, Tile, contact_sheet,  # noqa: F401
                          mismatch_tile, placeholder)
from .report_page import (Figure, Heading, Para, Table,  # noqa: F401
                          render_html, render_markdown)
from .report_sections import (compare_section, crops_section, filter_section,  # noqa: F401
                              pipeline_section, _spread_by_reason)

# the files a report is made from: a report stamped with the same ones is current
REPORT_INPUTS = (OBJECTS, FACES, FILTERED, REJECTED, FILTER_SUMMARY, f"{IMAGES_DIR}/{MANIFEST}",
                 COMPARE)


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
    return ReportSummary(stage="report", counts={},
                         outputs={"markdown": paths.markdown, "html": paths.html,
                                  "stats": paths.stats},
                         elapsed=time.monotonic() - t0, failed=0, lines=[line], paths=paths,
                         sections=sections, up_to_date=current)
