"""A review page: every face on one page a person can open from disk, sort, and overrule.

Writes DIR/report/review.html and DIR/report/thumbs/. The page needs no server and no
network: the face data (decisions, every failed test with its measured value and limit,
landmarks, the object's title, artist, department and date from the stored API record)
is embedded in it as JSON, and each card's thumbnail is a small JPEG beside it, loaded
lazily, so 10,000 faces open without megabytes of inline images. Opening a card shows the
original image (read in place from DIR/originals/) with the face box and the 68
landmarks, and, where `compare` ran, the stored landmarks next to the regenerated ones.

A person marks faces keep (k) or reject (r) and presses "Save overrides.json"; then
`metfaces-build filter --work DIR --overrides overrides.json` applies the decisions (and
keeps them in DIR/overrides.json for every later run). The page starts from the decisions
already in force and saves all of them, so the saved file is the complete list: decisions
about faces it does not show (an update withdrew or re-detected them) are carried in the
page unchanged and saved with the rest, so they apply again when the face comes back.

A page of more than CHUNK_FACES faces holds only where its data is: the cards' data in
report/review-data/{generation}/cards-NNNN.js, loaded as the page opens, and each face's
landmarks and measures in details-NNNN.js, loaded when it is opened (scripts, as a page
opened from disk may not fetch files; its CSP allows scripts from its own folder); the
grid shows PAGE_CARDS cards a page, and filters, counts and saving cover every face.
Entries are made and thumbnails written a chunk of faces at a time (review_data.py
streams the face lists), so memory grows by under 2 KB a face.

Thumbnails are the aligned crop (DIR/images/, when align made it) else an approximate crop
of the source; each file's name carries a digest of what it shows, so a rerun makes only
the missing ones and removes the ones no face uses any more: only files it recorded as
made (thumbs/made-by-review.json), so other files in a --out folder are never touched.

Hooks for tests and scripts: each card is `[data-face="{obj_id}-{face_idx:02d}"]` with
`data-decision="kept|rejected"` (the filter's outcome, overrides included) and, once a
person marks it in the page, `data-mark="keep|reject"`.

examples:
  metfaces-build review --work ./work
  metfaces-build review --work ./work --out /tmp/review     # page + thumbs elsewhere
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Optional

from ..core.errors import UsageError
from ..core.records import FaceRecord
from ..infra.executors import LocalExecutor, Progress
from ..infra.files import (atomic_write_bytes, atomic_write_json, atomic_write_text,
                           read_json_or_none)
from ..infra.images import ImageProblem, open_image
from ..infra.recipe import changed_inputs, inputs_stamp, read_stamps, write_stamp
from ..infra.stage import StageSummary, force_opt, opt, quiet_opt, workers_opt
from ..infra.workdir import (OVERRIDES, REVIEW_DATA as DATA_DIR, REVIEW_PAGE as PAGE,
                             REVIEW_THUMBS as THUMBS, REVIEW_THUMBS_MADE as THUMBS_MADE,
                             REVIEW_THUMBS_MADE_JOURNAL as THUMBS_MADE_JOURNAL, as_work)
from .filter import measurement_crops
from .report import REPORT_INPUTS, placeholder
from .review_data import (CARD_FIELDS, DETAIL_FIELDS, card_and_detail, entries, read_sources,
                          split_overrides)

# the files the page is made from: a page stamped with the same ones is current
REVIEW_INPUTS = REPORT_INPUTS + (OVERRIDES,)

THUMB_SIZE = 192        # px, square; shown at 160 CSS px (sharper on high-DPI screens)
THUMB_QUALITY = 82      # JPEG; ~6-9 kB a thumbnail
TEMPLATE = "review_page.html"
DATA_MARK = "/*FACE_DATA*/"
CHUNK_FACES = 2000      # faces per data file: a page with more loads its data in files
PAGE_CARDS = 1000       # cards per page of the grid (the page has a pager beyond that)
CHUNK_CALL = "metfacesReview"
GENERATION = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class ThumbTask:
    """The thumbnails of one source image (decoded once)."""
    source: str            # resolved source image path ("" when unusable)
    jobs: tuple
    size: int


@dataclass
class ReviewPaths:
    page: Path
    thumbs: Path
    faces: int
    thumbs_made: int


# ---- the page's data -----------------------------------------------------------------------

def page_head(work: Path, known, not_filtered: int, compared: bool, page_cards: int) -> dict:
    """What the page holds besides the faces: where it comes from, the decisions in force
    (those about faces it does not show apart) and the filter's settings."""
    overrides, absent = split_overrides(work, known)
    summary = as_work(work).filter_summary() or {}
    return {"work": str(Path(work).resolve()), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "page_id": uuid.uuid4().hex,  # marks kept in the browser belong to this page only
            "overrides": overrides, "absent": absent, "not_filtered": not_filtered,
            "compare": compared, "page_cards": page_cards,
            "config": summary.get("config") if isinstance(summary, dict) else None}


def collect(work: Path, source_root: Path, out_dir: Path) -> dict:
    """The page's data in one dict: one whole entry per face of faces.json the filter
    decided on, in faces.json order, per-object information and the decisions in force
    (for a small page, and for tests; write_review streams the same entries)."""
    src = read_sources(work)
    skipped = [0]
    faces, thumbs = [], []
    for entry, job in entries(work, src, source_root, out_dir, skipped):
        faces.append(entry)
        thumbs.append(job)
    objects = _page_objects(src.objects, faces)
    head = page_head(work, {f["id"] for f in faces}, skipped[0], bool(src.compared), PAGE_CARDS)
    return {**head, "faces": faces, "objects": objects, "_thumbs": thumbs}


def _page_objects(objects, faces: list) -> dict:
    """{object id: its page information} for the objects `faces` (entries) name, in order;
    objects: ObjectTable."""
    return {oid: objects.info(oid) for oid in dict.fromkeys(f["obj"] for f in faces)}


# ---- thumbnails ----------------------------------------------------------------------------

def make_thumbs(task: ThumbTask) -> list:
    """Write the thumbnails of one source image; returns (face id, problem or "")."""
    from PIL import Image

    done, todo = [], []
    for job in task.jobs:
        if job.aligned:
            try:
                with Image.open(job.aligned) as im:
                    pic = im.convert("RGB").resize((task.size, task.size), Image.Resampling.LANCZOS)
                _save_jpeg(pic, job.out, atomic_write_bytes)
                done.append((job.face, ""))
                continue
            except OSError:
                pass
        todo.append(job)
    if todo:
        problem = ""
        try:
            if not task.source:
                raise ImageProblem("bad_path", "source path outside the source folder")
            head = open_image(task.source, load=False)
            dims = head.size
            head.close()
            pics = measurement_crops(task.source, dims,
                                     [FaceRecord.from_json(j.record) for j in todo], task.size)
        except ImageProblem as e:
            problem = e.status
            pics = [placeholder(task.size, e.status) for _ in todo]
        for job, pic in zip(todo, pics):
            _save_jpeg(pic, job.out, atomic_write_bytes)
            done.append((job.face, problem))
    return done


def _save_jpeg(image, path: str, write) -> None:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    write(path, buf.getvalue())


def thumb_tasks(thumbs: list, size: int, force: bool = False) -> list:
    """Tasks for the thumbnails not on disk yet, one per source image, largest first."""
    groups: dict = {}
    for source, job in thumbs:
        if force or not os.path.isfile(job.out):
            groups.setdefault(source, []).append(job)
    tasks = [ThumbTask(src, tuple(jobs), size) for src, jobs in groups.items()]
    tasks.sort(key=lambda t: -len(t.jobs))
    return tasks


def _made(folder: Path) -> set:
    """Names of the thumbnails review recorded as its own in `folder` (those a killed run
    appended to the record's journal included)."""
    data = read_json_or_none(folder / THUMBS_MADE)
    names = data.get("thumbs") if isinstance(data, dict) else None
    made = {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
    try:
        with open(folder / THUMBS_MADE_JOURNAL, encoding="utf-8", errors="replace") as f:
            made.update(line.rstrip("\n") for line in f if line.strip())
    except OSError:  # no journal: the last run finished
        pass
    return made


def _journal_made(folder: Path, names) -> None:
    """Append names to the record's journal (flushed to disk) before their files are written:
    a run records each thumbnail once, not the whole list after every chunk."""
    with open(folder / THUMBS_MADE_JOURNAL, "a", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in names))
        f.flush()
        os.fsync(f.fileno())


def _record_made(folder: Path, names: set) -> None:
    atomic_write_json(folder / THUMBS_MADE, {"thumbs": sorted(names)}, indent=None)
    try:
        (folder / THUMBS_MADE_JOURNAL).unlink()
    except FileNotFoundError:
        pass


def _remove_unused(folder: Path, keep: set, made: set) -> int:
    """Delete the thumbnails review made (`made`) that no face uses now; any other file in
    the folder is not review's to delete."""
    n = 0
    for name in sorted(made - keep):
        p = folder / name
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".jpg") \
                or p.is_symlink():
            continue  # a hand-edited record names nothing outside the folder
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


# ---- the page ------------------------------------------------------------------------------

def page_template() -> str:
    return files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")


def render_page(data: dict, title: str = "MetFaces review") -> str:
    """The template with `data` embedded as JSON (safe inside a script element): every
    face (`faces`, `objects`), or, for a large page, where its data files are (`chunks`)."""
    blob = json.dumps({k: v for k, v in data.items() if not k.startswith("_")},
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    blob = blob.replace("<", "\\u003c")  # no "</script>" can end the element early
    page = page_template()
    if DATA_MARK not in page:
        raise RuntimeError(f"{TEMPLATE} lacks the data marker {DATA_MARK}")
    return page.replace("{{TITLE}}", html.escape(title)) \
        .replace("{{CSP}}", page_csp(page, files="chunks" in data)).replace(DATA_MARK, blob)


def page_csp(page: str, files: bool = False) -> str:
    """The page's Content-Security-Policy: only its own script runs (allowed by its sha256,
    so no inline event handler, javascript: URL or remote script would) and, for a page
    whose data is in files beside it (`files`), scripts from its own folder ('self'),
    images from the page's folders, nothing fetched or posted anywhere."""
    hashes = []
    for m in re.finditer(r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", page, re.S):
        digest = hashlib.sha256(m.group(1).encode("utf-8")).digest()
        hashes.append("'sha256-" + base64.b64encode(digest).decode("ascii") + "'")
    if files:
        hashes.append("'self'")
    return ("default-src 'none'; script-src " + " ".join(hashes) + "; style-src 'unsafe-inline'; "
            "img-src 'self' file: data: blob: http: https:; base-uri 'none'; form-action 'none'")


class DataFiles:
    """A large page's data in files of `size` faces beside it: cards-NNNN.js (what the cards
    show, and the objects first named there), loaded as the page opens, and details-NNNN.js
    (landmarks, every measure, the original), loaded when a card is opened. Each file is
    one call `metfacesReview(kind, n, "<JSON>")` (a script: a page opened from disk may
    not fetch files); a page's files sit in a folder of their own (its generation), so a
    page never mixes files of two runs."""

    def __init__(self, out: Path, size: int):
        self.gen = uuid.uuid4().hex[:12]
        self.folder = out / DATA_DIR / self.gen
        self.size = size
        self.count = 0
        self.faces = 0
        self.seen_objects: set = set()

    def write(self, chunk: list, objects) -> None:
        """One file of each kind for `chunk` (entries); objects: ObjectTable."""
        self.folder.mkdir(parents=True, exist_ok=True)
        cards, details, objs = [], [], {}
        for e in chunk:
            c, d = card_and_detail(e)
            cards.append(c)
            details.append(d)
            if e["obj"] not in self.seen_objects:
                self.seen_objects.add(e["obj"])
                objs[e["obj"]] = objects.info(e["obj"])
        for kind, body in (("cards", {"fields": CARD_FIELDS, "rows": cards, "objects": objs}),
                           ("details", {"fields": DETAIL_FIELDS, "rows": details})):
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            atomic_write_text(self.folder / f"{kind}-{self.count:04d}.js",
                              f"{CHUNK_CALL}({json.dumps(kind)},{self.count},"
                              f"{json.dumps(text, ensure_ascii=False)});\n")
        self.count += 1
        self.faces += len(chunk)

    def head(self) -> dict:
        return {"dir": f"{DATA_DIR}/{self.gen}", "count": self.count, "size": self.size,
                "faces": self.faces}


def _remove_generations(out: Path, keep: str = "") -> None:
    """Data folders of earlier pages (named by their generation) but `keep`."""
    folder = out / DATA_DIR
    if not folder.is_dir() or folder.is_symlink():
        return
    for p in folder.iterdir():
        if p.name != keep and GENERATION.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class ThumbRun:
    """The thumbnails of a run, made a chunk of faces at a time."""
    folder: Path
    workers: int
    force: bool
    bar: object
    made: set = field(default_factory=set)   # what review recorded as its own before
    keep: set = field(default_factory=set)   # names the page uses
    new: int = 0

    def make(self, thumbs: list) -> None:
        """Make the missing thumbnails of `thumbs` [(source, ThumbJob)]; each is recorded as
        review's before it is written, so a killed run leaves none unrecorded."""
        self.keep.update(Path(j.out).name for _, j in thumbs)
        tasks = thumb_tasks(thumbs, THUMB_SIZE, self.force)
        if not tasks:
            return
        _journal_made(self.folder, sorted(Path(j.out).name for t in tasks for j in t.jobs
                                          if Path(j.out).name not in self.made))
        for res in LocalExecutor(min(self.workers, len(tasks))).imap(make_thumbs, tasks, ordered=False):
            self.new += len(res)
            self.bar.update(len(res))

    def finish(self) -> None:
        _remove_unused(self.folder, self.keep, self.made)
        _record_made(self.folder, self.keep)


def write_review(work_dir, *, source_images=None, out_dir=None, workers: int = 1,
                 quiet: bool = True, force: bool = False, chunk_faces: int = CHUNK_FACES,
                 page_cards: int = PAGE_CARDS) -> ReviewPaths:
    """Write `review.html` and its thumbnails into `out_dir` (default DIR/report): the
    faces are read, turned into entries and thumbnails `chunk_faces` at a time; up to that
    many are embedded in the page, more go to data files beside it."""
    work = Path(work_dir)
    out = Path(out_dir) if out_dir else as_work(work).report_dir
    root = Path(source_images) if source_images else work
    (out / THUMBS).mkdir(parents=True, exist_ok=True)
    src = read_sources(work)
    files = DataFiles(out, chunk_faces)
    skipped, known, chunk, thumbs = [0], set(), [], []
    with Progress(None, "review thumbnails", quiet=quiet, unit="face") as bar:
        run = ThumbRun(out / THUMBS, workers, force, bar, made=_made(out / THUMBS))
        try:
            for entry, job in entries(work, src, root, out, skipped):
                if len(chunk) == chunk_faces:  # more faces than one chunk: data files
                    files.write(chunk, src.objects)
                    run.make(thumbs)
                    chunk, thumbs = [], []
                known.add(entry["id"])
                chunk.append(entry)
                thumbs.append(job)
            if files.count:
                files.write(chunk, src.objects)
            run.make(thumbs)
        except BaseException:
            shutil.rmtree(files.folder, ignore_errors=True)
            raise
    run.finish()
    data = page_head(work, known, skipped[0], bool(src.compared), page_cards)
    if files.count:
        data["chunks"] = files.head()
    else:
        data["faces"] = chunk
        data["objects"] = _page_objects(src.objects, chunk)
    page = out / PAGE
    atomic_write_text(page, render_page(data))
    _remove_generations(out, keep=files.gen if files.count else "")
    return ReviewPaths(page, out / THUMBS, len(known), run.new)


# ---- the stage ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewOptions:
    """Options of the review stage (names and defaults of its CLI flags)."""
    source_images: Optional[str] = opt(None, "where source_path resolves", metavar="DIR",
                                       shown="--work")
    out: Optional[str] = opt(None, "where review.html and thumbs/ go", metavar="DIR",
                             shown="DIR/report")
    workers: int = workers_opt()
    force: bool = force_opt("remake every thumbnail")
    quiet: bool = quiet_opt()


@dataclass
class ReviewSummary(StageSummary):
    """review's outcome: the page, how many faces it shows, thumbnails made now."""
    page: Optional[Path] = None
    faces: int = 0
    thumbs_made: int = 0


def review(work, opts: ReviewOptions = ReviewOptions()) -> ReviewSummary:
    """Write the review page of `work` (every face of faces.json with its decision) and
    its thumbnails; thumbnails already made are kept unless `opts.force`. The work
    directory's own page is left alone when its inputs are those it was made from."""
    t0 = time.monotonic()
    work = as_work(work)
    if not work.path.is_dir():
        raise UsageError(f"--work {work.path} is not a folder")
    source_root = Path(opts.source_images) if opts.source_images else None
    if source_root is not None and not source_root.is_dir():
        raise UsageError(f"--source-images {source_root} is not a folder")
    own = opts.out is None and opts.source_images is None
    stamp = {"inputs": inputs_stamp(work.path, REVIEW_INPUTS)}
    old = read_stamps(work.stamps_json).get("review") or {}
    if own and not opts.force and work.review_page.exists() \
            and not changed_inputs(work.path, old.get("inputs"), REVIEW_INPUTS):
        faces = int(old.get("faces") or 0)
        return ReviewSummary(stage="review", counts={"faces": faces},
                             outputs={"page": work.review_page,
                                      "thumbs": work.review_page.parent / THUMBS},
                             elapsed=time.monotonic() - t0,
                             lines=[f"review: {work.review_page} (up to date)"],
                             page=work.review_page, faces=faces)
    paths = write_review(work.path, source_images=source_root, out_dir=opts.out,
                         workers=opts.workers, quiet=opts.quiet, force=opts.force)
    if own:
        write_stamp(work.stamps_json, "review", {**stamp, "faces": paths.faces})
    line = f"review: {paths.faces} faces ({paths.thumbs_made} new thumbnails) -> {paths.page}"
    return ReviewSummary(stage="review", counts={"faces": paths.faces},
                         outputs={"page": paths.page, "thumbs": paths.thumbs},
                         elapsed=time.monotonic() - t0, lines=[line], page=paths.page,
                         faces=paths.faces, thumbs_made=paths.thumbs_made)
