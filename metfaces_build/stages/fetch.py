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

import os
import re
import sys
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..core.errors import UsageError
from ..infra.images import DEFAULT_MAX_PIXELS
from ..infra.stage import StageSummary
from ..infra.workdir import FETCH_FAILED as FAILED
from ..infra.workdir import FETCH_STATUSES as STATUSES  # noqa: F401 - the statuses fetch records
from ..infra.workdir import JournalIndex, Work, compact_journal, fetch_skip_statuses
from ..met.client import DEFAULT_API
CHUNK_IDS = 1024


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
    out = []
    for tok in re.split(r"[,\s]+", text.strip()):
        if not tok:
            continue
        if not tok.isdigit() or int(tok) < 1:
            raise UsageError(f"{where}: {tok!r} is not an object id (a positive whole number)")
        out.append(int(tok))
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
    try:
        dest = safe_join(work, job.source_path)
    except ValueError as e:
        obj.status, obj.reason = "refused", f"source_path: {e}"
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
    png_md5 = file_digest(dest, "md5")
    obj.extra["png_md5"] = png_md5
    obj.extra["source_md5"] = job.source_md5
    verdict = compare_source(png_md5, job.source_md5, (obj.width, obj.height), (job.width, job.height))
    obj.status, obj.reason = verdict
    return obj


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


def _s(v) -> str:
    return "" if v is None else str(v)


# ---- the stage ------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchOptions:
    """Options of the fetch stage (names and defaults of its CLI flags). Say what to
    fetch with at least one of departments, search, ids, ids_file, since, from_json."""
    departments: Optional[str] = None   # "11,9" or "European Paintings"
    search: Optional[str] = None
    ids: Optional[str] = None           # "436001,436008"
    ids_file: Optional[str] = None
    since: Optional[str] = None         # YYYY-MM-DD
    from_json: Optional[str] = None
    limit: Optional[int] = None
    has_images: bool = False
    highlight: bool = False
    on_view: bool = False
    medium: Optional[str] = None
    geo: Optional[str] = None
    date_begin: Optional[int] = None
    date_end: Optional[int] = None
    search_in: Optional[str] = None     # title | tags | artist
    api: str = DEFAULT_API
    image: str = "original"             # original | small
    rate: float = 10.0
    retries: int = 8
    timeout: float = 60.0
    backoff_max: float = 60.0
    backoff_base: float = 1.0
    cooldown: float = 30.0
    max_outage: float = 900.0
    allow_host: tuple = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 4                    # download threads sharing one rate limit
    recheck: bool = False
    force: bool = False
    quiet: bool = False


@dataclass
class FetchSummary(StageSummary):
    """fetch's outcome: `counts` by status of the objects fetched now; `already` those a
    rerun left alone; `outage` why it stopped early, if it did."""
    already: dict = field(default_factory=dict)
    outage: Optional[str] = None


def _check_args(args: FetchOptions) -> None:
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
    if args.since is not None:
        import datetime
        try:
            datetime.date.fromisoformat(args.since)
        except (TypeError, ValueError):
            raise UsageError(f"fetch: --since: expected a date YYYY-MM-DD, got {args.since!r}") from None
    from ..met.client import image_url_problem
    if image_url_problem(args.api, args.api) is not None:
        raise UsageError(f"fetch: --api must be an http(s) URL, got {args.api!r}")


def fetch(work, opts: FetchOptions) -> FetchSummary:
    """Download the chosen objects' records and original images into `work`, journal
    each outcome in objects.jsonl and return counts by status. Resumes: settled objects
    are skipped (`opts.recheck` retries non-ok ones, `opts.force` everything)."""
    import time
    t0 = time.monotonic()
    args = opts
    from ..infra.files import JsonlAppender, remove_stale_temps
    from ..met.client import ApiOutage, ClientConfig, FetchFailure, MetClient
    from ..infra.executors import Progress, summarize

    _check_args(args)
    layout = work if isinstance(work, Work) else Work(work)
    work = layout.path
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
    journal_path = layout.objects_jsonl
    index = JournalIndex(journal_path)
    skip = fetch_skip_statuses(args.force, args.recheck)
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
                    return FetchSummary("fetch", {}, {}, time.monotonic() - t0, 1, [],
                                        [f"error: could not list objects: {f.reason}"])
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
    failed = sum(v for k, v in counts.items() if k in FAILED) + sum(v for k, v in already.items() if k in FAILED)
    return FetchSummary("fetch", dict(counts), {"objects": journal_path, "api": layout.api_dir,
                                                "originals": layout.originals_dir},
                        time.monotonic() - t0, failed + (1 if outage else 0), [line],
                        [f"stopped early: {outage}"] if outage else [],
                        already=dict(already), outage=outage)


def _todo_ids(chunk, index: JournalIndex, skip: set) -> list:
    return [int(i) for i, st in zip(chunk, index.statuses(chunk)) if st not in skip]


def _source_exists(work: Path, job: SourceJob) -> bool:
    from ..infra.files import safe_join
    try:
        return safe_join(work, job.source_path).is_file()
    except ValueError:
        return True  # refused again would change nothing


def _run_pool(batches: Iterable, worker: Callable, workers: int, journal, progress, counts) -> Optional[str]:
    """Run `worker` over jobs with at most 2*workers in flight; journal each result as it
    lands (main thread only). Returns the outage message if the API went away."""
    from ..met.client import ApiOutage
    outage = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as ex:
        pending: set = set()

        def drain(block_until_one: bool) -> None:
            nonlocal pending, outage
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
    return outage
