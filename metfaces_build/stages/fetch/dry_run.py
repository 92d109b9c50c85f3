"""--dry-run: what a fetch would request, by department and by status already in
objects.jsonl, and how long it would take at the pace learned so far. Requests no object
record or image (a --departments, --search or --since source still makes its listing
requests) and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ...infra.files import read_jsonl
from ...infra.workdir import Work
from .from_json import source_jobs, source_settled
from .journal import JournalIndex, fetch_skip_statuses
from .select import IdLabels, chunks, collect_ids, listed_set


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


def dry_run(opts, layout: Work, client, log: Callable[[str], None]) -> DryRunPlan:
    """The DryRunPlan for these options, asking `client` (which the caller closes) only
    for listings (a listing that fails is a FetchFailure or ApiOutage the caller reports)."""
    work = layout.path
    index = JournalIndex(layout.objects_jsonl)
    skip = fetch_skip_statuses(opts.force, opts.recheck)
    labels = IdLabels()
    pace = client.pace_estimate()
    plan = DryRunPlan(pace.rate, pace)
    if opts.from_json:
        jobs = source_jobs(opts.from_json, log)[0][: opts.limit or None]
        journal_labels(layout.objects_jsonl, labels)
        ids = [j.obj_id for j in jobs]
        for job, st, dep in zip(jobs, index.statuses(ids), labels.lookup(ids)):
            plan.add(st, not source_settled(work, job, st, skip), dep)
        return plan
    listed: list = []
    ids = collect_ids(client, opts, log, labels, listed)
    changed = listed_set(listed) | index.refresh_pending
    journal_labels(layout.objects_jsonl, labels)
    for chunk in chunks(ids):
        for oid, st, dep in zip(chunk, index.statuses(chunk), labels.lookup(chunk)):
            plan.add(st, st not in skip or int(oid) in changed, dep)
    return plan


def journal_labels(path: Path, labels: IdLabels, batch: int = 65536) -> None:
    """Add the department of every object objects.jsonl already has a record for."""
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
