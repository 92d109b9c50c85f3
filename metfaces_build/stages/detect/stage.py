"""The detect stage's driver: inputs, then plan (what the journal already holds),
execute (the pool, each result appended to the journal), retire (compact the journal,
rebuild faces.json) and summarise."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from ...core.errors import UsageError
from ...core.status import DETECT_DONE
from ...infra.executors import Progress, make_executor, summarize
from ...infra.files import JsonlAppender, atomic_write_json, read_json_or_none, write_jsonl
from ...infra.lock import locked
from ...infra.models import ModelPaths, resolve_models
from ...infra.stage import StageSummary
from ...infra.workdir import JournalDamage, Work, as_work, latest_records, status_counts
from .journal import face_changes, reusable_detections, with_version
from .options import DetectOptions
from .tasks import DetectResult, detect_task, init_worker, prefetch, tasks_and_damage, tasks_from_folder


@dataclass
class DetectSummary(StageSummary):
    """detect's outcome: `counts` by image status, `faces` found, `reused` images;
    `detector_calls` images decoded and run through the detector now; `dropped` images
    no longer in the input (withdrawn); `changes` faces added / removed / moved against
    the previous run, with `changed_objects` the obj_ids concerned."""
    faces: int = 0
    reused: int = 0
    detector_calls: int = 0
    dropped: int = 0
    held: int = 0  # images kept as they were: a damaged objects.jsonl line may describe them
    changes: dict = field(default_factory=dict)
    changed_objects: list = field(default_factory=list)


@dataclass(frozen=True)
class StagePaths:
    """Where a run writes: faces.json (`out`) and its journal."""
    out: Path
    journal: Path
    damage: Optional[JournalDamage] = None  # damaged objects.jsonl lines (work directory)

    @property
    def path(self) -> Path:
        """The folder written to: the one `locked` locks."""
        return self.out.parent


def stage_inputs(work: Optional[Work], opts: DetectOptions):
    """(tasks, paths) from a work directory or opts.images/out; UsageError on a bad
    combination."""
    if opts.images:
        if work is not None:
            raise UsageError("give either --work or --images, not both")
        if not opts.out:
            raise UsageError("--images needs --out FILE (where to write faces.json)")
        out = Path(opts.out)
        tasks = tasks_from_folder(Path(opts.images))
        return tasks, StagePaths(out, out.with_name(out.stem + ".detect.jsonl"))
    if opts.out:
        raise UsageError("--out goes with --images; with --work the output is DIR/faces.json")
    work = as_work(work)
    if not work.path.is_dir():
        raise UsageError(f"work directory not found: {work.path} (run `metfaces-build fetch` "
                         "first, or use --images DIR --out FILE)")
    tasks, damage = tasks_and_damage(work)
    return tasks, StagePaths(work.faces_json, work.detect_journal, damage)


def detect(work: Optional[Work], opts: DetectOptions = DetectOptions()) -> DetectSummary:
    """Detect faces in every fetched original of `work` (or in `opts.images`), write
    faces.json and the journal, and return counts by image status. Resumes: images
    already done with the same settings are reused unless `opts.force`. One writer per
    work directory (a second run fails at once, naming the holder)."""
    tasks, paths = stage_inputs(work, opts)
    return _detect_locked(paths, opts, tasks)


@locked("detect")  # the folder faces.json is written to (StagePaths.path)
def _detect_locked(paths: StagePaths, opts: DetectOptions, tasks: list) -> DetectSummary:
    t0 = time.monotonic()
    plan = plan_run(opts, tasks, paths)
    results = execute(plan)
    ordered = retire(plan, results)
    return summarise(plan, results, ordered, time.monotonic() - t0)


@dataclass
class DetectPlan:
    """What one run does, decided before any image is read."""
    opts: DetectOptions
    tasks: list
    paths: StagePaths
    model_paths: ModelPaths
    before: dict  # the previous run's journal lines by source_path, for `changes`
    done: dict    # lines reused (same settings, same content), brought up to date
    held: dict    # lines of objects a damaged objects.jsonl line may describe: kept
    todo: list    # tasks to detect now (absolute paths)


def plan_run(opts: DetectOptions, tasks: list, paths: StagePaths) -> DetectPlan:
    """The models to load, the journal lines to reuse or hold, the images to detect."""
    model_paths = resolve_models(opts.models_dir, need_cnn=opts.detector != "hog")
    model_paths = replace(model_paths, predictor=model_paths.predictor.absolute(),
                          cnn=model_paths.cnn and model_paths.cnn.absolute())
    before = latest_records(paths.journal, "source_path")
    done = {} if opts.force else reusable_detections(
        before.values(), {t.source_path: t.version for t in tasks}, opts.signature())
    by_path = {t.source_path: t for t in tasks}
    done = {sp: with_version(d, by_path[sp]) for sp, d in done.items()}
    held = {sp: d for sp, d in before.items() if sp not in by_path and paths.damage
            and paths.damage.may_hide(d.get("obj_id"))}
    # absolute paths: a Dask worker's current directory is not ours
    todo = [replace(t, path=os.path.abspath(t.path)) for t in tasks if t.source_path not in done]
    return DetectPlan(opts, tasks, paths, model_paths, before, done, held, todo)


def execute(plan: DetectPlan) -> dict:
    """Detect in every image to do, appending each result to the journal as it comes;
    returns every line of this run by source_path (reused ones included)."""
    opts, todo = plan.opts, plan.todo
    serial = opts.executor == "local" and min(opts.workers, len(todo)) <= 1
    if serial and todo:  # decode one image ahead; the first while the models load
        todo = [replace(t, next_path=n.path) for t, n in zip(todo, todo[1:])] + todo[-1:]
        prefetch(todo[0].path, opts.max_side, opts.max_pixels)
    results = dict(plan.done)
    n_faces = sum(len(r["faces"]) for r in results.values())
    executor = make_executor(opts.executor, min(opts.workers, max(1, len(todo))),
                             opts.scheduler, init_worker, (plan.model_paths, opts, opts.max_pixels))
    with Progress(len(todo), "detect", opts.quiet, unit="img") as prog, \
            JsonlAppender(plan.paths.journal) as journal:
        for res in executor.imap(detect_task, todo):
            line = res.to_json()  # asdict copies every face record: once per result
            journal.write(line)
            results[res.source_path] = line
            _warn(prog, res)
            n_faces += len(res.faces)
            prog.update(faces=n_faces)
    return results


def retire(plan: DetectPlan, results: dict) -> list:
    """Compact the journal (one line per image, in task order, held lines last) and
    rebuild faces.json from it; nothing is rewritten when nothing changed. Returns the
    lines; `results` gains the held ones."""
    ordered = [results[t.source_path] for t in plan.tasks] + list(plan.held.values())
    results.update(plan.held)
    faces = [f for r in ordered for f in r.get("faces") or []]
    out = plan.paths.out
    if ordered != list(plan.before.values()) or not out.exists():  # no change: no rewrite
        write_jsonl(plan.paths.journal, ordered)
        atomic_write_json(out, faces)
    elif read_json_or_none(out) != faces:
        atomic_write_json(out, faces)
    return ordered


def summarise(plan: DetectPlan, results: dict, ordered: list, elapsed: float) -> DetectSummary:
    """Counts by status, detector calls, images dropped or held, faces changed."""
    paths = plan.paths
    s = _summary(ordered, len(plan.done), paths, elapsed)
    s.detector_calls = sum(1 for t in plan.todo
                           if results[t.source_path].get("status") in DETECT_DONE)
    s.dropped = len(set(plan.before) - set(results))
    if paths.damage:
        s.notes += paths.damage.notes()
        s.held = len(plan.held)
        s.failed += len(paths.damage.lines)
        s.lines.append(f"detect: {len(plan.held)} image(s) kept as they were: objects.jsonl has "
                       f"{len(paths.damage.lines)} damaged line(s) (see the messages above)")
    s.changes, s.changed_objects = face_changes(plan.before.values(), ordered)
    if plan.before and (any(s.changes.values()) or s.dropped):  # an update, not a first run
        s.lines.append("detect changes: " + ", ".join(f"{v} faces {k}" for k, v in s.changes.items())
                       + (f"; {s.dropped} images no longer in the input" if s.dropped else ""))
    return s


def _warn(prog, res: DetectResult) -> None:
    if res.exif_orientation not in (1, 0):
        prog.write(f"warning: {res.source_path}: EXIF orientation {res.exif_orientation}; "
                   "coordinates are in the stored (untransposed) frame, as the aligner loads it")
    if res.status not in DETECT_DONE:
        prog.write(f"{res.status}: {res.source_path}: {res.reason}")


def _summary(ordered: list, reused: int, paths: StagePaths, elapsed: float) -> DetectSummary:
    counts = dict(status_counts(ordered))
    n_faces = sum(len(r.get("faces") or []) for r in ordered)
    cnn = sum(1 for r in ordered if r.get("cnn_ran"))
    rotated = sum(1 for r in ordered if r.get("exif_orientation", 1) not in (0, 1))
    line = (summarize(counts, "detect") + f"; {n_faces} faces -> {paths.out}"
            + (f"; CNN ran on {cnn} images" if cnn else "")
            + (f"; {rotated} with EXIF orientation != 1 (not transposed)" if rotated else "")
            + (f"; {reused} images reused from {paths.journal.name}" if reused else ""))
    failed = sum(v for k, v in counts.items() if k not in DETECT_DONE)
    return DetectSummary(stage="detect", counts=counts,
                         outputs={"faces": paths.out, "journal": paths.journal},
                         elapsed=elapsed, failed=failed, lines=[line], faces=n_faces,
                         reused=reused)
