"""Run the whole pipeline in one work directory: fetch -> detect -> filter -> align -> report.

Each stage is the same code as its own subcommand, run with the flags below, so a
`run` leaves exactly the files the five commands would (see `metfaces-build COMMAND
--help`):

  fetch    objects.jsonl, api/, originals/         (every fetch flag is accepted here)
  detect   faces.json, detect.jsonl                (--detector, --max-side, ...)
  filter   filtered.json, rejected.jsonl, filter_summary.json   (--filter-config)
  align    images/{obj_id}-{face_idx:02d}.png, images/aligned.json (MetFaces defaults)
  report   report/report.md, report.html, stats.json, contact sheets

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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import UsageError
from ..infra.files import read_json_or_none

# run's flags handed to each stage under the same name (besides fetch, which gets all of
# its own flags); a stage only receives the ones its parser defines
COMMON = ("workers", "force", "quiet")
EXECUTOR = ("executor", "scheduler")
DETECT_FLAGS = COMMON + EXECUTOR + ("detector", "upsample", "cnn_upsample", "cascade_score",
                                    "max_side", "min_face", "models_dir", "max_pixels")
FILTER_FLAGS = COMMON
ALIGN_FLAGS = COMMON + EXECUTOR + ("max_pixels",)


# ---- running one stage -------------------------------------------------------------------

def run_stage(name: str, argv=(), values: Optional[dict] = None) -> int:
    """Run subcommand `name` as `metfaces-build NAME ARGV...` would, then with `values`
    set on its parsed arguments (only those its parser defines): stages are chained through
    their own parsers and `run` functions, so defaults and checks live in one place.
    Returns the exit code; a UsageError is printed and becomes 2."""
    from .cli import build_parser
    try:
        ns = build_parser().parse_args([name, *map(str, argv)])
        for k, v in (values or {}).items():
            if hasattr(ns, k) and not k.startswith("_") and k != "command":
                setattr(ns, k, v)
        return int(ns._run(ns))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _pick(args, names) -> dict:
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


# ---- CLI ------------------------------------------------------------------------------------

def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..stages import detect, fetch
    from .cli import add_executor, nonneg_int, positive_int
    from ..infra.executors import default_workers
    fetch.configure_parser(p)  # every fetch flag, with fetch's meaning and defaults
    # run's --workers (processes for detect/filter/align) replaces fetch's (threads)
    p.conflict_handler = "resolve"
    g = p.add_argument_group("workers (run)")
    g.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                   help="worker processes for detect, filter and align (default: cores = "
                        "%(default)s); output is identical for any N")
    g.add_argument("--fetch-workers", type=positive_int, default=4, metavar="N",
                   help="download threads of fetch, sharing one --rate (default: %(default)s)")
    g = p.add_argument_group("detect (see `metfaces-build detect --help`)")
    g.add_argument("--detector", choices=detect.DETECTORS, default="hog",
                   help="hog (default, fast), cnn (better recall, ~20x slower) or cascade")
    g.add_argument("--upsample", type=nonneg_int, default=detect.DEFAULT_UPSAMPLE,
                   metavar="N", help="HOG upsampling (default: %(default)s)")
    g.add_argument("--cnn-upsample", type=nonneg_int, default=detect.DEFAULT_CNN_UPSAMPLE,
                   metavar="N", help="CNN upsampling (default: %(default)s)")
    g.add_argument("--cascade-score", type=float, default=detect.DEFAULT_CASCADE_SCORE,
                   metavar="S", help="cascade: CNN when HOG's best score < S (default: %(default)s)")
    g.add_argument("--max-side", type=positive_int, default=detect.DEFAULT_MAX_SIDE,
                   metavar="PX", help="detect on images shrunk to at most PX a side "
                                      "(default: %(default)s)")
    g.add_argument("--min-face", type=nonneg_int, default=detect.DEFAULT_MIN_FACE, metavar="PX",
                   help="smallest crop side worth finding (default: %(default)s; 0: any)")
    g.add_argument("--models-dir", metavar="DIR", help="folder with the dlib .dat files")
    add_executor(p)  # detect and align; fetch and filter run here
    g = p.add_argument_group("filter (see `metfaces-build filter --help`)")
    g.add_argument("--filter-config", metavar="TOML",
                   help="filter thresholds from a TOML file ([filter] table); default: the "
                        "filter stage's defaults")


def run(args) -> int:
    work = Path(args.work)
    _check_before_starting(args)

    results: list = []
    fetch_values = {k: v for k, v in vars(args).items() if k not in ("workers", "fetch_workers")}
    fetch_values["workers"] = args.fetch_workers
    filter_config = ["--config", args.filter_config] if args.filter_config else []
    steps = [
        ("fetch", [], fetch_values),
        ("detect", ["--work", work], _pick(args, DETECT_FLAGS)),
        ("filter", ["--work", work, *filter_config], _pick(args, FILTER_FLAGS)),
        ("align", ["--json", work / "filtered.json", "--source-images", work,
                   "--output-dir", work / "images"], _pick(args, ALIGN_FLAGS)),
    ]
    for name, argv, values in steps:
        rc = run_stage(name, argv, values)
        results.append((name, rc))
        if rc == 2:
            if len(results) > 1:
                print_summary(work, results)
                print(f"run: stopped at {name} (usage error above); the stages before it "
                      "are done and kept: fix the problem and rerun the same command",
                      file=sys.stderr)
            return 2
    from ..stages.report import write_report
    rep = write_report(work, source_images=work)
    results.append(("report", 0))
    summary = print_summary(work, results, report=rep.markdown)
    return 1 if summary.failed else 0


def _check_before_starting(args) -> None:
    """Catch a bad filter config or missing models now, not after the downloads."""
    if args.filter_config:
        from ..stages.filter import config_from_mapping, load_toml_config
        config_from_mapping(load_toml_config(args.filter_config), where=args.filter_config)
    from ..infra.models import resolve_models
    resolve_models(args.models_dir, need_cnn=args.detector != "hog")


# ---- the summary ----------------------------------------------------------------------------

@dataclass
class StageSummary:
    name: str
    exit_code: Optional[int]  # None: not reached
    counts: str = ""
    where: str = ""


@dataclass
class RunSummary:
    work: Path
    stages: list = field(default_factory=list)

    @property
    def failed(self) -> list:
        return [s.name for s in self.stages if s.exit_code == 1]


def summarize_work(work: Path, results: list, report: Optional[Path] = None) -> RunSummary:
    """Counts per stage from the files in `work` (so a resumed run reports the whole
    directory, not just the items this invocation touched)."""
    from ..infra.files import read_jsonl
    codes = dict(results)
    out = RunSummary(work)

    objects = Counter(r.get("status", "?") for r in _latest(read_jsonl(work / "objects.jsonl"), "id"))
    out.stages.append(StageSummary("fetch", codes.get("fetch"), _counts(objects, "objects"),
                                   "objects.jsonl, api/, originals/"))

    images = _latest(read_jsonl(work / "detect.jsonl"), "source_path")
    det = Counter(r.get("status", "?") for r in images)
    n_faces = sum(len(r.get("faces") or []) for r in images)
    out.stages.append(StageSummary("detect", codes.get("detect"),
                                   _counts(det, "images") + (f"; {n_faces} faces" if images else ""),
                                   "faces.json (journal: detect.jsonl)"))

    fs = read_json_or_none(work / "filter_summary.json")
    filt = ""
    if isinstance(fs, dict):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((fs.get("reasons") or {}).items(),
                                                           key=lambda kv: (-kv[1], kv[0])))
        filt = f"{fs.get('kept', 0)} kept, {fs.get('rejected', 0)} rejected" + \
               (f" ({reasons})" if reasons else "")
        if fs.get("image_problems"):
            filt += f"; {len(fs['image_problems'])} unusable source image(s)"
    out.stages.append(StageSummary("filter", codes.get("filter"), filt,
                                   "filtered.json, rejected.jsonl"))

    manifest = read_json_or_none(work / "images" / "aligned.json")
    al = Counter(e.get("status", "?") for e in manifest if isinstance(e, dict)) \
        if isinstance(manifest, list) else Counter()
    out.stages.append(StageSummary("align", codes.get("align"), _counts(al, "faces"),
                                   "images/ (manifest: images/aligned.json)"))
    out.stages.append(StageSummary("report", codes.get("report"), "",
                                   _rel(report, work) if report else "report/"))
    return out


def print_summary(work: Path, results: list, report: Optional[Path] = None) -> RunSummary:
    s = summarize_work(work, results, report)
    print(f"\nrun summary (work directory {work}):")
    for st in s.stages:
        state = {None: "not run", 0: "ok", 1: "items failed", 2: "usage error"}.get(
            st.exit_code, f"exit {st.exit_code}")
        body = f"{st.counts}  " if st.counts else ""
        print(f"  {st.name:<7} {state:<13} {body}-> {st.where}")
    if s.failed:
        print(f"some items failed in {', '.join(s.failed)} (exit status 1): each is recorded "
              f"with its reason in that stage's files; rerunning retries what can be retried")
    return s


def _latest(rows, key: str) -> list:
    """Last row per key (journals may hold several lines per item until compacted)."""
    latest: dict = {}
    for r in rows:
        if key in r:
            latest[r[key]] = r
    return list(latest.values())


def _counts(c: Counter, unit: str) -> str:
    if not c:
        return ""
    items = sorted(c.items(), key=lambda kv: (kv[0] != "ok", -kv[1], kv[0]))
    return f"{sum(c.values())} {unit}: " + ", ".join(f"{v} {k}" for k, v in items)




def _rel(path: Path, work: Path) -> str:
    try:
        return str(Path(path).relative_to(work))
    except ValueError:
        return str(path)
