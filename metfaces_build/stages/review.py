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

import hashlib
import html
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from ..core.errors import UsageError
from ..infra.stage import StageSummary, force_opt, opt, quiet_opt, workers_opt
from ..infra.workdir import REVIEW_PAGE as PAGE
from ..infra.workdir import REVIEW_THUMBS as THUMBS
from ..infra.workdir import REVIEW_THUMBS_MADE as THUMBS_MADE
from ..infra.workdir import OVERRIDES, as_work
from .report import REPORT_INPUTS

# the files the page is made from: a page stamped with the same ones is current
REVIEW_INPUTS = REPORT_INPUTS + (OVERRIDES,)

THUMB_SIZE = 192        # px, square; shown at 160 CSS px (sharper on high-DPI screens)
THUMB_QUALITY = 82      # JPEG; ~6-9 kB a thumbnail
MET_OBJECT_URL = "https://www.metmuseum.org/art/collection/search/{}"
TEMPLATE = "review_page.html"
DATA_MARK = "/*FACE_DATA*/"
# filter values the card shows under another name (qsize, score) or a person cannot read
DUPLICATE_VALUES = ("phash", "resolution", "score")


@dataclass
class ThumbJob:
    """One face's thumbnail: from the aligned crop when there is one, else from the source."""
    face: str              # face id
    out: str               # thumbnail path
    record: Optional[dict]  # face record (JSON form) for an approximate crop
    aligned: Optional[str]  # aligned crop path


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


# ---- gathering the data --------------------------------------------------------------------

def _read_faces(path: Path) -> dict:
    from ..infra.faces import load_faces
    if not path.is_file():
        return {}
    return {f.key: f for f in load_faces(path, skip_bad=True, pack=True).faces}  # landmarks packed


def object_info(work: Path, obj_ids) -> dict:
    """Title, artist, department, date and Met URL per object: from the stored API record
    (DIR/api/{id}.json), else from fetch's objects.jsonl."""
    from ..infra.files import read_json_or_none
    layout = as_work(work)
    rows = {str(k): r for k, r in layout.objects().items()}
    out = {}
    for oid in obj_ids:
        api = read_json_or_none(layout.api_dir / f"{oid}.json")
        api = api if isinstance(api, dict) else {}
        row = rows.get(oid, {})
        url = api.get("objectURL") or ""
        if not (isinstance(url, str) and url.startswith("https://")):
            url = MET_OBJECT_URL.format(quote(oid))
        out[oid] = {"title": _text(api.get("title")) or _text(row.get("title")),
                    "artist": _text(api.get("artistDisplayName")) or _text(row.get("artist")),
                    "department": _text(api.get("department")) or _text(row.get("department")),
                    "date": _text(api.get("objectDate")) or _text(row.get("date")),
                    "url": _text(url),
                    "width": _int(row.get("width")), "height": _int(row.get("height"))}
    return out


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def _names(v) -> list:
    return [t for t in v if isinstance(t, str)] if isinstance(v, list) else []


def _text(v) -> str:
    """A text field for the page: strings cut at MAX_TEXT, numbers as text, else ""."""
    from ..core.records import clean_text
    if isinstance(v, str):
        return clean_text(v)[0]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return ""


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _compare_landmarks(work: Path) -> dict:
    """face key -> (stored FaceRecord, NME) where compare matched it; {} when compare did not
    run on this work directory's faces.json."""
    from ..infra.files import read_json_or_none, read_jsonl
    layout = as_work(work)
    stats = read_json_or_none(layout.compare_json)
    if not isinstance(stats, dict):
        return {}
    regen_path = stats.get("regenerated_path") or ""
    try:
        if not regen_path or Path(regen_path).resolve() != layout.faces_json.resolve():
            return {}
    except OSError:
        return {}
    stored = _read_faces(Path(stats.get("stored_path") or ""))
    out = {}
    for m in read_jsonl(layout.compare_faces_jsonl):
        if m.get("status") != "matched":
            continue
        if not all(isinstance(m.get(k), int) for k in ("stored_face_idx", "regen_face_idx")):
            continue  # a damaged line
        s = stored.get((str(m.get("obj_id")), m.get("stored_face_idx")))
        if s is not None:
            out[(str(m["obj_id"]), m.get("regen_face_idx"))] = (s, m.get("nme"))
    return out


def _flat_landmarks(rec) -> list:
    lm = rec.face_spec.landmarks
    return lm.ravel().tolist() if hasattr(lm, "ravel") else [v for p in lm for v in p]


def _failed_tests(values: dict, reasons: list, limits: dict) -> list:
    """[{test, value, limit}] for each failed test, as the filter recorded it."""
    out = []
    for name in reasons:
        value = values.get(name)
        if name == "resolution":
            value = values.get("qsize", value)
        out.append({"test": name, "value": value, "limit": limits.get(name, "")})
    return out


def collect(work: Path, source_root: Path, out_dir: Path) -> dict:
    """The page's data: one entry per face of faces.json the filter decided on, in
    faces.json order, plus per-object information and the decisions in force."""
    from ..core.records import Rejection
    from ..infra.files import read_json_or_none, read_jsonl, safe_join
    from .filter import OVERRIDE_REASON, OVERRIDES_FILE, face_id
    layout = as_work(work)
    if not layout.filtered_json.is_file() or not layout.rejected_jsonl.is_file():
        raise UsageError(f"{work}: no filter output (filtered.json, rejected.jsonl): "
                         f"run `metfaces-build filter --work {work}` first")
    faces = _read_faces(layout.faces_json)
    kept = _read_faces(layout.filtered_json)
    rejected = {}
    for r in read_jsonl(layout.rejected_jsonl):
        try:  # a damaged line: wrong-typed fields read as empty, no face named: left out
            rej = Rejection.from_json(r)
        except ValueError:
            continue
        rejected[(rej.obj_id, rej.face_idx)] = rej
    compared = _compare_landmarks(work)
    manifest = layout.aligned()
    aligned = {}
    for e in manifest if isinstance(manifest, list) else []:
        rec = e.get("record") if isinstance(e, dict) else None
        if isinstance(rec, dict) and e.get("status") == "ok" and e.get("output"):
            aligned[(str(rec.get("obj_id")), rec.get("face_idx"))] = e
    order = list(faces) or list(kept)
    for k in kept:
        if k not in faces:
            faces[k] = kept[k]
            order.append(k)
    objects = object_info(work, dict.fromkeys(k[0] for k in order))
    entries, skipped, thumbs = [], 0, []
    for key in order:
        rec = faces[key]
        fid = face_id(*key)
        if key in kept:
            values = _dict(kept[key].extra.get("filter"))
            decision = "kept"
            ov = _dict(values.get(OVERRIDE_REASON))
            failed = _failed_tests(values, _names(ov.get("tests_failed")), _dict(ov.get("limits")))
        elif key in rejected:
            row = rejected[key]
            values = row.values
            decision = "rejected"
            ov = _dict(values.get(OVERRIDE_REASON))
            reasons = [r for r in row.reasons if r != OVERRIDE_REASON]
            reasons += [t for t in _names(ov.get("tests_failed")) if t not in reasons]
            failed = _failed_tests(values, reasons, row.limits)
            if OVERRIDE_REASON in row.reasons:
                failed.insert(0, {"test": OVERRIDE_REASON, "value": "rejected by a person",
                                  "limit": OVERRIDES_FILE})
        else:
            skipped += 1  # faces.json changed after filter ran
            continue
        try:
            src = safe_join(source_root, rec.source_path)
            src_url = quote(Path(os.path.relpath(src, out_dir)).as_posix())
        except ValueError:
            src, src_url = None, ""
        entry = {"id": fid, "obj": rec.obj_id, "idx": rec.face_idx,
                 "detector": rec.detector, "score": rec.score, "decision": decision,
                 "override": ov.get("decision") if ov.get("decision") in ("keep", "reject") else None,
                 "failed": failed, "qsize": values.get("qsize"),
                 "sharpness": values.get("sharpness"),
                 "grayscale": (values.get("grayscale") or {}).get("grayscale")
                 if isinstance(values.get("grayscale"), dict) else None,
                 "values": {k: v for k, v in values.items() if k not in DUPLICATE_VALUES},
                 "src": src_url,
                 "width": rec.image_width, "height": rec.image_height,
                 "rect": list(rec.face_spec.rect), "lm": _flat_landmarks(rec),
                 "shrink": rec.face_spec.shrink}
        cmp_ = compared.get(key)
        if cmp_ is not None:
            stored, nme = cmp_
            entry["stored"] = {"lm": _flat_landmarks(stored), "shrink": stored.face_spec.shrink,
                               "nme": nme}
        al = aligned.get(key) if decision == "kept" else None
        crop = (layout.images_dir / al["output"]) if al else None
        if crop is not None and crop.is_file():
            tag = "a" + str(al.get("file_md5") or "")[:10]
        else:
            crop = None
            tag = "q" + hashlib.sha256(json.dumps(
                [rec.source_path, rec.face_spec.to_json()]).encode()).hexdigest()[:10]
        entry["thumb"] = f"{THUMBS}/{quote(fid)}-{tag}.jpg"
        thumbs.append((str(src) if src else "", ThumbJob(fid, str(out_dir / THUMBS / f"{fid}-{tag}.jpg"),
                                                         rec.to_json(), str(crop) if crop else None)))
        entries.append(entry)
    stored_ov = read_json_or_none(layout.overrides_json)
    overrides = _dict(stored_ov.get("faces") if isinstance(stored_ov, dict) else None)
    known = {e["id"] for e in entries}
    overrides = {k: v for k, v in (overrides or {}).items() if v in ("keep", "reject")}
    # decisions about faces the page does not show (an update withdrew or re-detected
    # them): carried in the page and saved again with the rest, never dropped
    absent = {k: v for k, v in overrides.items() if k not in known}
    overrides = {k: v for k, v in overrides.items() if k in known}
    summary = layout.filter_summary() or {}
    return {"work": str(work.resolve()), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "page_id": uuid.uuid4().hex,  # marks kept in the browser belong to this page only
            "faces": entries, "objects": objects, "overrides": overrides, "absent": absent,
            "not_filtered": skipped, "compare": bool(compared),
            "config": summary.get("config") if isinstance(summary, dict) else None,
            "_thumbs": thumbs}


# ---- thumbnails ----------------------------------------------------------------------------

def make_thumbs(task: ThumbTask) -> list:
    """Write the thumbnails of one source image; returns (face id, problem or "")."""
    from PIL import Image

    from ..core.records import FaceRecord
    from ..infra.files import atomic_write_bytes
    from ..infra.images import ImageProblem, open_image
    from .filter import measurement_crops
    from .report import placeholder
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
    import io
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
    """Names of the thumbnails review recorded as its own in `folder`."""
    from ..infra.files import read_json_or_none
    data = read_json_or_none(folder / THUMBS_MADE)
    names = data.get("thumbs") if isinstance(data, dict) else None
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _record_made(folder: Path, names: set) -> None:
    from ..infra.files import atomic_write_json
    atomic_write_json(folder / THUMBS_MADE, {"thumbs": sorted(names)}, indent=None)


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
    from importlib.resources import files
    return files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")


def render_page(data: dict, title: str = "MetFaces review") -> str:
    """The template with `data` embedded as JSON (safe inside a script element)."""
    blob = json.dumps({k: v for k, v in data.items() if not k.startswith("_")},
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    blob = blob.replace("<", "\\u003c")  # no "</script>" can end the element early
    page = page_template()
    if DATA_MARK not in page:
        raise RuntimeError(f"{TEMPLATE} lacks the data marker {DATA_MARK}")
    return page.replace("{{TITLE}}", html.escape(title)).replace("{{CSP}}", page_csp(page)) \
        .replace(DATA_MARK, blob)


def page_csp(page: str) -> str:
    """The page's Content-Security-Policy: only its own script runs (allowed by its sha256,
    so no inline event handler, javascript: URL or remote script would), images from the
    page's folders, nothing fetched or posted anywhere."""
    import base64
    import re
    hashes = []
    for m in re.finditer(r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", page, re.S):
        digest = hashlib.sha256(m.group(1).encode("utf-8")).digest()
        hashes.append("'sha256-" + base64.b64encode(digest).decode("ascii") + "'")
    return ("default-src 'none'; script-src " + " ".join(hashes) + "; style-src 'unsafe-inline'; "
            "img-src 'self' file: data: blob: http: https:; base-uri 'none'; form-action 'none'")


def write_review(work_dir, *, source_images=None, out_dir=None, workers: int = 1,
                 quiet: bool = True, force: bool = False) -> ReviewPaths:
    """Write `review.html` and its thumbnails into `out_dir` (default DIR/report)."""
    from ..infra.executors import LocalExecutor, Progress
    from ..infra.files import atomic_write_text
    work = Path(work_dir)
    out = Path(out_dir) if out_dir else as_work(work).report_dir
    root = Path(source_images) if source_images else work
    (out / THUMBS).mkdir(parents=True, exist_ok=True)
    data = collect(work, root, out)
    thumbs = data["_thumbs"]
    keep = {Path(j.out).name for _, j in thumbs}
    made = _made(out / THUMBS)
    _record_made(out / THUMBS, made | keep)  # before writing: a killed run leaves none unrecorded
    tasks = thumb_tasks(thumbs, THUMB_SIZE, force)
    n = sum(len(t.jobs) for t in tasks)
    with Progress(n, "review thumbnails", quiet=quiet or not n, unit="face") as bar:
        for res in LocalExecutor(min(workers, max(1, len(tasks)))).imap(make_thumbs, tasks,
                                                                        ordered=False):
            bar.update(len(res))
    _remove_unused(out / THUMBS, keep, made)
    _record_made(out / THUMBS, keep)
    page = out / PAGE
    atomic_write_text(page, render_page(data))
    return ReviewPaths(page, out / THUMBS, len(data["faces"]), n)


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
    from ..infra.recipe import changed_inputs, inputs_stamp, read_stamps, write_stamp
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
        return ReviewSummary("review", {"faces": faces}, {"page": work.review_page,
                                                          "thumbs": work.review_page.parent / THUMBS},
                             time.monotonic() - t0, 0,
                             [f"review: {work.review_page} (up to date)"], page=work.review_page,
                             faces=faces)
    paths = write_review(work.path, source_images=source_root, out_dir=opts.out,
                         workers=opts.workers, quiet=opts.quiet, force=opts.force)
    if own:
        write_stamp(work.stamps_json, "review", {**stamp, "faces": paths.faces})
    line = f"review: {paths.faces} faces ({paths.thumbs_made} new thumbnails) -> {paths.page}"
    return ReviewSummary("review", {"faces": paths.faces}, {"page": paths.page,
                                                           "thumbs": paths.thumbs},
                         time.monotonic() - t0, 0, [line], page=paths.page, faces=paths.faces,
                         thumbs_made=paths.thumbs_made)
