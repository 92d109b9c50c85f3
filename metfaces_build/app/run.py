"""Run the whole pipeline in one work directory: fetch -> detect -> filter -> align -> report.

Each stage is the same code as its own subcommand, run with the flags below, so a
`run` leaves exactly the files the five commands would (see `metfaces-build COMMAND
--help`):

  fetch    objects.jsonl, api/, originals/         (every fetch flag is accepted here)
  detect   faces.json, detect.jsonl                (--detector, --max-side, ...)
  filter   filtered.json, rejected.jsonl, filter_summary.json   (--filter-config)
  align    images/{obj_id}-{face_idx:02d}.png, images/aligned.json (MetFaces defaults)
  report   report/report.md, report.html, stats.json, contact sheets, and
           report/review.html (every face, to sort, open and overrule: --overrides)

Rerunning resumes: every stage skips work whose output exists and is valid, so a run
that was interrupted (Ctrl-C, a kill, a lost connection) is finished by running the
same command again. Changed settings are picked up without --force (detect redoes images
detected with other settings, filter refilters when its config or input changed, align
recrops changed records); --force redoes every stage from scratch, downloads included.

Flags shared by several stages are handed to each: --quiet, --force, --max-pixels
(fetch, detect, align), --executor/--scheduler (detect, align) and --workers (processes
for detect, filter and align; fetch uses --fetch-workers download threads, sharing one
--rate limit).

The run ends with one summary: per stage the counts over the whole work directory and
where its files are. Items that fail (a refused download, an unreadable image) are
recorded with their reason and the run goes on; a usage error in any stage (a bad flag,
a malformed input file) stops the run at that stage.

Updates: with --since DATE, every object the Met lists as changed since DATE is fetched
again and the change flows through: detect re-detects originals whose sha256 changed,
filter re-measures only their faces, align re-makes their crops and deletes crops of faces
that are gone (marked superseded / withdrawn in images/aligned.json). The summary then
has an "updates" block: objects updated (new / new image / record only / withdrawn),
faces added / removed / moved, crops written / re-made / removed, and the work done
(detector calls, images measured). A rerun with nothing changed does no work.

exit status: 0 every stage succeeded; 1 some items failed somewhere (each recorded in
that stage's files; the summary says where); 2 usage error (the run stops there).

examples:
  metfaces-build run --work W --departments "European Paintings" --limit 200
  metfaces-build run --work ./work --search portrait --has-images --medium Paintings \\
      --detector cascade --filter-config filter.toml
  metfaces-build run --work ./emu --api http://127.0.0.1:8000/public/collection/v1 \\
      --departments 11,9
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..core.errors import UsageError
from ..infra.stage import (StageSummary, convert, force_opt, like, opt, option_names, options_from_args,
                           workers_opt)
from ..infra.executors import count_items
from ..infra.models import resolve_models
from ..infra.workdir import UPDATE_KINDS, UPDATE_LABELS, Work, as_work
from ..stages.align import AlignOptions
from ..stages.detect import DetectOptions
from ..stages.fetch import FetchOptions
from ..stages.filter import FilterOptions, config_from_mapping, load_toml_config
from ..stages.recipe import (ApiGone, align_work, detect_work, explicit_fields, fetch_work,
                             filter_work, use_fetch, use_table)
from ..stages.report import ReportOptions, report
from ..stages.review import ReviewOptions, review
from .commands import fetch as fetch_cmd
from .flags import add_compact, add_options, add_work_dir, print_summary


DETECTION = "detect (see `metfaces-build detect --help`)"
FILTER = "filter and review"


@dataclass(frozen=True)
class RunOptions(FetchOptions):
    """Options of `run`: every fetch option (fetch's `workers` threads are
    `fetch_workers` here), the detect options, and the filter config; `workers` are the
    processes of detect, filter and align."""
    workers: int = workers_opt("processes of detect, filter and align")
    fetch_workers: int = like(FetchOptions, "workers")
    detector: str = like(DetectOptions, "detector", group=DETECTION)
    upsample: int = like(DetectOptions, "upsample")
    cnn_upsample: int = like(DetectOptions, "cnn_upsample")
    cascade_score: float = like(DetectOptions, "cascade_score")
    max_side: int = like(DetectOptions, "max_side", group=DETECTION)
    min_face: int = like(DetectOptions, "min_face")
    models_dir: Optional[str] = like(DetectOptions, "models_dir")
    executor: str = like(DetectOptions, "executor")
    scheduler: Optional[str] = like(DetectOptions, "scheduler")
    filter_config: Optional[str] = like(FilterOptions, "config", group=FILTER)
    overrides: Optional[str] = like(FilterOptions, "overrides", group=FILTER)
    no_review: bool = opt(False, "no report/review.html (`review` writes it)", group=FILTER)
    force: bool = force_opt("redo every stage, downloads included")

    def fetch_options(self) -> FetchOptions:
        return options_from_args(FetchOptions, self, workers=self.fetch_workers)

    def detect_options(self) -> DetectOptions:
        return options_from_args(DetectOptions, self, images=None, out=None)

    def filter_options(self) -> FilterOptions:
        return convert(FilterOptions, self, config=self.filter_config)

    def align_options(self, work: Work) -> AlignOptions:
        return convert(AlignOptions, self, json=str(work.filtered_json),
                       source_images=str(work.path), output_dir=str(work.images_dir))


# ---- the summary ----------------------------------------------------------------------------

@dataclass
class StageRow:
    """One line of the run summary: a stage's exit code and its counts over the work dir."""
    name: str
    exit_code: Optional[int]  # None: not reached
    counts: str = ""
    where: str = ""


@dataclass
class UpdatesReport:
    """What changed end to end in one run (run's "updates" block)."""
    objects: dict = field(default_factory=dict)  # update kind -> [obj ids] (fetch --since)
    faces: dict = field(default_factory=dict)    # added / removed / moved (detect)
    detector_calls: int = 0
    images_measured: int = 0                     # filter
    crops_written: int = 0
    crops_remade: int = 0
    crops_removed: int = 0
    records_updated: int = 0                     # manifest records refreshed, crop kept

    @classmethod
    def from_stages(cls, stages: dict) -> "UpdatesReport":
        f, d, fl, a = (stages.get(n) for n in ("fetch", "detect", "filter", "align"))
        return cls(objects=dict(getattr(f, "updates", {}) or {}),
                   faces=dict(getattr(d, "changes", {}) or {}),
                   detector_calls=getattr(d, "detector_calls", 0),
                   images_measured=getattr(fl, "measured", 0) if fl and not fl.up_to_date else 0,
                   crops_written=getattr(a, "written", 0), crops_remade=getattr(a, "remade", 0),
                   crops_removed=getattr(a, "removed", 0),
                   records_updated=getattr(a, "record_updated", 0))

    @property
    def any_work(self) -> bool:
        return bool(self.detector_calls or self.images_measured or self.crops_written
                    or self.crops_removed)

    def lines(self) -> list:
        objs = ", ".join(f"{len(self.objects[k])} {UPDATE_LABELS[k]}" for k in UPDATE_KINDS
                         if self.objects.get(k))
        changed = [i for k in ("new", "new_image", "record", "withdrawn") for i in self.objects.get(k, [])]
        faces = self.faces or {"added": 0, "removed": 0, "moved": 0}
        return ["updates:",
                f"  objects  {len(changed)} updated ({objs or 'none listed'})",
                "  faces    " + ", ".join(f"{v} {k}" for k, v in faces.items()),
                f"  crops    {self.crops_remade} re-made, {self.crops_written - self.crops_remade} new, "
                f"{self.crops_removed} removed, {self.records_updated} records updated (crop kept)",
                f"  work     {self.detector_calls} detector calls, {self.images_measured} images "
                f"measured by filter, {self.crops_written} crops written"]


@dataclass
class RunSummary(StageSummary):
    """What `run` did: each stage's own summary (`stages`), one row per stage counted
    over the whole work directory (`rows`), and the usage error that stopped it, if any."""
    work: Optional[Work] = None
    stages: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    stopped_at: Optional[str] = None
    error: Optional[str] = None
    updates: Optional[UpdatesReport] = None
    unreachable: Optional[str] = None  # why fetch was skipped (the API root did not answer)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return 2
        return 1 if self.failed_stages else 0

    @property
    def failed_stages(self) -> list:
        return [r.name for r in self.rows if r.exit_code == 1]


def run(work, opts: RunOptions = RunOptions(),
        echo: Optional[Callable[[StageSummary], None]] = None,
        given: Optional[set] = None) -> RunSummary:
    """fetch -> detect -> filter -> align -> report in `work`, each stage called with its
    own options after the work directory's recipe (`given`: the option names the caller
    chose, which change the recipe; default: those that differ from their defaults). A
    usage error in a stage stops the run there (`error`, exit code 2); `echo` is called
    with each stage's summary as it finishes (the CLI prints them)."""
    t0 = time.monotonic()
    work = as_work(work)
    out = RunSummary(stage="run", work=work)
    explicit = explicit_fields(opts, given)
    if opts.dry_run:  # fetch's plan only: nothing is downloaded, so no later stage has work
        return dry_run(work, opts, explicit, out, echo, t0)
    try:
        check_before_starting(work, opts, explicit)
    except UsageError as e:
        out.stopped_at, out.error = "fetch", str(e)
        return out
    run_stages(out, stage_steps(work, opts, explicit), echo)
    summarise(out, opts, t0)
    return out


def dry_run(work: Work, opts: RunOptions, explicit: set, out: RunSummary, echo,
            t0: float) -> RunSummary:
    """`run --dry-run`: fetch's plan, nothing else."""
    try:
        s = fetch_work(work, opts.fetch_options(), explicit)
    except UsageError as e:
        out.stopped_at, out.error = "fetch", str(e)
        return out
    out.stages["fetch"], out.failed = s, s.failed
    if echo is not None:
        echo(s)
    out.elapsed = time.monotonic() - t0
    return out


def stage_steps(work: Work, opts: RunOptions, explicit: set) -> list:
    """[(stage name, call)] in pipeline order, each with its options after the recipe."""
    filter_given = {k for k in explicit if k in ("workers", "force", "quiet")}
    filter_given |= {"config"} if "filter_config" in explicit else set()
    filter_given |= {"overrides"} if "overrides" in explicit else set()
    steps = [("fetch", lambda: fetch_work(work, opts.fetch_options(), explicit)),
             ("detect", lambda: detect_work(work, opts.detect_options(), explicit)),
             ("filter", lambda: filter_work(work, opts.filter_options(), filter_given)),
             ("align", lambda: align_work(work, opts.align_options(work), explicit)),
             ("report", lambda: report(work, ReportOptions())),
             ("review", lambda: review(work, ReviewOptions(workers=opts.workers, quiet=opts.quiet)))]
    return steps[:-1] if opts.no_review else steps


def run_stages(out: RunSummary, steps: list, echo) -> None:
    """Each step in turn into `out.stages`; a usage error stops there, an API that does
    not answer skips fetch only (the rest runs from what is on disk)."""
    for name, step in steps:
        try:
            s = step()
        except ApiGone as e:
            out.unreachable = str(e)
            s = StageSummary(stage="fetch", failed=1, notes=[f"fetch: skipped: {e}"],
                             lines=["fetch: skipped (API not reachable); the other stages run "
                                    "from what is on disk"])
        except UsageError as e:
            out.stopped_at, out.error = name, str(e)
            break
        out.stages[name] = s
        if echo is not None and name not in ("report", "review"):
            echo(s)


def summarise(out: RunSummary, opts: RunOptions, t0: float) -> None:
    """The rows, counts, outputs, updates and lines of `out` after its stages ran."""
    work = out.work
    codes = {name: s.exit_code for name, s in out.stages.items()}
    if out.error is not None:
        codes[out.stopped_at] = 2
    rep = out.stages.get("report")
    out.rows = summarize_work(work, codes, rep.outputs["markdown"] if rep else None)
    out.counts = {r.name: r.counts for r in out.rows}
    out.outputs = {name: s.outputs for name, s in out.stages.items()}
    out.failed = len(out.failed_stages)
    out.elapsed = time.monotonic() - t0
    out.updates = UpdatesReport.from_stages(out.stages)
    out.lines = summary_lines(work, out)
    rv = out.stages.get("review")
    if rv is not None:
        out.lines.append(f"review page: {rv.page} ({rv.faces} faces)")
    if opts.since:  # an update run: say what changed end to end
        out.lines += out.updates.lines()
    elif not out.updates.any_work and out.error is None and not out.failed_stages \
            and not _fetched_any(out.stages.get("fetch")):
        out.lines.append("everything was current: nothing to do")


def _fetched_any(s) -> bool:
    return bool(s is not None and sum((s.counts or {}).values()))


def check_before_starting(work: Work, opts: RunOptions, explicit: set) -> None:
    """Catch a missing selection, a bad filter config or missing models now, not after
    the downloads."""
    use_fetch(work, opts.fetch_options(), explicit, save=False)
    if opts.filter_config:
        config_from_mapping(load_toml_config(opts.filter_config), where=opts.filter_config)
    detector = use_table(work, "detect", opts.detect_options(), explicit, save=False).options.detector
    resolve_models(opts.models_dir, need_cnn=detector != "hog")


def summarize_work(work: Work, codes: dict, report_md: Optional[Path] = None) -> list:
    """Rows per stage with counts from the files in `work` (so a resumed run reports the
    whole directory, not just the items this invocation touched)."""
    outcomes = work.outcomes()
    rows = [StageRow("fetch", codes.get("fetch"), _counts(outcomes.get("fetch"), "objects"),
                     "objects.jsonl, api/, originals/")]
    det = outcomes.get("detect")
    rows.append(StageRow("detect", codes.get("detect"),
                         _counts(det, "images") + (f"; {work.face_count()} faces" if det else ""),
                         "faces.json (journal: detect.jsonl)"))
    fs = work.filter_summary()
    filt = ""
    if fs is not None:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((fs.get("reasons") or {}).items(),
                                                           key=lambda kv: (-kv[1], kv[0])))
        filt = f"{fs.get('kept', 0)} kept, {fs.get('rejected', 0)} rejected" + \
               (f" ({reasons})" if reasons else "")
        if fs.get("image_problems"):
            filt += f"; {len(fs['image_problems'])} unusable source image(s)"
    rows.append(StageRow("filter", codes.get("filter"), filt, "filtered.json, rejected.jsonl"))
    rows.append(StageRow("align", codes.get("align"), _counts(outcomes.get("align"), "faces"),
                         f"images/ (manifest: {work.rel(work.aligned_manifest)})"))
    rows.append(StageRow("report", codes.get("report"), "",
                         work.rel(report_md) if report_md else "report/"))
    return rows


def summary_lines(work: Work, s: RunSummary) -> list:
    lines = ["", f"run summary (work directory {work.path}):"]
    for st in s.rows:
        state = {None: "not run", 0: "ok", 1: "items failed", 2: "usage error"}.get(
            st.exit_code, f"exit {st.exit_code}")
        if st.name == "fetch" and s.unreachable:
            state = "API gone"
        body = f"{st.counts}  " if st.counts else ""
        lines.append(f"  {st.name:<7} {state:<13} {body}-> {st.where}")
    failed = [n for n in s.failed_stages if not (n == "fetch" and s.unreachable)]
    if s.unreachable:
        lines.append("fetch was skipped: the API root did not answer (exit status 1); the "
                     "other stages ran from what is on disk. Rerun when it answers")
    if failed:
        lines.append(f"some items failed in {', '.join(failed)} (exit status 1): each "
                     "is recorded with its reason in that stage's files; rerunning retries "
                     "what can be retried")
    return lines


def _counts(c, unit: str) -> str:
    if not c:
        return ""
    return f"{sum(c.values())} {unit}: {count_items(c)}"


# ---- CLI ------------------------------------------------------------------------------------

MANUAL = __doc__  # the long manual (docs/commands.md)

ABOUT = """\
Run fetch -> detect -> filter -> align -> report (and the review page) in one work
directory, each stage as its own command would, with the options below and the
directory's recipe; a rerun resumes and redoes only what changed. Exit status: 1
when items failed somewhere (each recorded with its reason), 2 at a usage error."""

EXAMPLES = """\
metfaces-build run --work W --departments "European Paintings" --limit 200
metfaces-build run --work W --search portrait --has-images --detector cascade
metfaces-build run --work W --since 2024-01-01"""

# shown in full; the other fetch and detect options are listed by name (their help is in
# `metfaces-build fetch --help` and `detect --help`)
FULL = ("departments", "search", "ids", "since", "limit", "api", "detector", "max_side",
        "workers", "fetch_workers", "filter_config", "overrides", "no_review", "dry_run",
        "force", "quiet")


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p)
    add_options(p, RunOptions, FULL, parse={"since": fetch_cmd.parse_date})
    fetch_only = [n for n in option_names(FetchOptions) if n not in FULL]
    detect_only = [n for n in option_names(RunOptions)
                   if n not in FULL and n not in fetch_only and n in option_names(DetectOptions)]
    add_compact(p, "more fetch options", RunOptions, fetch_only, see="metfaces-build fetch --help")
    add_compact(p, "more detect options", RunOptions, detect_only,
                see="metfaces-build detect --help")


def main(args) -> int:
    opts = options_from_args(RunOptions, args, allow_host=tuple(args.allow_host or ()))
    return print_run(run(args.work, opts, echo=print_summary,
                         given=getattr(args, "_explicit", None)))


def print_run(s: RunSummary) -> int:
    """Print the end of a run as the CLI does (the stages printed their own lines as they
    finished) and return its exit code."""
    if s.error is not None:
        print(f"error: {s.error}", file=sys.stderr)
        if len(s.stages) == 0:
            return 2
    for line in s.lines:
        print(line)
    if s.error is not None:
        print(f"run: stopped at {s.stopped_at} (usage error above); the stages before it "
              "are done and kept: fix the problem and rerun the same command", file=sys.stderr)
    return s.exit_code
