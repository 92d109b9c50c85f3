"""Download Met object records and original images into the work directory.

Choose objects by department (ids or names), a search with filters, explicit ids, or
everything changed since a date; or rebuild NVIDIA's `unprocessed/image-{id}.png` layout
from a metfaces.json (`--from-json`), marking images whose PNG no longer matches the
recorded `source_md5` as `changed`.

Writes, in --work DIR:
  objects.jsonl          one line per object: status, reason, attempts, bytes, sha256, md5,
                         width, height (ok | no_image | not_public_domain | not_found |
                         http_error | bad_content | too_large | refused | changed)
  api/{id}.json          the API record exactly as served
  originals/{id}.{ext}   the image exactly as served, checked (length, magic bytes, full
                         decode, pixel limit) before it is renamed into place

A rerun skips settled objects and retries network/content failures (http_error,
bad_content); --recheck retries every non-ok object, --force redoes everything. The API
is paced (--rate, shared by all --workers threads), retried with backoff, and a 403 block
page pauses all threads together. Ctrl-C or a kill loses nothing: rerun to resume.

examples:
  metfaces-build fetch --departments "European Paintings,11" --limit 500
  metfaces-build fetch --search portrait --has-images --medium Paintings --date-begin 1600 --date-end 1800
  metfaces-build fetch --from-json metfaces.json --rate 5
  metfaces-build fetch --api http://127.0.0.1:8000/public/collection/v1 --ids 436001,436008
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..app.cli import add_common, add_work_dir, nonneg_float, positive_int
from ..core.errors import UsageError

STATUSES = ("ok", "changed", "no_image", "not_public_domain", "not_found", "too_large", "refused",
            "http_error", "bad_content")
SETTLED = {"ok", "changed", "no_image", "not_public_domain", "not_found", "too_large", "refused"}
FAILED = {"not_found", "too_large", "refused", "http_error", "bad_content"}
CHUNK_IDS = 1024
# --from-json writes only NVIDIA's layout: unprocessed/....png (never the stage's own files)
SOURCE_DIR = "unprocessed"


# ---- the journal (objects.jsonl) --------------------------------------------------------

class JournalIndex:
    """The latest status per id in objects.jsonl, as two numpy arrays (8+1 bytes per id):
    bounded memory even for a 500k-object journal, and vectorised look-ups per chunk."""

    def __init__(self, path: Path):
        import numpy as np
        ids, codes = [], []
        code_of = {s: i for i, s in enumerate(STATUSES)}
        from ..infra.files import read_jsonl
        from ..met.client import as_object_id
        for row in read_jsonl(path):
            oid, st = row.get("id"), row.get("status")
            if isinstance(oid, int) and as_object_id(oid) is not None and isinstance(st, str) \
                    and st in code_of:
                ids.append(oid)
                codes.append(code_of[st])
        a, c = np.asarray(ids, dtype=np.int64), np.asarray(codes, dtype=np.int8)
        # last line per id wins: unique over the reversed arrays keeps the last occurrence
        uniq, first_rev = np.unique(a[::-1], return_index=True)
        self.ids, self.codes = uniq, c[::-1][first_rev]

    def statuses(self, ids) -> list:
        """Status (or None) of each id."""
        import numpy as np
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
        hit = (pos < len(self.ids)) & (self.ids[pos_c] == ids) if len(self.ids) else np.zeros(len(ids), bool)
        return [STATUSES[self.codes[p]] if h else None for p, h in zip(pos_c, hit)]


def compact_journal(path: Path) -> int:
    """Rewrite objects.jsonl atomically with only the latest line per id, sorted by id.

    Two passes over byte offsets, so memory is 16 bytes per line, not one dict per record.
    """
    import json

    import numpy as np

    from ..infra.files import atomic_open, loads
    from ..met.client import as_object_id
    if not path.exists():
        return 0
    ids, offsets = [], []
    with open(path, "rb") as f:
        off = 0
        for line in f:
            try:
                row = loads(line)
                oid = row.get("id") if isinstance(row, dict) else None
            except ValueError:  # garbled, not UTF-8, nested too deeply
                oid = None
            if isinstance(oid, int) and as_object_id(oid) is not None and line.endswith(b"\n"):
                ids.append(oid)
                offsets.append(off)
            off += len(line)
    a, o = np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    uniq, first_rev = np.unique(a[::-1], return_index=True)
    keep = o[::-1][first_rev]  # offsets of the last line per id, in id order
    with open(path, "rb") as src, atomic_open(path, "wb") as dst:
        for off in keep:
            src.seek(int(off))
            dst.write(src.readline())
    return len(keep)


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
    from ..met.client import MAX_OBJECT_ID, as_object_id
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


def collect_ids(client, args, log: Callable[[str], None]):
    """All requested ids, de-duplicated in first-seen order and cut to --limit."""
    import numpy as np
    parts = []
    if args.ids:
        parts.append(np.asarray(parse_id_list(args.ids), dtype=np.int64))
    if args.ids_file:
        parts.append(read_ids_file(args.ids_file))
    deps: list = []
    if args.departments:
        from ..met.client import resolve_departments
        try:
            deps = resolve_departments(args.departments.split(","), client.departments())
        except ValueError as e:
            raise UsageError(f"--departments: {e}") from None
    if args.search is not None:
        filters = search_filters(args)
        for dep in deps or [None]:
            extra = {"departmentId": dep} if dep is not None else {}
            found = client.search(args.search, **filters, **extra)
            log(f"search {args.search!r}{f' in department {dep}' if dep else ''}: {len(found)} ids")
            parts.append(np.asarray(found, dtype=np.int64))
    elif deps or args.since:
        found = client.object_ids(deps, args.since)
        log(f"object list: {len(found)} ids")
        parts.append(np.asarray(found, dtype=np.int64))
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


def fetch_object(client, work: Path, oid: int, image: str = "original"):
    """Record + image of one object, as a MetObject (failures are values)."""
    from ..infra.files import atomic_write_bytes
    from ..met.client import FetchFailure
    from ..core.records import MetObject
    oid = int(oid)
    try:
        answer = client.get_object(oid)
    except FetchFailure as f:
        return MetObject(oid, f.status, f.reason, attempts=f.attempts)
    atomic_write_bytes(work / "api" / f"{oid}.json", answer.raw)
    rec = answer.data
    obj = MetObject(oid, "ok", department=_s(rec.get("department")), title=_s(rec.get("title")),
                    artist=_s(rec.get("artistDisplayName")), date=_s(rec.get("objectDate")),
                    is_public_domain=rec.get("isPublicDomain") if isinstance(rec.get("isPublicDomain"), bool) else None,
                    attempts=answer.attempts)
    url = _s(rec.get("primaryImage" if image == "original" else "primaryImageSmall"))
    obj.image_url = url
    if _s(rec.get("objectURL")):
        obj.extra["meta_url"] = _s(rec.get("objectURL"))
    if obj.is_public_domain is False:
        obj.status, obj.reason = "not_public_domain", "isPublicDomain is false"
        return obj
    if not url:
        obj.status, obj.reason = "no_image", f"{'primaryImage' if image == 'original' else 'primaryImageSmall'} is empty"
        return obj
    return _download_into(client, work, obj, url)


def _download_into(client, work: Path, obj, url: str):
    from ..met.client import FetchFailure
    try:
        d = client.download(url, work / "originals", str(obj.id))
    except FetchFailure as f:
        obj.status, obj.reason, obj.attempts = f.status, f.reason, obj.attempts + f.attempts
        obj.width, obj.height = f.width, f.height
        return obj
    _remove_other_extensions(work / "originals", obj.id, d.ext)
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
    from ..met.client import as_object_id
    from ..core.records import MetObject, load_faces
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


# ---- the stage ------------------------------------------------------------------------

def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..infra.images import DEFAULT_MAX_PIXELS
    from ..met.client import DEFAULT_API
    add_work_dir(p)
    src = p.add_argument_group("what to fetch (combine freely; ids are de-duplicated)")
    src.add_argument("--departments", metavar="LIST",
                     help="comma-separated department ids or names, case-insensitive (e.g. 11,9 or "
                          "'European Paintings')")
    src.add_argument("--search", metavar="TEXT", help="search term (API /search); see filters below")
    src.add_argument("--ids", metavar="LIST", help="comma-separated object ids")
    src.add_argument("--ids-file", metavar="FILE", help="object ids, one per line ('#' comments)")
    src.add_argument("--since", metavar="YYYY-MM-DD", type=_date,
                     help="objects whose metadata changed since this date")
    src.add_argument("--from-json", metavar="FILE",
                     help="rebuild unprocessed/image-{id}.png at each record's source_path from its "
                          "source_url (NVIDIA's metfaces.json); mark md5 mismatches `changed`")
    src.add_argument("--limit", type=positive_int, metavar="N", help="only the first N ids")
    flt = p.add_argument_group("search filters (with --search)")
    flt.add_argument("--has-images", action="store_true", help="hasImages=true")
    flt.add_argument("--highlight", action="store_true", help="isHighlight=true")
    flt.add_argument("--on-view", action="store_true", help="isOnView=true")
    flt.add_argument("--medium", metavar="A|B", help="e.g. Paintings|Drawings")
    flt.add_argument("--geo", metavar="A|B", help="geoLocation, e.g. France|Paris")
    flt.add_argument("--date-begin", type=int, metavar="YEAR", help="with --date-end: objects dated within")
    flt.add_argument("--date-end", type=int, metavar="YEAR")
    flt.add_argument("--search-in", choices=("title", "tags", "artist"), help="match the term only there")
    net = p.add_argument_group("network")
    net.add_argument("--api", default=DEFAULT_API, metavar="URL",
                     help="API root (default: %(default)s); point it at `metfaces-build emulator`")
    net.add_argument("--image", choices=("original", "small"), default="original",
                     help="primaryImage (full size, default) or primaryImageSmall (~800 px)")
    net.add_argument("--rate", type=_pos_float, default=10.0, metavar="R",
                     help="requests per second, shared by all workers (default: %(default)s; the "
                          "documented limit is 80, but bursts of ~30 get a 30 s block)")
    net.add_argument("--retries", type=int, default=8, metavar="N",
                     help="retries per request on 403/429/5xx/resets/timeouts (default: %(default)s)")
    net.add_argument("--timeout", type=_pos_float, default=60.0, metavar="S",
                     help="read timeout per request in seconds (default: %(default)s)")
    net.add_argument("--backoff-max", type=_pos_float, default=60.0, metavar="S",
                     help="cap on one exponential backoff, seconds (default: %(default)s)")
    net.add_argument("--backoff-base", type=_pos_float, default=1.0, metavar="S",
                     help="first backoff, doubled per attempt, with jitter (default: %(default)s)")
    net.add_argument("--cooldown", type=nonneg_float, default=30.0, metavar="S",
                     help="shared pause of all workers after a 403 block page (default: %(default)s)")
    net.add_argument("--max-outage", type=_pos_float, default=900.0, metavar="S",
                     help="end the run (resumable) after this long without a success (default: %(default)s)")
    net.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                     help="another host images may come from (repeatable)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images with more pixels (status too_large; default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=4, metavar="N",
                   help="download threads sharing one rate limit (default: %(default)s)")
    p.add_argument("--recheck", action="store_true",
                   help="also retry settled non-ok objects (no_image, not_found, too_large, ...)")
    add_common(p, workers=False)


def _pos_float(s: str) -> float:
    v = nonneg_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


def _date(s: str) -> str:
    import datetime
    try:
        datetime.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {s!r}") from None
    return s


def _check_args(args) -> None:
    if not (args.departments or args.search is not None or args.ids or args.ids_file or args.since
            or args.from_json):
        raise UsageError("fetch: say what to fetch: --departments, --search, --ids, --ids-file, "
                         "--since or --from-json (see --help)")
    if args.from_json and (args.departments or args.search is not None or args.ids or args.ids_file
                           or args.since):
        raise UsageError("fetch: --from-json cannot be combined with other sources")
    if (args.date_begin is None) != (args.date_end is None):
        raise UsageError("fetch: --date-begin and --date-end go together")
    if args.retries < 0:
        raise UsageError("fetch: --retries must be >= 0")
    from ..met.client import image_url_problem
    if image_url_problem(args.api, args.api) is not None:
        raise UsageError(f"fetch: --api must be an http(s) URL, got {args.api!r}")


def run(args) -> int:
    """One fetch per work directory at a time (infra.lock)."""
    from ..infra.lock import work_lock
    _check_args(args)
    with work_lock(args.work, command="fetch"):
        return _run_locked(args)


def _run_locked(args) -> int:
    from ..infra.files import JsonlAppender, remove_stale_temps
    from ..met.client import ApiOutage, ClientConfig, FetchFailure, MetClient
    from ..infra.executors import Progress, summarize

    _check_args(args)
    work = Path(args.work)
    try:
        for sub in ("", "api", "originals"):
            (work / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use work directory {work}: {e}") from None
    for sub in ("", "api", "originals"):
        remove_stale_temps(work / sub)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    cfg = ClientConfig(api_root=args.api, rate=args.rate, retries=args.retries, timeout=args.timeout,
                       backoff_base=args.backoff_base, backoff_max=args.backoff_max,
                       cooldown=args.cooldown, max_outage=args.max_outage, max_pixels=args.max_pixels,
                       allowed_hosts=tuple(args.allow_host), pool_size=max(10, 2 * args.workers))
    client = MetClient(cfg)
    journal_path = work / "objects.jsonl"
    index = JournalIndex(journal_path)
    skip = set() if args.force else ({"ok", "changed"} if args.recheck else SETTLED)
    counts: Counter = Counter()
    already: Counter = Counter()
    outage: Optional[str] = None
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
                try:
                    ids = collect_ids(client, args, log)
                except FetchFailure as f:
                    print(f"error: could not list objects: {f.reason}", file=sys.stderr)
                    return 1
                total = 0
                for chunk in chunks(ids):
                    for st in index.statuses(chunk):
                        if st in skip:
                            already[st] += 1
                        else:
                            total += 1
                batches = (_todo_ids(chunk, index, skip) for chunk in chunks(ids))
                worker = lambda oid: fetch_object(client, work, oid, args.image)  # noqa: E731
            with Progress(total, "fetch", quiet=args.quiet, unit="obj") as progress:
                outage = _run_pool(batches, worker, args.workers, journal, progress, counts)
    except ApiOutage as e:  # while listing
        outage = str(e)
    finally:
        client.close()
        compact_journal(journal_path)
    line = summarize(counts, "fetch")
    if already:
        line += f" (+ {sum(already.values())} already done: " + \
                ", ".join(f"{v} {k}" for k, v in sorted(already.items())) + ")"
    print(line)
    if outage:
        print(f"stopped early: {outage}", file=sys.stderr)
        return 1
    failed = sum(v for k, v in counts.items() if k in FAILED) + sum(v for k, v in already.items() if k in FAILED)
    return 1 if failed else 0


def _todo_ids(chunk, index: JournalIndex, skip: set) -> list:
    return [int(i) for i, st in zip(chunk, index.statuses(chunk)) if st not in skip]


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
    lands (main thread only). Returns the outage message if the API went away."""
    from ..met.client import ApiOutage
    outage = None
    crashed: Optional[BaseException] = None  # a bug in one job: the others still get recorded
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as ex:
        pending: set = set()

        def drain(block_until_one: bool) -> None:
            nonlocal pending, outage, crashed
            if not pending:
                return
            done, pending = wait(pending, timeout=None if block_until_one else 0,
                                 return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    obj = fut.result()
                except ApiOutage as e:
                    outage = str(e)
                    continue
                except Exception as e:
                    crashed = crashed or e
                    outage = outage or f"internal error: {type(e).__name__}: {e}"
                    continue
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
                    pending.add(ex.submit(worker, job))
                if outage:
                    break
            while pending:
                drain(True)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    if crashed is not None:
        raise crashed
    return outage
