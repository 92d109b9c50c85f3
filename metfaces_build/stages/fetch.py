"""Download Met object records and original images into the work directory.

Choose objects by department (ids or names), a search with filters, explicit ids,
everything changed since a date, or rows of the Met's catalogue file MetObjects.csv
(`--from-csv`, filtered locally: no API call for an object you do not want); or rebuild
NVIDIA's `unprocessed/image-{id}.png` layout from a metfaces.json (`--from-json`),
marking images whose PNG no longer matches the recorded `source_md5` as `changed`.

Writes, in --work DIR:
  objects.jsonl          one line per object: status, reason, attempts, bytes, sha256, md5,
                         width, height (ok | no_image | not_public_domain | not_found |
                         http_error | bad_content | too_large | refused | changed)
  api/{id}.json          the API record exactly as served
  originals/{id}.{ext}   the image exactly as served, checked (length, magic bytes, full
                         decode, pixel limit) before it is renamed into place

A rerun skips settled objects and retries network/content failures (http_error,
bad_content); --recheck retries every non-ok object, --force redoes everything.
Updates: every object the --since DATE listing names is fetched again even when settled.
Its image is downloaded to a temporary name and replaces the original only when its
sha256 changed; the objects.jsonl line then keeps `previous_sha256`, `changed_at` and a
short `history`. An object that left the public domain or lost its image has its original
removed (detect, filter and align then withdraw its faces and crops). A refetch that
fails for any reason (the new image URL answers 404, a refused host, a corrupt image, the
network) keeps the old line, original and api/{id}.json (the new record is written only
once its image is accepted), so its faces and crops stay; the line says why in
`refresh_error`, and every later fetch of the selection retries it (--force too refreshes:
an object fetched before keeps its files when its refetch fails). Each
host (the API's, the images') is paced by all --workers threads together at a pace learned
from its blocks and remembered between runs (--rate is the ceiling; met/pacing.py),
retried with backoff, and a 403 block page pauses all threads together. Ctrl-C or a kill
loses nothing: rerun to resume.
--dry-run prints what would be requested (by department and by status already in
objects.jsonl) and how long it would take at that pace, without requesting any object record
or image (a --departments, --search or --since source still makes its listing requests).

examples:
  metfaces-build fetch --departments "European Paintings,11" --limit 500
  metfaces-build fetch --search portrait --has-images --medium Paintings --date-begin 1600 --date-end 1800
  metfaces-build fetch --from-json metfaces.json --rate 5
  metfaces-build fetch --from-csv MetObjects.csv --public-domain --classification Paintings --has-artist --dry-run
  metfaces-build fetch --api http://127.0.0.1:8000/public/collection/v1 --ids 436001,436008
"""
from __future__ import annotations

import os
import re
import sys
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..core.errors import UsageError
from ..infra.stage import StageSummary, convert, opt
from ..infra.workdir import API_DIR, ORIGINALS_DIR
from ..infra.workdir import FETCH_FAILED as FAILED
from ..infra.workdir import FETCH_STATUSES as STATUSES  # noqa: F401 - the statuses fetch records
from ..infra.workdir import (UPDATE_KINDS, UPDATE_LABELS, JournalIndex, Work, carry_history,
                             compact_journal, fetch_skip_statuses, update_kind)
from ..met.client import ClientConfig
CHUNK_IDS = 1024
# --from-json writes only NVIDIA's layout: unprocessed/....png (never the stage's own files)
SOURCE_DIR = "unprocessed"


# ---- id sources --------------------------------------------------------------------------

def dedupe_ids(ids):
    """Ids in first-seen order without repeats (the Met's lists repeat ids)."""
    import numpy as np
    a = np.asarray(ids, dtype=np.int64)
    if a.size == 0:
        return a
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def parse_id_list(text: str, where: str = "--ids") -> list:
    from ..core.records import MAX_OBJECT_ID, as_object_id
    out = []
    for tok in re.split(r"[,\s]+", text.strip()):
        if not tok:
            continue
        oid = as_object_id(tok)
        if oid is None:
            shown = tok if len(tok) <= 40 else tok[:40] + "..."
            raise UsageError(f"{where}: {shown!r} is not an object id (a whole number from 1 "
                             f"to {MAX_OBJECT_ID})")
        out.append(oid)
    return out


def read_ids_file(path: str):
    """One id per line (or comma-separated); '#' starts a comment. Streamed into an array."""
    from array import array

    import numpy as np
    buf = array("q")
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0]
                if line.strip():
                    buf.extend(parse_id_list(line, f"{path} line {n}"))
    except FileNotFoundError:
        raise UsageError(f"--ids-file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise UsageError(f"--ids-file {path}: {e}") from None
    return np.frombuffer(buf, dtype=np.int64) if len(buf) else np.zeros(0, np.int64)


def search_filters(args) -> dict:
    f = {}
    if args.has_images:
        f["hasImages"] = True
    if args.highlight:
        f["isHighlight"] = True
    if args.on_view:
        f["isOnView"] = True
    if args.medium:
        f["medium"] = args.medium
    if args.geo:
        f["geoLocation"] = args.geo
    if args.date_begin is not None:
        f["dateBegin"], f["dateEnd"] = args.date_begin, args.date_end
    if args.search_in:
        f[{"title": "title", "tags": "tags", "artist": "artistOrCulture"}[args.search_in]] = True
    return f


def catalog_filter(args):
    """The --from-csv filter flags as a typed CatalogFilter (department ids become names)."""
    from ..met.catalog import CatalogFilter, department_names, split_alternatives
    try:
        deps = department_names(args.departments.split(",")) if args.departments else ()
    except ValueError as e:
        raise UsageError(f"--departments: {e}") from None
    return CatalogFilter(public_domain=args.public_domain, departments=deps,
                         classifications=split_alternatives(args.classification),
                         object_names=split_alternatives(args.object_name),
                         date_begin=args.date_begin, date_end=args.date_end,
                         has_artist=args.has_artist, limit=args.limit)


def catalog_ids(path: str, flt, log: Callable[[str], None], labels: Optional["IdLabels"] = None):
    """Ids of the MetObjects.csv rows `flt` keeps (no API request); their departments go to
    `labels` when given (dry runs)."""
    from ..met.catalog import CatalogError, catalog_summary, catalog_warnings, select_ids
    try:
        sel = select_ids(path, flt)
    except CatalogError as e:
        raise UsageError(f"--from-csv {e}") from None
    log(catalog_summary(path, sel))
    for w in catalog_warnings(path, sel):
        print(w, file=sys.stderr)
    if labels is not None:
        labels.add_each(sel.ids, sel.departments)
    return sel.ids


class IdLabels:
    """Department name per id, as far as a dry run can know it without fetching records
    (catalogue rows, per-department listings, earlier records in objects.jsonl); ids and
    int32 name codes in arrays, so half a million ids cost a few MB."""

    def __init__(self):
        self.names: list = []
        self._code: dict = {}
        self._ids: list = []
        self._codes: list = []
        self._sorted = None

    def _code_of(self, name: str) -> int:
        if name not in self._code:
            self._code[name] = len(self.names)
            self.names.append(name)
        return self._code[name]

    def add(self, ids, name: str) -> None:
        import numpy as np
        self.add_codes(ids, np.full(len(ids), self._code_of(name), dtype=np.int32))

    def add_each(self, ids, names: list) -> None:
        import numpy as np
        self.add_codes(ids, np.fromiter((self._code_of(n) for n in names), np.int32, len(names)))

    def add_codes(self, ids, codes) -> None:
        import numpy as np
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self._codes.append(codes)
        self._sorted = None

    def lookup(self, ids) -> list:
        """Department of each id ('' when unknown); the first label added for an id wins."""
        import numpy as np
        ids = np.asarray(ids, dtype=np.int64)
        if not self._ids or not len(ids):
            return [""] * len(ids)
        if self._sorted is None:
            a, c = np.concatenate(self._ids), np.concatenate(self._codes)
            uniq, first = np.unique(a, return_index=True)
            self._sorted = (uniq, c[first])
        uniq, codes = self._sorted
        pos = np.minimum(np.searchsorted(uniq, ids), len(uniq) - 1)
        hit = uniq[pos] == ids
        return [self.names[codes[p]] if h else "" for p, h in zip(pos, hit)]


def journal_labels(path: Path, labels: IdLabels, batch: int = 65536) -> None:
    """Add the department of every object objects.jsonl already has a record for."""
    from ..infra.files import read_jsonl
    ids, names = [], []
    for row in read_jsonl(path):
        if isinstance(row.get("id"), int) and isinstance(row.get("department"), str) and row["department"]:
            ids.append(row["id"])
            names.append(row["department"])
            if len(ids) >= batch:
                labels.add_each(ids, names)
                ids, names = [], []
    if ids:
        labels.add_each(ids, names)


def collect_ids(client, args, log: Callable[[str], None], labels: Optional[IdLabels] = None,
                listed: Optional[list] = None):
    """All requested ids, de-duplicated in first-seen order and cut to --limit. With
    `labels` (dry runs), departments are listed one by one so each id gets its department.
    With `listed`, the arrays of ids the --since listing named are appended to it: those
    changed at the Met, so never skipped as settled."""
    import numpy as np
    parts = []
    if args.from_csv:
        parts.append(catalog_ids(args.from_csv, catalog_filter(args), log, labels))
    if args.ids:
        parts.append(np.asarray(parse_id_list(args.ids), dtype=np.int64))
    if args.ids_file:
        parts.append(read_ids_file(args.ids_file))
    deps: list = []
    known: list = []
    if args.departments and not args.from_csv:
        from ..met.client import resolve_departments
        known = client.departments()
        try:
            deps = resolve_departments(args.departments.split(","), known)
        except ValueError as e:
            raise UsageError(f"--departments: {e}") from None
    if args.search is not None:
        filters = search_filters(args)
        for dep in deps or [None]:
            extra = {"departmentId": dep} if dep is not None else {}
            found = client.search(args.search, **filters, **extra)
            log(f"search {args.search!r}{f' in department {dep}' if dep else ''}: {len(found)} ids")
            parts.append(np.asarray(found, dtype=np.int64))
    elif labels is not None and deps:
        names = {d.id: d.name for d in known}
        for dep in deps:
            found = np.asarray(client.object_ids([dep], args.since), dtype=np.int64)
            log(f"object list of department {dep}: {len(found)} ids")
            labels.add(found, names.get(dep, str(dep)))
            parts.append(found)
            if args.since and listed is not None:
                listed.append(found)
    elif deps or args.since:
        found = client.object_ids(deps, args.since)
        log(f"object list{f' changed since {args.since}' if args.since else ''}: {len(found)} ids")
        parts.append(np.asarray(found, dtype=np.int64))
        if args.since and listed is not None:
            listed.append(parts[-1])
    ids = dedupe_ids(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return ids[: args.limit] if args.limit else ids


def chunks(ids, size: int = CHUNK_IDS) -> Iterator:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


# ---- one object ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceJob:
    """One source image to rebuild from metfaces.json."""
    obj_id: int
    source_url: str
    source_path: str
    source_md5: str
    title: str = ""
    artist: str = ""
    width: Optional[int] = None
    height: Optional[int] = None


def fetch_object(client, work: Path, oid: int, image: str = "original", old: Optional[dict] = None,
                 redo: bool = False):
    """Record + image of one object, as a MetObject (failures are values). With `old`
    (its objects.jsonl line: a refetch of a changed object, or any with `redo`), the image
    is downloaded to a temporary name and replaces the original only when its sha256
    differs; a refetch that fails keeps `old` (see refresh_failed). `redo` (--force)
    downloads even when the record names the same image as last time."""
    from ..met.client import FetchFailure
    from ..core.records import MetObject
    oid = int(oid)
    try:
        answer = client.get_object(oid)
    except FetchFailure as f:
        failed = MetObject(oid, f.status, f.reason, attempts=f.attempts)
        if old and old.get("status") == "ok" and f.status != "not_found":  # 404: removed
            return refresh_failed(old, failed)
        return failed
    rec = answer.data
    from ..met.shapes import artist_of, display_text
    obj = MetObject(oid, "ok", department=display_text(rec.get("department")),
                    title=display_text(rec.get("title")), artist=artist_of(rec),
                    date=display_text(rec.get("objectDate")),
                    is_public_domain=rec.get("isPublicDomain") if isinstance(rec.get("isPublicDomain"), bool) else None,
                    attempts=answer.attempts)
    url = _s(rec.get("primaryImage" if image == "original" else "primaryImageSmall"))
    obj.image_url = url
    if _s(rec.get("objectURL")):
        obj.extra["meta_url"] = _s(rec.get("objectURL"))
    if _s(rec.get("metadataDate")):  # the Met's own change marker (updates compare it)
        obj.extra["metadata_date"] = _s(rec.get("metadataDate"))
    _clip_fields(obj)
    if obj.is_public_domain is False:
        obj.status, obj.reason = "not_public_domain", "isPublicDomain is false"
    elif not url:
        obj.status, obj.reason = "no_image", f"{'primaryImage' if image == 'original' else 'primaryImageSmall'} is empty"
    elif len(url) > MAX_URL:
        obj.status, obj.reason = "refused", f"image URL of {len(url)} characters (more than {MAX_URL})"
        return obj  # a failure, not a withdrawal: an earlier original stays
    elif old and old.get("status") == "ok" and old.get("sha256") and old.get("path"):
        if not redo and _same_version(old, obj, work):  # the Met changed nothing: keep it as is
            for k in ("path", "bytes", "sha256", "md5", "width", "height"):
                setattr(obj, k, old.get(k) or getattr(obj, k))
            _write_record(work, oid, answer.raw)
            return obj
        obj = _refresh_image(client, work, obj, url, old)
        if obj.status != "ok":
            # the record still offers an image we could not get (a CDN that has not got the
            # re-shot file yet, a refused host, a corrupt file, the network): the old line,
            # original and API record stand, so its faces and crops do; the next run retries
            return refresh_failed(old, obj)
        _write_record(work, oid, answer.raw)  # only now: the record describes the original
        return obj
    else:
        obj = _download_into(client, work, obj, url)
        _write_record(work, oid, answer.raw)
        return obj
    _write_record(work, oid, answer.raw)
    if old and old.get("path"):  # withdrawn: its original must not feed detect any more
        _remove_other_extensions(work / ORIGINALS_DIR, oid, "")
    return obj


def refresh_failed(old: dict, failed):
    """The object's previous line, kept, with `refresh_error` saying why the refresh
    failed (status: reason): a refresh never withdraws what it could not replace."""
    from ..core.records import MetObject
    return MetObject.from_json({**old, "refresh_error": f"{failed.status}: {failed.reason}"})


def _write_record(work: Path, oid: int, raw: bytes) -> None:
    """api/{id}.json as served (not rewritten when the bytes are the same)."""
    from ..infra.files import atomic_write_bytes
    path = work / API_DIR / f"{oid}.json"
    try:
        if path.read_bytes() == raw:
            return
    except OSError:
        pass
    atomic_write_bytes(path, raw)


def _same_version(old: dict, obj, work: Path) -> bool:
    """The record has the metadataDate and image URL we fetched last time and the
    original is still there: nothing to download (a second identical --since run)."""
    date = obj.extra.get("metadata_date")
    return bool(date) and old.get("metadata_date") == date and old.get("image_url") == obj.image_url \
        and (work / str(old.get("path"))).is_file()


def _refresh_image(client, work: Path, obj, url: str, old: dict):
    """Download into a temp name; keep the old original when the bytes are the same (no
    rewrite), else rename the new one into place."""
    from ..infra.files import TMP_PREFIX
    from ..met.client import FetchFailure
    folder = work / ORIGINALS_DIR
    try:
        d = client.download(url, folder, f"{TMP_PREFIX}new-{obj.id}")
    except FetchFailure as f:
        obj.status, obj.reason, obj.attempts = f.status, f.reason, obj.attempts + f.attempts
        obj.width, obj.height = f.width, f.height
        return obj
    final = folder / f"{obj.id}.{d.ext}"
    if d.sha256 == old.get("sha256") and (work / old["path"]).is_file() \
            and old["path"] == f"originals/{final.name}":
        os.unlink(d.path)
    else:
        os.replace(d.path, final)
        _remove_other_extensions(folder, obj.id, d.ext)
    obj.status, obj.reason = "ok", ""
    obj.path = f"originals/{final.name}"
    obj.attempts += d.attempts
    obj.bytes, obj.sha256, obj.md5, obj.width, obj.height = d.bytes, d.sha256, d.md5, d.width, d.height
    return obj


def _download_into(client, work: Path, obj, url: str):
    from ..met.client import FetchFailure
    try:
        d = client.download(url, work / ORIGINALS_DIR, str(obj.id))
    except FetchFailure as f:
        obj.status, obj.reason, obj.attempts = f.status, f.reason, obj.attempts + f.attempts
        obj.width, obj.height = f.width, f.height
        return obj
    _remove_other_extensions(work / ORIGINALS_DIR, obj.id, d.ext)
    obj.status, obj.reason = "ok", ""
    obj.path = f"originals/{d.path.name}"
    obj.attempts += d.attempts
    obj.bytes, obj.sha256, obj.md5, obj.width, obj.height = d.bytes, d.sha256, d.md5, d.width, d.height
    return obj


def _remove_other_extensions(folder: Path, oid: int, ext: str) -> None:
    for other in ("jpg", "png", "gif", "tif", "bmp", "webp"):
        if other != ext:
            try:
                os.unlink(folder / f"{oid}.{other}")
            except FileNotFoundError:
                pass


def fetch_source(client, work: Path, job: SourceJob):
    """Download a metfaces.json source image, write it as PNG at its source_path, compare md5."""
    from ..infra.images import ImageProblem, open_image
    from ..infra.files import atomic_open, file_digest, safe_join
    from ..core.records import MetObject
    obj = MetObject(job.obj_id, "ok", title=job.title, artist=job.artist, image_url=job.source_url)
    obj.extra["source_path"] = job.source_path
    why = source_path_problem(job.source_path)
    try:
        dest = safe_join(work, job.source_path) if why is None else None
    except ValueError as e:
        why = str(e)
    if dest is not None:  # a symlink inside --work may lead to the stage's own files
        why = _resolved_source_problem(work, dest)
    if why:
        obj.status, obj.reason = "refused", f"source_path: {why}"
        return obj
    obj = _download_into(client, work, obj, job.source_url)
    if obj.status != "ok":
        return obj
    try:
        with open_image(work / obj.path, client.cfg.max_pixels) as im:
            if im.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "1"):
                im = im.convert("RGB")
            with atomic_open(dest, "wb") as f:
                im.save(f, "PNG")
    except ImageProblem as e:
        obj.status, obj.reason = e.status, e.reason
        return obj
    except OSError as e:  # e.g. a folder where the PNG goes
        obj.status, obj.reason = "refused", f"source_path: cannot write {job.source_path}: {e.strerror or e}"
        return obj
    png_md5 = file_digest(dest, "md5")
    obj.extra["png_md5"] = png_md5
    obj.extra["source_md5"] = job.source_md5
    verdict = compare_source(png_md5, job.source_md5, (obj.width, obj.height), (job.width, job.height))
    obj.status, obj.reason = verdict
    return obj


def source_path_problem(rel: str) -> Optional[str]:
    """Why --from-json may not write a source image at `rel` (relative to --work), or None.

    Only NVIDIA's layout is written: a `.png` under `unprocessed/`, with no hidden, empty or
    over-long component. Anything else in the work directory (objects.jsonl, api/,
    originals/, faces.json, another stage's folder) belongs to a stage, not to the input.
    """
    from ..infra.files import check_relative_path
    why = check_relative_path(rel)
    if why:
        return why
    parts = rel.split("/")
    if "\\" in rel or parts[0] != SOURCE_DIR or len(parts) < 2:
        return f"{_clip(rel)} is not under {SOURCE_DIR}/ (only {SOURCE_DIR}/....png is written)"
    for part in parts[1:]:
        if not part or part in (".", "..") or part.startswith("."):
            return f"{_clip(rel)} has an empty or hidden component"
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            return f"a component of {_clip(rel)} is longer than 255 bytes"
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            return f"{_clip(rel)} contains control characters"
    if not parts[-1].lower().endswith(".png") or len(parts[-1]) <= 4:
        return f"{_clip(rel)} is not a .png file name"
    return None


def _resolved_source_problem(work: Path, dest: Path) -> Optional[str]:
    """The layout rule again on the path after symlinks, plus: not an existing non-file."""
    try:
        rel = dest.relative_to(work.resolve()).as_posix()
    except ValueError:
        return f"{dest} is outside --work"
    why = source_path_problem(rel)
    if why:
        return f"resolves to {why}"
    if dest.exists() and not dest.is_file():
        return f"{rel} exists and is not a regular file"
    return None


def _clip(s: str, n: int = 80) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def compare_source(png_md5: str, source_md5: str, size: tuple, recorded_size: tuple) -> tuple:
    """(status, reason): `changed` when our PNG's md5 differs from source_md5, saying which
    checks agree; an md5 is of a PNG *file*, so another encoder alone can explain it."""
    if not source_md5:
        return "ok", "no source_md5 to compare with"
    if png_md5 == source_md5.lower():
        return "ok", "PNG md5 matches source_md5"
    if None in recorded_size:
        dims = f"dimensions {size[0]}x{size[1]} (none recorded to compare)"
    elif tuple(size) == tuple(recorded_size):
        dims = f"dimensions agree ({size[0]}x{size[1]})"
    else:
        dims = f"dimensions differ ({size[0]}x{size[1]} now, {recorded_size[0]}x{recorded_size[1]} recorded)"
    return "changed", (f"PNG md5 {png_md5} != source_md5 {source_md5}; {dims}: a re-shot image "
                       "or a different PNG encoder")


def source_jobs(path: str, log: Callable[[str], None]) -> tuple:
    """(jobs, refusals) from a metfaces.json: one job per source image; entries that cannot
    be used (e.g. a source_path with '..') become `refused` MetObjects when their id is valid."""
    from ..core.records import as_object_id
    from ..core.records import MetObject
    from ..infra.faces import load_faces
    loaded = load_faces(path, skip_bad=True, what="--from-json")
    jobs: dict = {}
    for f in loaded.faces:
        oid = as_object_id(f.obj_id)
        if oid is None:
            log(f"skipping face {f.obj_id}-{f.face_idx}: obj_id is not a whole number")
            continue
        if oid not in jobs:
            jobs[oid] = SourceJob(oid, f.source_url, f.source_path, f.source_md5, f.title,
                                  f.artist_display_name, f.image_width, f.image_height)
    refusals = {}
    for b in loaded.bad:
        oid = as_object_id(b.obj_id)
        if oid is None:
            log(f"refused --from-json {b.reason}")
        elif oid not in jobs:
            refusals[oid] = MetObject(oid, "refused", b.reason)
    return list(jobs.values()), list(refusals.values())


MAX_URL = 4096  # characters in an image URL (= records.MAX_TEXT); longer is refused, not cut


def _clip_fields(obj) -> None:
    """Cut each text field of `obj` at MAX_TEXT characters where it enters; `clipped` says
    what was kept (the whole answer stays once, in DIR/api/{id}.json)."""
    from ..core.records import clean_text
    notes = {}
    for k in ("title", "artist", "department", "date", "image_url"):
        text, note = clean_text(getattr(obj, k))
        if note:
            setattr(obj, k, text)
            notes[k] = note
    for k in ("meta_url", "metadata_date"):
        if isinstance(obj.extra.get(k), str):
            text, note = clean_text(obj.extra[k])
            if note:
                obj.extra[k] = text
                notes[k] = note
    if notes:
        obj.extra["clipped"] = notes


def _s(v) -> str:
    """A text field of an API record: strings as served, numbers as text, anything else
    (null, lists, objects, NaN) empty."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return str(v)
    return ""


# ---- --dry-run ----------------------------------------------------------------------------

@dataclass
class DryRunPlan:
    """What a fetch would request, from the ids and objects.jsonl alone. Each object costs
    one record request and, when it has an image, one image request, each at its host's
    pace (learned by earlier runs, else the start; met/pacing.py)."""
    rate: float
    pace: Optional[object] = None  # a pacing.PaceEstimate (None: everything at `rate`)
    selected: int = 0
    to_request: int = 0
    by_department: dict = field(default_factory=dict)  # name -> [selected, to request]
    by_status: dict = field(default_factory=dict)      # journal status or "new" -> [selected, to request]

    def add(self, status: Optional[str], requested: bool, department: str) -> None:
        self.selected += 1
        self.to_request += requested
        for table, key in ((self.by_department, department or "(not known before fetching)"),
                           (self.by_status, status or "new")):
            row = table.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += requested

    def seconds(self) -> tuple:
        """(fewest, most) seconds: records only, or records plus an image each."""
        if self.pace is not None:
            return self.pace.seconds(self.to_request)
        return self.to_request / self.rate, 2 * self.to_request / self.rate

    def lines(self) -> list:
        out = [f"dry run: {self.selected} objects selected, {self.to_request} would be requested "
               "(no object record or image was requested)"]
        for title, table in (("department", self.by_department), ("status in objects.jsonl", self.by_status)):
            out.append(f"  {title:<42} {'selected':>9} {'to request':>11}")
            for key, (n, todo) in sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0])):
                out.append(f"    {key[:40]:<40} {n:>9} {todo:>11}")
        lo, hi = self.seconds()
        at = self.pace.describe() if self.pace is not None else f"--rate {self.rate:g}/s"
        out.append(f"estimated time at {at}: {_duration(lo)} to {_duration(hi)} "
                   f"({self.to_request} record requests, plus up to {self.to_request} image requests)")
        return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run(args, layout: Work, log: Callable[[str], None]) -> DryRunPlan:
    """The DryRunPlan for these options; only listing requests reach the API (a listing
    that fails is a UsageError-free FetchFailure the caller reports)."""
    from ..met.client import MetClient
    work = layout.path
    index = JournalIndex(layout.objects_jsonl)
    skip = fetch_skip_statuses(args.force, args.recheck)
    labels = IdLabels()
    client = MetClient(client_config(args))
    pace = client.pace_estimate()
    plan = DryRunPlan(pace.rate, pace)
    try:
        if args.from_json:
            jobs = source_jobs(args.from_json, log)[0][: args.limit or None]
            journal_labels(layout.objects_jsonl, labels)
            ids = [j.obj_id for j in jobs]
            for job, st, dep in zip(jobs, index.statuses(ids), labels.lookup(ids)):
                settled = st in skip and (st not in ("ok", "changed") or _source_exists(work, job))
                plan.add(st, not settled, dep)
        else:
            listed: list = []
            ids = collect_ids(client, args, log, labels, listed)
            changed = _listed_set(listed) | index.refresh_pending
            journal_labels(layout.objects_jsonl, labels)
            for chunk in chunks(ids):
                for oid, st, dep in zip(chunk, index.statuses(chunk), labels.lookup(chunk)):
                    plan.add(st, st not in skip or int(oid) in changed, dep)
    finally:
        client.close()
    return plan


# ---- the stage ------------------------------------------------------------------------

WHAT = "what to fetch (combine freely)"
FILTERS = "filters (catalogue: with --from-csv; search: with --search)"
NETWORK = "network"
_NET = ClientConfig  # the network defaults live with the client (met/client.py)


@dataclass(frozen=True)
class FetchOptions:
    """Options of the fetch stage (names and defaults of its CLI flags). Say what to
    fetch with at least one of departments, search, ids, ids_file, since, from_json."""
    departments: Optional[str] = opt(None, "department ids or names, e.g. 11,9",
                                     metavar="LIST", group=WHAT, recipe=True)
    search: Optional[str] = opt(None, "search term (API /search)", metavar="TEXT", group=WHAT,
                                recipe=True)
    ids: Optional[str] = opt(None, "object ids, comma-separated", metavar="LIST", group=WHAT,
                             recipe=True)
    ids_file: Optional[str] = opt(None, "object ids, one per line", metavar="FILE", group=WHAT,
                                  recipe=True)
    since: Optional[str] = opt(None, "refetch objects changed since this date",
                               metavar="YYYY-MM-DD", group=WHAT)
    from_json: Optional[str] = opt(None, "rebuild the images of NVIDIA's metfaces.json",
                                   metavar="FILE", group=WHAT, recipe=True)
    from_csv: Optional[str] = opt(None, "rows of the Met's MetObjects.csv", metavar="FILE",
                                  group=WHAT, recipe=True)
    limit: Optional[int] = opt(None, "only the first N ids", metavar="N", limits=">= 1",
                               group=WHAT, recipe=True)
    public_domain: bool = opt(False, "catalogue: 'Is Public Domain' is True", group=FILTERS,
                              recipe=True)
    classification: Optional[str] = opt(None, "catalogue: e.g. Paintings (and sub-classes)",
                                        metavar="A|B", group=FILTERS, recipe=True)
    object_name: Optional[str] = opt(None, "catalogue: exact Object Name", metavar="A|B",
                                     group=FILTERS, recipe=True)
    has_artist: bool = opt(False, "catalogue: the artist is named", group=FILTERS, recipe=True)
    has_images: bool = opt(False, "search: hasImages=true", group=FILTERS, recipe=True)
    highlight: bool = opt(False, "search: isHighlight=true", group=FILTERS, recipe=True)
    on_view: bool = opt(False, "search: isOnView=true", group=FILTERS, recipe=True)
    medium: Optional[str] = opt(None, "search: medium, e.g. Paintings|Drawings", metavar="A|B",
                                group=FILTERS, recipe=True)
    geo: Optional[str] = opt(None, "search: geoLocation, e.g. France|Paris", metavar="A|B",
                             group=FILTERS, recipe=True)
    date_begin: Optional[int] = opt(None, "objects dated from YEAR (with --date-end)",
                                    metavar="YEAR", group=FILTERS, recipe=True)
    date_end: Optional[int] = opt(None, "objects dated up to YEAR", metavar="YEAR",
                                  group=FILTERS, recipe=True)
    search_in: Optional[str] = opt(None, "search: match in title, tags or artist",
                                   choices=("title", "tags", "artist"), metavar="WHERE", group=FILTERS,
                                   recipe=True)
    api: str = opt(_NET.api_root, "API root (or the emulator's)", metavar="URL",
                   shown="the Met's, collectionapi.metmuseum.org",
                   group=NETWORK, recipe=True)
    image: str = opt("original", "original, or small (~800 px)",
                     choices=("original", "small"), group=NETWORK, recipe=True)
    rate: Optional[float] = opt(_NET.rate, "ceiling, requests/s per host",
                                metavar="R", limits="> 0", shown="9", group=NETWORK,
                                recipe=True)
    retries: int = opt(_NET.retries, "retries per request", metavar="N", group=NETWORK,
                       recipe=True)
    timeout: float = opt(_NET.timeout, "longest wait for the next byte, s", metavar="S",
                         limits="> 0", group=NETWORK, recipe=True)
    backoff_max: float = opt(_NET.backoff_max, "cap on one backoff, s", metavar="S",
                             limits="> 0", group=NETWORK, recipe=True)
    backoff_base: float = opt(_NET.backoff_base, "first backoff (doubled per try), s",
                              metavar="S", limits="> 0", group=NETWORK, recipe=True)
    cooldown: float = opt(_NET.cooldown, "pause of all threads after a block, s",
                          metavar="S", limits=">= 0", group=NETWORK, recipe=True)
    max_outage: float = opt(_NET.max_outage, "stop (resumable) after S without success",
                            metavar="S", limits="> 0", group=NETWORK, recipe=True)
    allow_host: tuple = opt((), "another image host (repeatable)", metavar="HOST",
                            repeat=True, group=NETWORK, recipe=True)
    max_pixels: int = opt(_NET.max_pixels, "refuse larger images", metavar="N",
                          limits=">= 1", recipe=True)
    workers: int = opt(4, "download threads sharing one rate", metavar="N", limits=">= 1")
    recheck: bool = opt(False, "also retry settled non-ok objects")
    dry_run: bool = opt(False, "count what would be fetched; fetch nothing")
    force: bool = opt(False, "fetch everything again")
    quiet: bool = opt(False, "no progress bar, summary only")


@dataclass
class FetchSummary(StageSummary):
    """fetch's outcome: `counts` by status of the objects fetched now; `already` those a
    rerun left alone; `outage` why it stopped early, if it did."""
    already: dict = field(default_factory=dict)
    outage: Optional[str] = None
    plan: Optional[DryRunPlan] = None  # set by a dry run (nothing was fetched)
    # {host: {rate, block_rate, blocks, lost}}: the pace learned per host (met/pacing.py)
    pace: dict = field(default_factory=dict)
    # objects fetched again because the --since listing named them: {update kind: [ids]}
    # (kinds: workdir.UPDATE_KINDS; new objects count here too)
    updates: dict = field(default_factory=dict)


def _check_args(args: FetchOptions) -> None:
    if not (args.departments or args.search is not None or args.ids or args.ids_file or args.since
            or args.from_json or args.from_csv):
        raise UsageError("fetch: say what to fetch: --departments, --search, --ids, --ids-file, "
                         "--since, --from-csv or --from-json (see --help)")
    if args.from_json and (args.departments or args.search is not None or args.ids or args.ids_file
                           or args.since or args.from_csv):
        raise UsageError("fetch: --from-json cannot be combined with other sources")
    if args.from_csv and (args.search is not None or args.since):
        raise UsageError("fetch: --from-csv cannot be combined with --search or --since "
                         "(--departments and --date-begin/--date-end filter the file)")
    catalogue_only = [f for f, on in (("--public-domain", args.public_domain),
                                      ("--has-artist", args.has_artist),
                                      ("--classification", args.classification),
                                      ("--object-name", args.object_name)) if on]
    if catalogue_only and not args.from_csv:
        raise UsageError(f"fetch: {', '.join(catalogue_only)} filter a catalogue: add --from-csv FILE")
    if not args.from_csv and (args.date_begin is None) != (args.date_end is None):
        raise UsageError("fetch: --date-begin and --date-end go together")
    if args.retries < 0:
        raise UsageError("fetch: --retries must be >= 0")
    if args.since is not None:
        import datetime
        try:
            datetime.date.fromisoformat(args.since)
        except (TypeError, ValueError):
            raise UsageError(f"fetch: --since: expected a date YYYY-MM-DD, got {args.since!r}") from None
    from ..met.client import image_url_problem
    if image_url_problem(args.api, args.api) is not None:
        raise UsageError(f"fetch: --api must be an http(s) URL, got {args.api!r}")


check_options = _check_args  # the options' own checks, no network (stages/recipe.py)


def fetch(work, opts: FetchOptions) -> FetchSummary:
    """Download the chosen objects' records and original images into `work`, journal
    each outcome in objects.jsonl and return counts by status. Resumes: settled objects
    are skipped (`opts.recheck` retries non-ok ones, `opts.force` everything). One fetch
    per work directory at a time (infra.lock); a dry run takes no lock and writes nothing."""
    _check_args(opts)
    layout = work if isinstance(work, Work) else Work(work)
    if opts.dry_run:
        return _fetch_locked(layout, opts)
    from ..infra.lock import work_lock
    with work_lock(layout.path, command="fetch"):
        return _fetch_locked(layout, opts)


def _fetch_locked(layout: Work, opts: FetchOptions) -> FetchSummary:
    import time
    t0 = time.monotonic()
    args = opts
    from ..infra.files import JsonlAppender, remove_stale_temps
    from ..met.client import ApiOutage, FetchFailure, MetClient
    from ..met.pacing import PaceProgress
    from ..infra.executors import Progress, summarize

    work = layout.path

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    if args.dry_run:  # writes nothing, creates no folder
        try:
            plan = dry_run(args, layout, log)
        except (FetchFailure, ApiOutage) as f:
            msg = f"could not list objects: {getattr(f, 'reason', f)}"
            return FetchSummary("fetch", {}, {}, time.monotonic() - t0, 1, [], [msg])
        return FetchSummary("fetch", {}, {}, time.monotonic() - t0, 0, plan.lines(), [], plan=plan)
    folders = (work, layout.api_dir, layout.originals_dir)
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use work directory {work}: {e}") from None
    for folder in folders:
        remove_stale_temps(folder)

    client = MetClient(client_config(args))
    journal_path = layout.objects_jsonl
    index = JournalIndex(journal_path)
    skip = fetch_skip_statuses(args.force, args.recheck)
    counts: Counter = Counter()
    already: Counter = Counter()
    updates: dict = {}
    outage: Optional[str] = None
    update_journal = None
    try:
        with JsonlAppender(journal_path) as journal:
            if args.from_json:
                jobs, refusals = source_jobs(args.from_json, log)
                for r in refusals:
                    journal.write(r.to_json())
                    counts[r.status] += 1
                if args.limit:
                    jobs = jobs[: args.limit]
                todo = []
                for job, st in zip(jobs, index.statuses([j.obj_id for j in jobs]) if jobs else []):
                    if st in skip and (st not in ("ok", "changed") or _source_exists(work, job)):
                        already[st] += 1
                    else:
                        todo.append(job)
                total, batches = len(todo), [todo]
                worker = lambda job: fetch_source(client, work, job)  # noqa: E731
            else:
                listed: list = []
                try:
                    ids = collect_ids(client, args, log, listed=listed)
                except FetchFailure as f:
                    return FetchSummary("fetch", {}, {}, time.monotonic() - t0, 1, [],
                                        [f"error: could not list objects: {f.reason}"])
                # objects named by the --since listing, and refreshes that failed before
                changed = _listed_set(listed) | index.refresh_pending
                previous = layout.objects_of(changed) if changed else {}
                total = 0
                for chunk in chunks(ids):
                    for oid, st in zip(chunk, index.statuses(chunk)):
                        if st in skip and int(oid) not in changed:
                            already[st] += 1
                        else:
                            total += 1
                batches = (_todo_ids(chunk, index, skip, changed) for chunk in chunks(ids))
                def worker(oid):  # an object fetched before is refreshed: a failure keeps it
                    old = previous.get(int(oid))
                    if old is None and args.force:
                        old = index.line_of(int(oid))
                    return fetch_object(client, work, oid, args.image, old, redo=args.force)
                if changed or args.force:
                    journal = update_journal = _UpdateJournal(journal, previous, changed, updates, _now())
            with Progress(total, "fetch", quiet=args.quiet, unit="obj") as progress:
                outage = _run_pool(batches, worker, args.workers, journal,
                                   PaceProgress(progress, client.pacing), counts)
    except ApiOutage as e:  # while listing
        outage = str(e)
    finally:
        client.close()
        compact_journal(journal_path)
    line = summarize(counts, "fetch")
    if already:
        line += f" (+ {sum(already.values())} already done: " + \
                ", ".join(f"{v} {k}" for k, v in sorted(already.items())) + ")"
    failed = sum(v for k, v in counts.items() if k in FAILED) + sum(v for k, v in already.items() if k in FAILED)
    notes = [f"stopped early: {outage}"] if outage else []
    kept = len(updates.get("failed", []))
    if kept:  # each kept its old line, original, record, faces and crops
        failed += update_journal.kept_failures if update_journal else 0
        notes.append(f"{kept} refresh(es) failed (objects "
                     + ", ".join(str(i) for i in sorted(updates["failed"])[:10])
                     + (" ..." if kept > 10 else "") + "): their previous files are kept and "
                     "objects.jsonl says why (refresh_error); the next fetch retries them")
    lines = [line]
    if updates:
        lines.append("fetch updates: " + ", ".join(
            f"{len(updates[k])} {UPDATE_LABELS[k]}" for k in UPDATE_KINDS if updates.get(k)))
    if client.pacing.pacers:
        lines.append("fetch " + client.pacing.summary_line())
    return FetchSummary("fetch", dict(counts), {"objects": journal_path, "api": layout.api_dir,
                                                "originals": layout.originals_dir},
                        time.monotonic() - t0, failed + (1 if outage else 0), lines, notes,
                        already=dict(already), outage=outage,
                        updates={k: sorted(v) for k, v in updates.items()}, pace=client.pacing.report())


def client_config(opts: FetchOptions) -> ClientConfig:
    """The Met client's config: the same-named options, and the three named otherwise."""
    return convert(ClientConfig, opts, api_root=opts.api, allowed_hosts=tuple(opts.allow_host),
                   pool_size=max(10, 2 * opts.workers))


def _todo_ids(chunk, index: JournalIndex, skip: set, changed: frozenset = frozenset()) -> list:
    return [int(i) for i, st in zip(chunk, index.statuses(chunk)) if st not in skip or int(i) in changed]


def _listed_set(listed: list) -> frozenset:
    """The ids the --since listing named (a set: a listing is at most the collection)."""
    return frozenset(int(i) for part in listed for i in part)


def _now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _UpdateJournal:
    """The objects.jsonl appender for a run with --since: each refetched object's line
    carries its image history (workdir.carry_history) and is classified (new / new_image /
    record / withdrawn / unchanged / failed) into `updates`. A failed refetch of an object
    that had an image writes the old line again with `refresh_error`, so a network error
    never withdraws it."""

    def __init__(self, journal, previous: dict, changed: frozenset, updates: dict, now: str):
        self.journal, self.previous, self.changed = journal, previous, changed
        self.updates, self.now = updates, now
        # refetches that failed and kept the old line (fetch_object -> refresh_failed): they
        # count as failures, though the line they write says "ok"
        self.kept_failures = 0

    def write(self, row: dict) -> None:
        oid = row.get("id")
        if row.get("refresh_error") and row.get("status") == "ok":
            self.kept_failures += 1
        if oid not in self.changed:
            if row.get("refresh_error"):  # a --force refetch that failed: old line kept
                self.updates.setdefault("failed", []).append(oid)
            self.journal.write(row)
            return
        old = self.previous.get(oid)
        kind = update_kind(old, row)
        self.updates.setdefault(kind, []).append(oid)
        if kind == "failed" and old and old.get("status") == "ok":
            row = {**old, "refresh_error": row.get("refresh_error")
                   or f"{row.get('status')}: {row.get('reason', '')}"}
        else:
            row = carry_history(old, row, row.get("metadata_date") or self.now)
            row.pop("refresh_error", None)
        self.journal.write(row)


def _source_exists(work: Path, job: SourceJob) -> bool:
    from ..infra.files import safe_join
    if source_path_problem(job.source_path):
        return False  # refuse it (again) rather than trust an earlier ok
    try:
        return safe_join(work, job.source_path).is_file()
    except ValueError:
        return True  # refused again would change nothing


def _run_pool(batches: Iterable, worker: Callable, workers: int, journal, progress, counts) -> Optional[str]:
    """Run `worker` over jobs with at most 2*workers in flight; journal each result as it
    lands (main thread only). Returns the outage message if the API went away. Any other
    exception in a job (a bug, or an answer hostile in a way nothing checked) is recorded
    as that object's failure and the run goes on: one object never stops the others, and a
    rerun does not meet the same crash before it records anything."""
    from ..met.client import ApiOutage
    outage = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as ex:
        pending: dict = {}  # future -> job

        def drain(block_until_one: bool) -> None:
            nonlocal pending, outage
            if not pending:
                return
            done, rest = wait(pending, timeout=None if block_until_one else 0,
                              return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    obj = fut.result()
                except ApiOutage as e:
                    outage = str(e)
                    continue
                except Exception as e:
                    obj = _crashed(job, e)
                journal.write(obj.to_json())
                counts[obj.status] += 1
                progress.update(1, last=obj.status)
        try:
            for batch in batches:
                for job in batch:
                    while len(pending) >= 2 * workers and outage is None:
                        drain(True)
                    if outage:
                        break
                    pending[ex.submit(worker, job)] = job
                if outage:
                    break
            while pending:
                drain(True)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return outage


def _crashed(job, e: BaseException):
    """The failure record of a job that raised: bad_content (not settled, so a rerun tries
    it again), with the exception's type and message."""
    from ..core.records import MetObject
    oid = getattr(job, "obj_id", job)
    msg = str(e)
    msg = msg if len(msg) <= 200 else msg[:200] + "..."
    return MetObject(int(oid), "bad_content", f"could not process this object: {type(e).__name__}: {msg}")
