"""The work directory: its layout and the questions every stage asks of it.

One module owns the file names (objects.jsonl, faces.json, images/aligned.json, ...) and
the journal logic shared by fetch, detect, align, run, report and demo: the latest line
per key, outcome counts per stage, what is settled and what must be redone. Stages ask
`Work` rather than joining paths or re-reading journals themselves. What only fetch does
with objects.jsonl (its index, update history, compaction) is stages/fetch/journal.py.

Layout of a work directory DIR:
  objects.jsonl          fetch journal, one line per object (latest per id wins)
  api/, originals/       API records and original images
  faces.json             detect output; detect.jsonl its per-image journal
  filtered.json          filter output; rejected.jsonl, filter_summary.json,
                         filter_cache.json (per-image measures keyed by content)
  images/                align crops; images/aligned.json the manifest
  report/                report.md, report.html, stats.json, contact sheets
  recipe.toml            how the directory is built (infra/recipe.py); .stamps.json
                         what some outputs were made from (for `status`)
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Tuple, Union

from ..core.errors import UsageError
from ..core.records import as_object_id
from .files import loads, read_json_or_none, read_jsonl
from .jsonstream import read_json_items

# ---- file names ------------------------------------------------------------------------
OBJECTS = "objects.jsonl"
API_DIR = "api"
ORIGINALS_DIR = "originals"
FACES = "faces.json"
DETECT_JOURNAL = "detect.jsonl"
FILTERED = "filtered.json"
REJECTED = "rejected.jsonl"
FILTER_SUMMARY = "filter_summary.json"
FILTER_CACHE = "filter_cache.json"
OVERRIDES = "overrides.json"             # a person's keep/reject decisions in force
IMAGES_DIR = "images"
MANIFEST = "aligned.json"                 # align's manifest, in its output folder
ALIGN_JOURNAL = ".aligned.journal.jsonl"  # align's journal of an unfinished run
REPORT_DIR = "report"
REVIEW_PAGE = "review.html"               # in REPORT_DIR, with its thumbnails
REVIEW_THUMBS = "thumbs"
REVIEW_THUMBS_MADE = "made-by-review.json"  # in REVIEW_THUMBS: the thumbnails review wrote
REVIEW_THUMBS_MADE_JOURNAL = "made-by-review.journal"  # names appended while review runs
REVIEW_DATA = "review-data"                # beside REVIEW_PAGE: a large page's data files
TRUTH = "truth.json"
COMPARE = "compare.json"
COMPARE_FACES = "compare_faces.jsonl"
COMPARE_CROPS = "compare_crops.json"      # compare --crops: summary (+ .jsonl per crop)
RECIPE = "recipe.toml"                    # the options the directory is built with
STAMPS = ".stamps.json"                   # what report/review/fetch were made from
DEFAULT_WORK = "metfaces-work"

def clean_filter_summary(fs) -> Optional[dict]:
    """`fs` (parsed filter_summary.json) with each field its readers rely on of the right
    shape when present: `reasons` {str: int}, `image_problems` and `overrides` dicts,
    `kept`/`rejected` ints, `config` a dict (a hand-edited or damaged field reads as
    empty); None if `fs` is not an object at all. A summary written by filter is returned
    equal to itself."""
    if not isinstance(fs, dict):
        return None
    out = dict(fs)
    if "reasons" in fs:
        r = fs["reasons"]
        out["reasons"] = {k: v for k, v in r.items() if _is_count(v)} if isinstance(r, dict) else {}
    for k in ("image_problems", "overrides", "config"):
        if k in fs and not isinstance(fs[k], dict):
            out[k] = {}
    for k in ("kept", "rejected"):
        if k in fs and not _is_count(fs[k]):
            out[k] = 0
    return out


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---- journals: the latest line per key ------------------------------------------------

def latest(rows: Iterable[Any], key: str) -> dict:
    """{key value: last row with it}: journals append, so a later line supersedes an
    earlier one for the same item until the file is compacted. Rows without the key (or
    not dicts) are ignored; dict order is first appearance."""
    out: dict = {}
    for r in rows:
        if isinstance(r, dict) and isinstance(r.get(key), (str, int)):  # a list is no key
            out[r[key]] = r
    return out


def latest_records(journal: Union[str, os.PathLike], key: str) -> dict:
    """`latest` over a JSONL file (missing file: empty)."""
    return latest(read_jsonl(journal), key)


def status_counts(rows: Iterable[Any]) -> Counter:
    """Counter of `status` over dict rows (missing status counts as "?")."""
    return Counter(r["status"] if isinstance(r.get("status"), str) else "?"
                   for r in rows if isinstance(r, dict))


def manifest_path(images_dir: Union[str, os.PathLike]) -> Path:
    """align's manifest in an align output folder."""
    return Path(images_dir) / MANIFEST


def align_journal_path(images_dir: Union[str, os.PathLike]) -> Path:
    return Path(images_dir) / ALIGN_JOURNAL


def read_manifest(images_dir: Union[str, os.PathLike]) -> Optional[list]:
    """align's manifest entries, or None when missing/unreadable/not a list."""
    data = read_json_or_none(manifest_path(images_dir))
    return data if isinstance(data, list) else None


# what a refetch found, per object: fetch's `updates` (stages/fetch/journal.update_kind
# decides) and run's updates block
UPDATE_KINDS = ("new", "new_image", "record", "withdrawn", "unchanged", "failed")
UPDATE_LABELS = {"new": "new", "new_image": "new image", "record": "record only",
                 "withdrawn": "withdrawn", "unchanged": "unchanged", "failed": "refetch failed"}


# ---- damaged journal lines: reported, never read as "object gone" ----------------------

_ID_PREFIX = re.compile(rb'^\s*\{\s*"id"\s*:\s*(\d{1,18})\s*[,}]')


def parse_object_line(line: bytes) -> Tuple[Optional[dict], Optional[int], bool]:
    """(row, id, readable) of one objects.jsonl line. A readable line is a JSON object:
    its id when valid, else None (a record of no object, which compaction drops). A damaged
    line (garbled, cut short, not UTF-8, too deep, not an object) may still show its id in
    its first bytes (fetch writes "id" first), else None."""
    try:
        row = loads(line)
    except ValueError:  # garbled, not UTF-8, nested too deeply
        row = None
    if isinstance(row, dict):
        oid = row.get("id")
        ok_id = isinstance(oid, int) and not isinstance(oid, bool) and as_object_id(oid) is not None
        return row, (oid if ok_id else None), True
    m = _ID_PREFIX.match(line)
    oid = int(m.group(1)) if m else None
    return None, (oid if oid is not None and as_object_id(oid) is not None else None), False


@dataclass
class JournalDamage:
    """Lines of objects.jsonl that cannot be read and are not superseded by a later
    readable line of the same object. What such a line said is unknown, so no stage may
    read its object as gone: `may_hide(obj_id)` says whose earlier results must stay."""
    path: Path
    lines: list = field(default_factory=list)   # [(line number, id or None)]
    readable: set = field(default_factory=set)  # str ids with a readable line

    def __bool__(self) -> bool:
        return bool(self.lines)

    @property
    def ids(self) -> set:
        return {str(i) for _, i in self.lines if i is not None}

    def may_hide(self, obj_id) -> bool:
        """Could a damaged line be the latest state of `obj_id`?"""
        oid = str(obj_id)
        return oid in self.ids or (any(i is None for _, i in self.lines) and oid not in self.readable)

    def notes(self) -> list:
        """One message per damaged line (file and line number), and what was done."""
        out = [f"{self.path}:{n}: damaged line ({f'object {i}' if i is not None else 'object id unreadable'})"
               for n, i in self.lines[:20]]
        if len(self.lines) > 20:
            out.append(f"{self.path}: ... {len(self.lines) - 20} more damaged lines")
        out.append(f"{len(self.lines)} damaged line(s) in {self.path}: the objects they may describe "
                   "keep their earlier results (nothing dropped or deleted); fetch them again "
                   "(rerun fetch) or repair the lines, which compaction keeps as they are")
        return out


def scan_objects(path: Union[str, os.PathLike]) -> Tuple[dict, JournalDamage]:
    """({id: latest readable line}, damaged lines) of objects.jsonl in one pass; line
    numbers are 1-based."""
    path = Path(path)
    damage = JournalDamage(path)
    rows: dict = {}
    pending: dict = {}  # id -> damaged line numbers since its last readable line
    anonymous: list = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return rows, damage
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row, oid, ok = parse_object_line(line)
            if ok:
                if oid is not None:
                    rows[oid] = row
                    damage.readable.add(str(oid))
                    pending.pop(oid, None)
            elif oid is None:
                anonymous.append(n)
            else:
                pending.setdefault(oid, []).append(n)
    damage.lines = sorted([(n, None) for n in anonymous]
                          + [(n, oid) for oid, ns in pending.items() for n in ns])
    return rows, damage


class Work:
    """A work directory: every file of the layout, and the outcome of each stage as its
    files record it (so a resumed run reports the whole directory)."""

    def __init__(self, path: Union[str, os.PathLike, "Work"] = DEFAULT_WORK):
        self.path = Path(path.path if isinstance(path, Work) else path)

    def __repr__(self) -> str:
        return f"Work({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, Work) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- layout ----
    objects_jsonl = property(lambda self: self.path / OBJECTS)
    api_dir = property(lambda self: self.path / API_DIR)
    originals_dir = property(lambda self: self.path / ORIGINALS_DIR)
    faces_json = property(lambda self: self.path / FACES)
    detect_journal = property(lambda self: self.path / DETECT_JOURNAL)
    filtered_json = property(lambda self: self.path / FILTERED)
    rejected_jsonl = property(lambda self: self.path / REJECTED)
    filter_summary_json = property(lambda self: self.path / FILTER_SUMMARY)
    filter_cache_json = property(lambda self: self.path / FILTER_CACHE)
    overrides_json = property(lambda self: self.path / OVERRIDES)
    images_dir = property(lambda self: self.path / IMAGES_DIR)
    aligned_manifest = property(lambda self: self.path / IMAGES_DIR / MANIFEST)
    aligned_journal = property(lambda self: self.path / IMAGES_DIR / ALIGN_JOURNAL)
    report_dir = property(lambda self: self.path / REPORT_DIR)
    review_page = property(lambda self: self.path / REPORT_DIR / REVIEW_PAGE)
    truth_json = property(lambda self: self.path / TRUTH)
    compare_json = property(lambda self: self.path / COMPARE)
    compare_faces_jsonl = property(lambda self: self.path / COMPARE_FACES)
    compare_crops_json = property(lambda self: self.path / COMPARE_CROPS)
    recipe_toml = property(lambda self: self.path / RECIPE)
    stamps_json = property(lambda self: self.path / STAMPS)

    def rel(self, path: Union[str, os.PathLike]) -> str:
        """`path` relative to the work directory when inside it (for summaries)."""
        try:
            return str(Path(path).relative_to(self.path))
        except ValueError:
            return str(path)

    # ---- what the stages recorded ----
    def objects(self) -> dict:
        """{id: latest objects.jsonl line}."""
        return latest_records(self.objects_jsonl, "id")

    def objects_checked(self) -> Tuple[dict, JournalDamage]:
        """{id: latest readable objects.jsonl line} and the journal's damaged lines."""
        return scan_objects(self.objects_jsonl)

    def objects_of(self, ids) -> dict:
        """{id: latest objects.jsonl line} for `ids` only (bounded memory on a huge journal)."""
        wanted = set(ids)
        return latest((r for r in read_jsonl(self.objects_jsonl) if r.get("id") in wanted), "id")

    def detections(self) -> dict:
        """{obj_id: latest detect.jsonl line} (one source image per object)."""
        return latest_records(self.detect_journal, "obj_id")

    def filter_summary(self) -> Optional[dict]:
        """filter_summary.json with the shapes its readers rely on (a hand-edited or damaged
        file: wrong-typed fields read as empty), or None when missing or not an object."""
        return clean_filter_summary(read_json_or_none(self.filter_summary_json))

    def aligned(self) -> Optional[list]:
        """images/aligned.json entries, or None when align has not finished here."""
        return read_manifest(self.images_dir)

    def outcomes(self) -> dict:
        """{stage: Counter of statuses} for fetch, detect and align (stages whose files
        are absent are left out): the one count run, report and demo show."""
        out: dict = {}
        # only each line's key and status are kept: bounded memory per item at any scale
        objects = latest(_only(read_jsonl(self.objects_jsonl), ("id", "status")), "id")
        if objects:
            out["fetch"] = status_counts(objects.values())
        images = latest(_only(read_jsonl(self.detect_journal), ("obj_id", "status")), "obj_id")
        if images:
            out["detect"] = status_counts(images.values())
        counts = _manifest_counts(self.images_dir)
        if counts is not None:
            out["align"] = counts
        return out

    def face_count(self) -> int:
        """Faces recorded in the detect journal (latest line per image)."""
        rows = ({"obj_id": r.get("obj_id"), "n": len(r.get("faces") or [])
                 if isinstance(r.get("faces"), list) else 0}
                for r in read_jsonl(self.detect_journal) if isinstance(r, dict))
        return sum(r["n"] for r in latest(rows, "obj_id").values())


def _only(rows: Iterable[Any], keys: tuple) -> Iterator[Any]:
    """Each dict row cut down to `keys` (other rows as they are)."""
    for r in rows:
        yield {k: r[k] for k in keys if k in r} if isinstance(r, dict) else r


def _manifest_counts(images_dir) -> Optional[Counter]:
    """`status_counts` of align's manifest, counted entry by entry (no entry kept); None
    when missing, unreadable or not a list (as read_manifest)."""
    try:
        items = read_json_items(manifest_path(images_dir))
        if not hasattr(items, "__next__"):
            return None
        return status_counts(items)
    except (UsageError, OSError):
        return None


def as_work(work: Union[str, os.PathLike, Work, None]) -> Work:
    return work if isinstance(work, Work) else Work(work if work is not None else DEFAULT_WORK)
