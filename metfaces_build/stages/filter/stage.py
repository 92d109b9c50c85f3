"""The filter stage's driver: plan (config, faces, decisions in force), skip when up to
date, execute (cached images reused, the rest measured in a pool, then near-duplicates
and a person's decisions), write the outputs and the cache, summarise."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...core.errors import UsageError
from ...core.records import LoadedFaces, Rejection
from ...core.status import BAD_RECORD, KEEP, REJECT
from ...infra.executors import LocalExecutor, Progress, library_versions
from ...infra.faces import load_faces
from ...infra.files import atomic_write_json, file_digest, read_json, write_jsonl
from ...infra.jsonstream import atomic_write_json_list
from ...infra.lock import locked
from ...infra.stage import StageSummary
from ...infra.workdir import FACES, Work, as_work, clean_filter_summary
from .cache import cache_entry, cached_result, image_cache_key, read_cache, write_cache
from .config import FilterConfig, FilterOptions, build_config
from .duplicates import resolve_duplicates
from .explain import explain
from .overrides import (OVERRIDES_FILE, apply_overrides, duplicate_notes, overrides_digest,
                        overrides_in_force, stale_notes)
from .results import FilterOutcome
from .tasks import check_image_faces, filter_tasks


@dataclass
class FilterSummary(StageSummary):
    """filter's outcome: `counts` has kept and rejected; `reasons` the rejections' tests."""
    kept: int = 0
    rejected: int = 0
    reasons: dict = field(default_factory=dict)
    up_to_date: bool = False
    measured: int = 0       # images whose faces were measured now
    from_cache: int = 0     # images whose results came from filter_cache.json


@dataclass
class FilterPlan:
    """What one run works on, settled before anything is written."""
    opts: FilterOptions
    faces_path: Path
    source_root: Path
    cfg: FilterConfig
    loaded: LoadedFaces
    t0: float
    digest: str = ""                                   # sha256 of faces.json
    overrides: dict = field(default_factory=dict)      # face id -> decision, to apply
    stale: list = field(default_factory=list)          # saved decisions for faces gone


def filter(work, opts: FilterOptions = FilterOptions()) -> FilterSummary:  # noqa: A001
    """Run every test on every face of faces.json in `work`; write filtered.json,
    rejected.jsonl and filter_summary.json. Skipped when inputs and config are unchanged
    (unless `opts.force`). With `opts.explain`, prints one object's tests, writes nothing."""
    t0 = time.monotonic()
    work = as_work(work)
    plan = plan_run(work, opts, t0)
    if opts.explain is not None:
        lines = explain(work.path, plan.loaded.faces, plan.source_root, plan.cfg,
                        str(opts.explain))
        return FilterSummary(stage="filter", elapsed=time.monotonic() - t0, lines=lines)
    return _filter_locked(work, plan)


def plan_run(work: Work, opts: FilterOptions, t0: float) -> FilterPlan:
    """The config (defaults, TOML, flags), the faces and the source folder; UsageError on
    a bad one."""
    faces_path = Path(opts.faces) if opts.faces else work.faces_json
    source_root = Path(opts.source_images) if opts.source_images else work.path
    cfg = build_config(opts)
    loaded = load_faces(faces_path, skip_bad=opts.skip_bad, what="faces file", pack=True)
    if not source_root.is_dir():
        raise UsageError(f"--source-images {source_root} is not a folder")
    return FilterPlan(opts, faces_path, source_root, cfg, loaded, t0)


@locked("filter")  # one writer per work directory
def _filter_locked(work: Work, plan: FilterPlan) -> FilterSummary:
    # the decisions are checked before anything is written
    plan.overrides, plan.stale = overrides_in_force(plan.opts, work, plan.loaded.faces)
    plan.digest = file_digest(plan.faces_path, "sha256")
    old = up_to_date_summary(work, plan)
    if old is not None:
        return summarise_up_to_date(work, plan, old)
    outcome = execute(work, plan)
    summary = write_outputs(work, outcome, plan.cfg, plan.digest, plan.source_root)
    write_cache(work.filter_cache_json, outcome.cache)
    return summarise(work, plan, outcome, summary)


def _outputs(work: Work) -> dict:
    return {"filtered": work.filtered_json, "rejected": work.rejected_jsonl,
            "summary": work.filter_summary_json}


def up_to_date_summary(work: Work, plan: FilterPlan) -> Optional[dict]:
    """The last run's filter_summary.json when its outputs stand for this run (same faces,
    config, sources and decisions; not --force), else None."""
    if plan.opts.force or not all(p.exists() for p in _outputs(work).values()):
        return None
    old = read_json(work.filter_summary_json, "filter summary")
    # a damaged summary (a field of the wrong type) is not up to date: filter again
    if not isinstance(old, dict) or clean_filter_summary(old) != old:
        return None
    root = plan.source_root.resolve()
    same_sources = (old.get("source_images") == str(root)
                    or old.get("source_is_work") is True and root == work.path.resolve())
    decisions = old.get("overrides") or {}
    same_decisions = (decisions.get("sha256", overrides_digest({}))
                      == overrides_digest(plan.overrides)
                      and decisions.get("stale", []) == plan.stale)
    fresh = (old.get("input_sha256") == plan.digest and old.get("config") == plan.cfg.to_json()
             and same_sources and same_decisions)
    return old if fresh else None


def execute(work: Work, plan: FilterPlan) -> FilterOutcome:
    """Every test on every face (cached images reused), then the decisions in force."""
    cache = {} if plan.opts.force else read_cache(work.filter_cache_json)
    outcome = filter_faces(plan.loaded.faces, plan.source_root, plan.cfg, plan.opts.workers,
                           plan.opts.quiet, plan.loaded.bad, cache)
    apply_overrides(outcome.verdicts, plan.overrides)
    outcome.overrides, outcome.stale_overrides = plan.overrides, plan.stale
    return outcome


def filter_faces(faces: list, source_root: Path, cfg: FilterConfig, workers: int = 1,
                 quiet: bool = True, bad_records: Optional[list] = None,
                 cache: Optional[dict] = None) -> FilterOutcome:
    """Run every test on every face; the reusable core of the stage (no output files).
    `cache` (filter_cache.json's entries) supplies the per-image results of images whose
    content, faces and config are unchanged; the outcome's `cache` holds this input's."""
    tasks = filter_tasks(faces, source_root, cfg)
    keys = {t.source_path: image_cache_key(t) for t in tasks}
    verdicts, new_cache, todo = _from_cache(tasks, keys, cache or {})
    problems: dict = {}
    kept = sum(v.keep for v in verdicts)  # a running count: no rescan per image
    with Progress(len(todo), "filter", quiet=quiet or not todo, unit="img") as bar:
        for res in LocalExecutor(min(workers, max(1, len(todo)))).imap(check_image_faces, todo):
            for v in res.verdicts:  # the parent's record, not a worker's copy of it
                v.record = faces[v.index]
            verdicts.extend(res.verdicts)
            kept += sum(v.keep for v in res.verdicts)
            if res.problem:
                problems[res.source_path] = res.problem
            elif keys[res.source_path]:
                new_cache[keys[res.source_path]] = json.dumps(cache_entry(res))  # text: ~1/4 the memory
            # faces passing the per-image tests so far; duplicates and overrides come after
            bar.update(1, passed=kept)
    verdicts.sort(key=lambda v: v.index)
    resolve_duplicates(verdicts, cfg)
    return FilterOutcome(verdicts, list(bad_records or []), problems, len(todo), new_cache)


def _from_cache(tasks: list, keys: dict, cache: dict) -> tuple:
    """(verdicts of the images the cache holds, their cache entries, tasks to measure)."""
    verdicts: list = []
    entries: dict = {}
    todo = []
    for t in tasks:
        key = keys[t.source_path]
        entry = cache.get(key) if key else None
        res = cached_result(t, entry) if entry is not None else None
        if res is None:
            todo.append(t)
        else:
            verdicts.extend(res.verdicts)
            entries[key] = entry
    return verdicts, entries, todo


def write_outputs(work, outcome: FilterOutcome, cfg: FilterConfig, input_digest: str,
                  source_root: Optional[Path] = None) -> dict:
    """filtered.json, rejected.jsonl and filter_summary.json (each written atomically)."""
    rows = [v.rejection().to_json() for v in outcome.rejected]
    for b in outcome.bad_records:
        rows.append(Rejection(b.obj_id or "", -1 if b.face_idx is None else b.face_idx,
                              [BAD_RECORD], {"record_index": b.index, "error": b.reason}).to_json())
    work = as_work(work)
    kept = outcome.kept  # one scan of the verdicts, not one per use
    # one record at a time: never the whole list as dicts and text
    atomic_write_json_list(work.filtered_json, ({**v.record.to_json(), "filter": v.values()}
                                                for v in kept))
    write_jsonl(work.rejected_jsonl, rows)
    root = (source_root or work.path).resolve()
    summary = {
        "input": FACES, "input_sha256": input_digest, "source_images": str(root),
        # the sources are the work directory itself: still true after the folder is moved
        "source_is_work": root == work.path.resolve(),
        "faces": len(outcome.verdicts) + len(outcome.bad_records),
        "kept": len(kept), "rejected": len(rows),
        "reasons": dict(sorted(outcome.reason_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
        "grayscale_kept": sum(1 for v in kept
                              if (v.values().get("grayscale") or {}).get("grayscale")),
        "image_problems": outcome.image_problems,
        "overrides": _decisions_summary(outcome),
        "config": cfg.to_json(), "versions": library_versions(),
    }
    atomic_write_json(work.filter_summary_json, summary)
    return summary


def _decisions_summary(outcome: FilterOutcome) -> dict:
    """The summary's `overrides` block: which file, its digest, what it decided."""
    decided = [v for v in outcome.verdicts if v.override is not None]
    return {"file": OVERRIDES_FILE, "sha256": overrides_digest(outcome.overrides),
            "keep": sum(1 for v in decided if v.override == KEEP),
            "reject": sum(1 for v in decided if v.override == REJECT),
            "moved": sum(1 for v in decided if v.keep != v.passed),
            "stale": outcome.stale_overrides}


def summary_line(summary: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items())
    o = summary.get("overrides") or {}
    decided = (o.get("keep") or 0) + (o.get("reject") or 0)
    return (f"filter: {summary['kept']} kept, {summary['rejected']} rejected of {summary['faces']}"
            + (f" ({reasons})" if reasons else "")
            + (f"; {decided} decided by a person ({o.get('keep')} keep, {o.get('reject')} reject, "
               f"{o.get('moved')} against the tests; {OVERRIDES_FILE})" if decided else ""))


def summarise_up_to_date(work: Work, plan: FilterPlan, old: dict) -> FilterSummary:
    """The last run's summary again: nothing was measured or written."""
    failed = len(old.get("image_problems") or {}) + (old.get("reasons") or {}).get(BAD_RECORD, 0)
    return _summary(old, _outputs(work), elapsed=time.monotonic() - plan.t0,
                    failed=failed + bool(plan.stale),
                    lines=[summary_line(old) + " (up to date; --force redoes it)"],
                    notes=stale_notes(plan.stale, work) + duplicate_notes(plan.opts, work),
                    up_to_date=True)


def summarise(work: Work, plan: FilterPlan, outcome: FilterOutcome, summary: dict) -> FilterSummary:
    """The summary of a run that measured: its line, notes and what made it fail."""
    notes = stale_notes(plan.stale, work) + duplicate_notes(plan.opts, work)
    if outcome.image_problems:
        notes.append(f"{len(outcome.image_problems)} source image(s) unusable; their faces are "
                     f"in rejected.jsonl")
    n_images = len({f.source_path for f in plan.loaded.faces})
    line = summary_line(summary) + (f"; {outcome.measured} images measured, "
                                    f"{n_images - outcome.measured} from {work.filter_cache_json.name}"
                                    if outcome.measured < n_images else "")
    failed = len(outcome.image_problems) + len(outcome.bad_records) + bool(plan.stale)
    out = _summary(summary, _outputs(work), elapsed=time.monotonic() - plan.t0, failed=failed,
                   lines=[line], notes=notes, up_to_date=False)
    out.measured, out.from_cache = outcome.measured, n_images - outcome.measured
    return out


def _summary(s: dict, outputs: dict, *, elapsed: float, failed: int, lines: list, notes: list,
             up_to_date: bool) -> FilterSummary:
    kept, rejected = s.get("kept", 0), s.get("rejected", 0)
    return FilterSummary(stage="filter", counts={"kept": kept, "rejected": rejected},
                         outputs=outputs, elapsed=elapsed, failed=failed, lines=lines,
                         notes=notes, kept=kept, rejected=rejected,
                         reasons=dict(s.get("reasons") or {}), up_to_date=up_to_date)

