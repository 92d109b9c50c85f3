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
  metfaces-build run --work ./work --departments "European Paintings" --limit 200
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
from ..infra.stage import StageSummary, default_of, default_workers, options_from_args
from ..infra.workdir import Work, as_work
from ..stages.align import AlignOptions
from ..stages.detect import DetectOptions
from ..stages.fetch import FetchOptions
from ..stages.filter import FilterOptions
from ..stages.recipe import ApiGone, align_work, detect_work, explicit_fields, fetch_work, filter_work
from ..stages.report import ReportOptions, report
from ..stages.review import ReviewOptions, review


@dataclass(frozen=True)
class RunOptions(FetchOptions):
    """Options of `run`: every fetch option (fetch's `workers` threads are
    `fetch_workers` here), the detect options, and the filter config; `workers` are the
    processes of detect, filter and align."""
    workers: int = field(default_factory=default_workers)
    fetch_workers: int = 4
    detector: str = default_of(DetectOptions, "detector")
    upsample: int = default_of(DetectOptions, "upsample")
    cnn_upsample: int = default_of(DetectOptions, "cnn_upsample")
    cascade_score: float = default_of(DetectOptions, "cascade_score")
    max_side: int = default_of(DetectOptions, "max_side")
    min_face: int = default_of(DetectOptions, "min_face")
    models_dir: Optional[str] = None
    executor: str = "local"
    scheduler: Optional[str] = None
    filter_config: Optional[str] = None
    overrides: Optional[str] = None   # a person's decisions, handed to filter
    no_review: bool = False           # skip report/review.html (e.g. written later)

    def fetch_options(self) -> FetchOptions:
        return options_from_args(FetchOptions, self, workers=self.fetch_workers)

    def detect_options(self) -> DetectOptions:
        return options_from_args(DetectOptions, self, images=None, out=None)

    def filter_options(self) -> FilterOptions:
        return FilterOptions(config=self.filter_config, overrides=self.overrides,
                             workers=self.workers, force=self.force, quiet=self.quiet)

    def align_options(self, work: Work) -> AlignOptions:
        return AlignOptions(json=str(work.filtered_json), source_images=str(work.path),
                            output_dir=str(work.images_dir), max_pixels=self.max_pixels,
                            workers=self.workers, force=self.force, quiet=self.quiet,
                            executor=self.executor, scheduler=self.scheduler)


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
        from ..infra.workdir import UPDATE_KINDS, UPDATE_LABELS
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
    out = RunSummary("run", work=work)
    explicit = explicit_fields(opts, given)
    if opts.dry_run:  # fetch's plan only: nothing is downloaded, so no later stage has work
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
    try:
        check_before_starting(work, opts, explicit)
    except UsageError as e:
        out.stopped_at, out.error = "fetch", str(e)
        return out
    filter_given = {k for k in explicit if k in ("workers", "force", "quiet")}
    if "filter_config" in explicit:
        filter_given.add("config")
    if "overrides" in explicit:
        filter_given.add("overrides")
    steps = [("fetch", lambda: fetch_work(work, opts.fetch_options(), explicit)),
             ("detect", lambda: detect_work(work, opts.detect_options(), explicit)),
             ("filter", lambda: filter_work(work, opts.filter_options(), filter_given)),
             ("align", lambda: align_work(work, opts.align_options(work), explicit)),
             ("report", lambda: report(work, ReportOptions())),
             ("review", lambda: review(work, ReviewOptions(workers=opts.workers, quiet=opts.quiet)))]
    if opts.no_review:
        steps.pop()
    for name, step in steps:
        try:
            s = step()
        except ApiGone as e:  # the rest of the pipeline still runs from what is on disk
            s = StageSummary("fetch", failed=1, notes=[f"fetch: skipped: {e}"],
                             lines=["fetch: skipped (API not reachable); the other stages run "
                                    "from what is on disk"])
        except UsageError as e:
            out.stopped_at, out.error = name, str(e)
            break
        out.stages[name] = s
        if echo is not None and name not in ("report", "review"):
            echo(s)
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
    return out


def _fetched_any(s) -> bool:
    return bool(s is not None and sum((s.counts or {}).values()))


def check_before_starting(work: Work, opts: RunOptions, explicit: set) -> None:
    """Catch a missing selection, a bad filter config or missing models now, not after
    the downloads."""
    from ..stages.recipe import use_fetch, use_table
    use_fetch(work, opts.fetch_options(), explicit, save=False)
    if opts.filter_config:
        from ..stages.filter import config_from_mapping, load_toml_config
        config_from_mapping(load_toml_config(opts.filter_config), where=opts.filter_config)
    from ..infra.models import resolve_models
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
        body = f"{st.counts}  " if st.counts else ""
        lines.append(f"  {st.name:<7} {state:<13} {body}-> {st.where}")
    if s.failed_stages:
        lines.append(f"some items failed in {', '.join(s.failed_stages)} (exit status 1): each "
                     "is recorded with its reason in that stage's files; rerunning retries "
                     "what can be retried")
    return lines


def _counts(c, unit: str) -> str:
    if not c:
        return ""
    from ..infra.executors import count_items
    return f"{sum(c.values())} {unit}: {count_items(c)}"


# ---- CLI ------------------------------------------------------------------------------------

def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..stages import detect as det
    from .commands import fetch as fetch_cmd
    from .flags import add_executor, nonneg_int, positive_int
    R = RunOptions
    fetch_cmd.configure_parser(p)  # every fetch flag, with fetch's meaning and defaults
    # run's --workers (processes for detect/filter/align) replaces fetch's (threads)
    p.conflict_handler = "resolve"
    g = p.add_argument_group("workers (run)")
    g.add_argument("--workers", type=positive_int, default=default_of(R, "workers"), metavar="N",
                   help="worker processes for detect, filter and align (default: cores = "
                        "%(default)s); output is identical for any N")
    g.add_argument("--fetch-workers", type=positive_int, default=default_of(R, "fetch_workers"),
                   metavar="N",
                   help="download threads of fetch, sharing one --rate (default: %(default)s)")
    g = p.add_argument_group("detect (see `metfaces-build detect --help`)")
    g.add_argument("--detector", choices=det.DETECTORS, default=default_of(R, "detector"),
                   help="hog (default, fast), cnn (better recall, ~20x slower) or cascade")
    g.add_argument("--upsample", type=nonneg_int, default=default_of(R, "upsample"),
                   metavar="N", help="HOG upsampling (default: %(default)s)")
    g.add_argument("--cnn-upsample", type=nonneg_int, default=default_of(R, "cnn_upsample"),
                   metavar="N", help="CNN upsampling (default: %(default)s)")
    g.add_argument("--cascade-score", type=float, default=default_of(R, "cascade_score"),
                   metavar="S", help="cascade: CNN when HOG's best score < S (default: %(default)s)")
    g.add_argument("--max-side", type=positive_int, default=default_of(R, "max_side"),
                   metavar="PX", help="detect on images shrunk to at most PX a side "
                                      "(default: %(default)s)")
    g.add_argument("--min-face", type=nonneg_int, default=default_of(R, "min_face"), metavar="PX",
                   help="smallest crop side worth finding (default: %(default)s; 0: any)")
    g.add_argument("--models-dir", metavar="DIR", help="folder with the dlib .dat files")
    add_executor(p)  # detect and align; fetch and filter run here
    g = p.add_argument_group("filter (see `metfaces-build filter --help`)")
    g.add_argument("--filter-config", metavar="TOML",
                   help="filter thresholds from a TOML file ([filter] table); default: the "
                        "filter stage's defaults")
    g.add_argument("--overrides", metavar="JSON", default=None,
                   help="a person's keep/reject decisions (the review page's overrides.json) "
                        "handed to filter, which keeps them in DIR/overrides.json for later runs")
    g = p.add_argument_group("review")
    g.add_argument("--no-review", action="store_true",
                   help="do not write report/review.html and its thumbnails (`metfaces-build "
                        "review --work DIR` writes them later)")


def main(args) -> int:
    from .flags import print_summary  # noqa: F811
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
