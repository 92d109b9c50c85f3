"""The fetch driver, in four steps: plan (which objects to request, and how each is
journaled), execute (the download pool), retire (close the client, compact the journal),
summarise. One fetch per work directory at a time (infra.lock); a dry run only plans.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ...core.errors import UsageError
from ...core.status import FETCH_FAILED
from ...infra.executors import Progress, summarize
from ...infra.files import JsonlAppender, remove_stale_temps
from ...infra.lock import locked
from ...infra.workdir import UPDATE_KINDS, UPDATE_LABELS, Work, as_work
from ...met.client import ApiOutage, FetchFailure, MetClient
from ...met.pacing import PaceProgress
from .dry_run import dry_run
from .from_json import fetch_source, source_jobs, source_settled
from .journal import JournalIndex, UpdateJournal, compact_journal, fetch_skip_statuses, utc_now
from .objects import fetch_object
from .options import FetchOptions, FetchSummary, check_options, client_config
from .pool import run_pool
from .select import chunks, collect_ids, listed_set, todo_ids


@dataclass
class Plan:
    """What execute runs: `total` jobs in `batches`, each through `worker`, its outcome
    written to `journal` (the appender, or an UpdateJournal around it)."""
    total: int
    batches: Iterable
    worker: Callable
    journal: object


@dataclass
class Tally:
    """What a run found: `counts` by status of the objects fetched now, `already` those
    left alone, `updates` {update kind: [ids]}, and why it stopped early, if it did."""
    counts: Counter = field(default_factory=Counter)
    already: Counter = field(default_factory=Counter)
    updates: dict = field(default_factory=dict)
    outage: Optional[str] = None
    update_journal: Optional[UpdateJournal] = None


def fetch(work, opts: FetchOptions) -> FetchSummary:
    """Download the chosen objects' records and original images into `work`, journal
    each outcome in objects.jsonl and return counts by status. Resumes: settled objects
    are skipped (`opts.recheck` retries non-ok ones, `opts.force` everything). One fetch
    per work directory at a time (infra.lock); a dry run takes no lock and writes nothing."""
    check_options(opts)
    layout = as_work(work)
    if opts.dry_run:
        return _dry_run(layout, opts)
    return _fetch_locked(layout, opts)


@locked("fetch")
def _fetch_locked(layout: Work, opts: FetchOptions) -> FetchSummary:
    t0 = time.monotonic()
    log = _logger(opts)
    _prepare(layout)
    client = MetClient(client_config(opts))
    index = JournalIndex(layout.objects_jsonl)
    tally = Tally()
    try:
        with JsonlAppender(layout.objects_jsonl) as journal:
            try:
                plan = _plan(layout, opts, client, index, journal, tally, log)
            except FetchFailure as f:  # a listing failed: nothing was fetched
                return FetchSummary(stage="fetch", elapsed=time.monotonic() - t0, failed=1,
                                    notes=[f"error: could not list objects: {f.reason}"])
            _execute(plan, opts, client, tally)
    except ApiOutage as e:  # while listing
        tally.outage = str(e)
    finally:
        _retire(layout, client)
    return _summarise(layout, client, tally, time.monotonic() - t0)


def _dry_run(layout: Work, opts: FetchOptions) -> FetchSummary:
    """The plan only: writes nothing, creates no folder."""
    t0 = time.monotonic()
    client = MetClient(client_config(opts))
    try:
        plan = dry_run(opts, layout, client, _logger(opts))
    except (FetchFailure, ApiOutage) as f:
        msg = f"could not list objects: {getattr(f, 'reason', f)}"
        return FetchSummary(stage="fetch", elapsed=time.monotonic() - t0, failed=1, notes=[msg])
    finally:
        client.close()
    return FetchSummary(stage="fetch", elapsed=time.monotonic() - t0, lines=plan.lines(), plan=plan)


def _logger(opts: FetchOptions) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not opts.quiet:
            print(msg, file=sys.stderr)
    return log


def _prepare(layout: Work) -> None:
    """The stage's folders, without the temporary files a killed run left."""
    folders = (layout.path, layout.api_dir, layout.originals_dir)
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use work directory {layout.path}: {e}") from None
    for folder in folders:
        remove_stale_temps(folder)


# ---- plan ---------------------------------------------------------------------------------

def _plan(layout: Work, opts: FetchOptions, client, index: JournalIndex, journal, tally: Tally,
          log: Callable[[str], None]) -> Plan:
    """The jobs to run; those a rerun leaves alone are counted in `tally.already`."""
    skip = fetch_skip_statuses(opts.force, opts.recheck)
    if opts.from_json:
        return _plan_sources(layout, opts, client, index, skip, journal, tally, log)
    return _plan_ids(layout, opts, client, index, skip, journal, tally, log)


def _plan_sources(layout: Work, opts: FetchOptions, client, index: JournalIndex, skip: frozenset,
                  journal, tally: Tally, log: Callable[[str], None]) -> Plan:
    """--from-json: one job per source image not done yet; the entries refused while
    reading the file are journaled at once."""
    jobs, refusals = source_jobs(opts.from_json, log)
    for r in refusals:
        journal.write(r.to_json())
        tally.counts[r.status] += 1
    if opts.limit:
        jobs = jobs[: opts.limit]
    todo = []
    for job, st in zip(jobs, index.statuses([j.obj_id for j in jobs]) if jobs else []):
        if source_settled(layout.path, job, st, skip):
            tally.already[st] += 1
        else:
            todo.append(job)
    return Plan(len(todo), [todo], lambda job: fetch_source(client, layout.path, job), journal)


def _plan_ids(layout: Work, opts: FetchOptions, client, index: JournalIndex, skip: frozenset,
              journal, tally: Tally, log: Callable[[str], None]) -> Plan:
    """The chosen ids not settled yet, and those fetched again although settled: named by
    the --since listing, a refresh that failed before, or any with --force. A refetch
    goes through an UpdateJournal (its update kind and image history)."""
    listed: list = []
    ids = collect_ids(client, opts, log, listed=listed)
    changed = listed_set(listed) | index.refresh_pending
    previous = layout.objects_of(changed) if changed else {}
    total = 0
    for chunk in chunks(ids):
        for oid, st in zip(chunk, index.statuses(chunk)):
            if st in skip and int(oid) not in changed:
                tally.already[st] += 1
            else:
                total += 1
    batches = (todo_ids(chunk, index.statuses(chunk), skip, changed) for chunk in chunks(ids))

    def worker(oid):  # an object fetched before is refreshed: a failure keeps it
        old = previous.get(int(oid))
        if old is None and opts.force:
            old = index.line_of(int(oid))
        return fetch_object(client, layout.path, oid, opts.image, old, redo=opts.force)
    if changed or opts.force:
        journal = tally.update_journal = UpdateJournal(journal, previous, changed, tally.updates,
                                                       utc_now())
    return Plan(total, batches, worker, journal)


# ---- execute, retire, summarise ------------------------------------------------------------

def _execute(plan: Plan, opts: FetchOptions, client, tally: Tally) -> None:
    """The plan's jobs on `opts.workers` threads, each outcome journaled as it lands; an
    API outage stops the run (`tally.outage`)."""
    with Progress(plan.total, "fetch", quiet=opts.quiet, unit="obj") as progress:
        tally.outage = run_pool(plan.batches, plan.worker, opts.workers, plan.journal,
                                PaceProgress(progress, client.pacing), tally.counts)


def _retire(layout: Work, client) -> None:
    """Save the paces learned and keep only the latest line per object in the journal."""
    client.close()
    compact_journal(layout.objects_jsonl)


def _summarise(layout: Work, client, tally: Tally, elapsed: float) -> FetchSummary:
    counts, already, updates = tally.counts, tally.already, tally.updates
    line = summarize(counts, "fetch")
    if already:
        line += f" (+ {sum(already.values())} already done: " + \
                ", ".join(f"{v} {k}" for k, v in sorted(already.items())) + ")"
    failed = sum(v for k, v in counts.items() if k in FETCH_FAILED) \
        + sum(v for k, v in already.items() if k in FETCH_FAILED)
    notes = [f"stopped early: {tally.outage}"] if tally.outage else []
    kept = len(updates.get("failed", []))
    if kept:  # each kept its old line, original, record, faces and crops
        failed += tally.update_journal.kept_failures if tally.update_journal else 0
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
    outputs = {"objects": layout.objects_jsonl, "api": layout.api_dir,
               "originals": layout.originals_dir}
    return FetchSummary(stage="fetch", counts=dict(counts), outputs=outputs, elapsed=elapsed,
                        failed=failed + (1 if tally.outage else 0), lines=lines, notes=notes,
                        already=dict(already), outage=tally.outage,
                        updates={k: sorted(v) for k, v in updates.items()},
                        pace=client.pacing.report())
