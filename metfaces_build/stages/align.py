"""align: crop aligned faces from face_spec landmarks, reproducing NVIDIA's MetFaces pixels.

Given stored landmarks (NVIDIA's metfaces.json) and the original images, the crops are
identical, pixel for pixel, to those of NVIDIA's metfaces.py (with the same numpy, scipy and
Pillow). The arithmetic is the reference's; the speed comes from filtering only the band
of the padded image whose pixels change (the rest stays uint8; the median comes from a
histogram), the QUAD warp and the Lanczos downscale in numba with Pillow's arithmetic,
fused so the 4096-pixel warp is never stored (core/exactwarp.py, core/exactresize.py),
decoding each source once for all its faces, and a process pool. Random shifts are
pre-drawn in JSON order, so any --workers gives the same output.

Output: OUTPUT_DIR/{obj_id}-{face_idx:02d}.png and OUTPUT_DIR/aligned.json, a manifest
with, per face, the input record, output file, file md5, pixel md5, status and reason, and
the numpy/scipy/Pillow versions. A rerun skips crops that exist and match the manifest.

Updates: a crop is re-made only when what decides its pixels changed (obj_id, face_idx,
source_path, face_spec, the source's content key source_sha256/source_md5, or the
parameters); a record whose other fields changed (a corrected title) gets its manifest
entry updated without rewriting the crop. A re-made entry says what it `supersedes` and
why. Crops of faces no longer in --json are deleted and stay in the manifest with status
`superseded` (re-detected, or now rejected by the filter or a person) or `withdrawn` (the
object has no face left and its source image is gone, as fetch leaves an object withdrawn
at the Met) and a reason; neither counts as a failure, and export skips them. Each entry
records the `inputs` (--json files, relative to OUTPUT_DIR) whose face it is: align deletes
only crops it made for faces that left every such input, so `align --json subset.json`
into the same folder leaves the crops of the other faces alone.

examples:
  # NVIDIA's MetFaces (1024x1024, rotated) from metfaces.json and unprocessed/ images
  metfaces-build align --json metfaces.json --source-images . --output-dir images
  # MetFaces-U (unaligned): random shifts, retried until inside the image, no rotation
  metfaces-build align --json metfaces.json --source-images . --output-dir images-u \\
      --random-shift 0.2 --retry-crops --no-rotation
  # our own detections, in a work directory: its filtered.json -> its images/
  metfaces-build align --work metfaces-work
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from ..core.errors import UsageError
from ..core.records import shared_dict, shared_keys
from ..core.status import ALIGN_RETIRED, BAD_PATH, BAD_RECORD, OK
from ..infra.executors import Progress, library_versions, make_executor, summarize
from ..infra.faces import load_faces
from ..infra.files import remove_stale_temps, safe_join
from ..infra.images import DEFAULT_MAX_PIXELS
from ..infra.jsonstream import atomic_write_json_list
from ..infra.lock import locked
from ..infra.readers import previous_aligned
from ..infra.stage import (StageSummary, convert, executor_opt, force_opt, opt, quiet_opt,
                           scheduler_opt, skip_bad_opt, workers_opt)
from ..infra.workdir import ALIGN_JOURNAL as JOURNAL, MANIFEST, status_counts
# the crop pipeline and the manifest logic live beside this driver; their public names
# are importable from here as before (tools, status and the tests use them)
from .align_crop import (PNG_LEVEL, AlignParams, AlignTask, FaceJob,  # noqa: F401
                         FaceResult, align_face, draw_shifts, process_image, warm_up,
                         _estimated_cost, _header_size)
from .align_manifest import (PIXEL_KEYS, claimed_by, input_reference,  # noqa: F401
                             pixel_record, retire_missing, still_valid,
                             _superseded_because)


# ---- the stage -----------------------------------------------------------------------

ALIGNMENT = "alignment (NVIDIA's flags; the defaults give MetFaces)"


IO = "inputs and outputs (--work DIR, or NVIDIA's three flags)"


@dataclass(frozen=True)
class AlignOptions:
    """Options of the align stage (names and defaults of its CLI flags; NVIDIA's flags
    with MetFaces' defaults, which are AlignParams')."""
    json: str = opt(help="face list (metfaces.json, filtered.json)",
                    metavar="FILE", group=IO)
    source_images: str = opt(help="folder each source_path is relative to", metavar="DIR",
                             group=IO)
    output_dir: str = opt(help="where the crops and aligned.json go", metavar="DIR", group=IO)
    random_shift: float = opt(AlignParams.random_shift, "shift crop centres (MetFaces-U: 0.2)",
                              metavar="S", limits=">= 0", group=ALIGNMENT, recipe=True)
    retry_crops: bool = opt(False, "redraw a shift until the crop fits the image",
                            group=ALIGNMENT, recipe=True)
    no_rotation: bool = opt(False, "keep crops axis-aligned (eyes not levelled)",
                            group=ALIGNMENT, recipe=True)
    no_padding: bool = opt(False, "no reflect-padding: black outside the image",
                           group=ALIGNMENT, recipe=True)
    size: int = opt(AlignParams.size, "output side, pixels", metavar="N", limits=">= 1",
                    group=ALIGNMENT, recipe=True)
    supersampling: int = opt(AlignParams.supersampling, "warp at size x S, then downscale",
                             metavar="S", limits=">= 1", group=ALIGNMENT, recipe=True)
    png_level: int = opt(AlignParams.png_level, "zlib level of the PNGs (same pixels)",
                         metavar="N", limits="0..9", recipe=True)
    max_pixels: int = opt(DEFAULT_MAX_PIXELS, "refuse larger sources", metavar="N",
                          limits=">= 1")
    skip_bad: bool = skip_bad_opt("record bad JSON records as failed, go on")
    workers: int = workers_opt()
    force: bool = force_opt()
    quiet: bool = quiet_opt()
    executor: str = executor_opt()
    scheduler: Optional[str] = scheduler_opt()

    @property
    def params(self) -> AlignParams:
        return convert(AlignParams, self, rotate=not self.no_rotation,
                       padding=not self.no_padding)


@dataclass
class AlignSummary(StageSummary):
    """align's outcome: `counts` by face status; `reused` crops already done; `written`
    crops written now (of which `remade` replaced an older crop of the same face);
    `removed` crops deleted because their face left the input; `record_updated` entries
    whose record changed in fields that do not touch the pixels (crop kept)."""
    reused: int = 0
    written: int = 0
    remade: int = 0
    removed: int = 0
    record_updated: int = 0


def align(opts: AlignOptions) -> AlignSummary:
    """Crop every face of `opts.json` from the images under `opts.source_images` into
    `opts.output_dir`, with the manifest aligned.json. Resumes: crops that exist and match
    the manifest are kept unless `opts.force`."""
    t0 = time.monotonic()
    src_root = Path(opts.source_images)
    if not src_root.is_dir():
        raise UsageError(f"--source-images {src_root} is not a folder")
    out_dir = Path(opts.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --output-dir {out_dir}: {e}") from None
    return _align_in(out_dir, opts, src_root, t0)


@locked("align")  # one writer per output folder
def _align_in(out_dir: Path, opts: AlignOptions, src_root: Path, t0: float) -> AlignSummary:
    """The stage, holding the output folder's lock: plan, execute, retire, summarise."""
    loaded = load_faces(opts.json, skip_bad=opts.skip_bad, what="--json", pack=True)
    for f in loaded.faces:  # one copy of each key of the extras (filter values...) per run
        f.extra = shared_keys(f.extra)
    executor = make_executor(opts.executor, opts.workers, opts.scheduler)
    remove_stale_temps(out_dir)
    plan = plan_align(opts, loaded.faces, src_root, out_dir)
    written = execute(plan, executor, out_dir, quiet=opts.quiet)
    tally, removed = retire_and_write(plan, loaded.bad, out_dir, src_root)
    remove_stale_temps(out_dir)
    return summarise(plan, tally, out_dir, elapsed=time.monotonic() - t0, written=written,
                     removed=removed)


# the record of a stored result that is the input face's own (see AlignPlan.results)
INPUT_RECORD = object()


class Reused(NamedTuple):
    """A face whose earlier crop is kept: its entry is read back from plan.previous when
    the manifest is written (`AlignPlan.entry`)."""
    status: str
    record_updated: bool


# ---- plan: what each face needs, decided before any crop is made ------------------

@dataclass
class AlignPlan:
    """A run's plan: the faces settled without work (`results`: an earlier crop reused,
    a bad source path recorded) and the per-image tasks for the rest."""
    faces: list                # FaceRecord in input order (landmarks packed)
    params: AlignParams
    versions: dict             # library versions, recorded in entries made here
    previous: Mapping          # FaceKey -> AlignEntry of earlier runs (infra/readers.py)
    input_ref: str             # how the manifest names --json (align_manifest.input_reference)
    # input index -> manifest entry; entries made in this run hold INPUT_RECORD in place of
    # their record (the face's own, filled in as the manifest is written) and share their
    # params and versions dicts, so a result costs a few hundred bytes, not its record's ~10 KB
    results: dict = field(default_factory=dict)
    supersedes: dict = field(default_factory=dict)  # input index -> what its new crop replaces
    tasks: list = field(default_factory=list)       # AlignTask per source image, longest first
    n_todo: int = 0            # faces in the tasks
    record_updated: int = 0    # reused crops whose record changed outside the pixels
    shared: dict = field(default_factory=dict)      # one copy of each params / versions dict

    def compact(self, entry: dict) -> dict:
        """A new entry as stored until the manifest is written: its record left to the
        input (INPUT_RECORD), its params and versions shared."""
        entry["record"] = INPUT_RECORD
        for k in ("params", "versions"):
            if k in entry:
                entry[k] = shared_dict(self.shared, entry[k])
        return entry

    def entry(self, i: int) -> dict:
        """Face i's manifest entry as written (its record filled in). A reused crop's is
        the earlier entry without its `supersedes`, with the input's record when that
        changed outside the pixels."""
        e = self.results[i]
        if isinstance(e, Reused):
            raw = self.previous[self.faces[i].key].raw
            e = {k: v for k, v in raw.items() if k != "supersedes"}
            if e.get("record") != (rec := self.faces[i].to_json()):
                e["record"] = rec
            return e
        return {**e, "record": self.faces[i].to_json()} if e.get("record") is INPUT_RECORD else e

    @property
    def params_json(self) -> dict:
        return asdict(self.params)


def plan_align(opts: AlignOptions, faces: list, src_root: Path, out_dir: Path) -> AlignPlan:
    """Reuse what earlier runs made, record bad source paths, and group the rest into one
    task per source image (each decoded once), the slowest first."""
    plan = AlignPlan(faces, opts.params, library_versions(), previous_aligned(out_dir),
                     input_reference(opts.json, out_dir))
    resolved, bad_paths = resolve_sources(faces, src_root)
    # full-resolution sizes (headers only): for the random-shift pre-draw and scheduling
    sizes = {sp: _header_size(path, opts.max_pixels) for sp, path in resolved.items()}
    normals = draw_shifts(faces, sizes, plan.params)
    params_json = plan.params_json
    by_source: dict = {}
    for i, f in enumerate(faces):
        job = _plan_face(plan, i, f, normals[i], bad_paths.get(f.source_path), params_json,
                         force=opts.force, out_dir=out_dir)
        if job is not None:
            by_source.setdefault(f.source_path, []).append(job)
    # absolute output dir: a Dask worker's current directory is not ours
    plan.tasks = [AlignTask(resolved[sp], jobs, plan.params, str(out_dir.absolute()),
                            opts.max_pixels) for sp, jobs in by_source.items()]
    # longest first, so one slow padded face does not finish alone at the end
    plan.tasks.sort(key=lambda t: -_estimated_cost(t, sizes, faces))
    plan.n_todo = sum(len(t.jobs) for t in plan.tasks)
    return plan


def resolve_sources(faces: list, src_root: Path) -> tuple:
    """({source_path: absolute path or None}, {source_path: why it is refused})."""
    resolved: dict = {}
    bad_paths: dict = {}
    for f in faces:
        if f.source_path in resolved:
            continue
        try:
            resolved[f.source_path] = str(safe_join(src_root, f.source_path))
        except ValueError as e:
            resolved[f.source_path] = None
            bad_paths[f.source_path] = str(e)
    return resolved, bad_paths


def _plan_face(plan: AlignPlan, i: int, f, normal, bad_path: Optional[str], params_json: dict,
               *, force: bool, out_dir: Path) -> Optional[FaceJob]:
    """Settle face `i` in `plan.results` when it needs no work, else return its job."""
    rec = f.to_json()
    prev = plan.previous.get(f.key)
    if not force and prev is not None and still_valid(prev, rec, params_json, out_dir):
        updated = prev.raw.get("record") != rec
        plan.record_updated += updated
        plan.results[i] = Reused(prev.status, updated)  # the entry stays in plan.previous
        return None
    why = _superseded_because(prev, rec, params_json)
    if why:
        plan.supersedes[i] = {"file_md5": prev.raw.get("file_md5", ""), "reason": why}
    if bad_path is not None:
        plan.results[i] = plan.compact(FaceResult(i, None, f.crop_name, BAD_PATH, bad_path,
                                                  params=params_json,
                                                  versions=plan.versions).to_json())
        return None
    return FaceJob(i, f.crop_name, f.face_spec, None if normal is None else normal.tolist(),
                   rejected=plan.params.random_shift != 0 and normal is None)


# ---- execute: the tasks in the pool, each result journaled as it comes --------------

def execute(plan: AlignPlan, executor, out_dir: Path, *, quiet: bool) -> int:
    """Run the plan's tasks; returns the crops written. Every result goes to the journal
    at once, so a killed run resumes without redoing it."""
    written = 0
    if plan.tasks:
        warm_up(plan.params)  # compile the kernels once, before the pool forks
    with Progress(plan.n_todo, "align", quiet=quiet or not plan.n_todo, unit="face") as prog, \
            open(out_dir / JOURNAL, "a", encoding="utf-8") as journal:
        for batch in executor.imap(process_image, plan.tasks, ordered=False):
            for r in batch:
                journal.write(json.dumps(_settle(plan, r)) + "\n")
                journal.flush()
                if r.status == OK:
                    written += 1
                else:
                    prog.write(f"{r.output}: {r.status}: {r.reason}")
                prog.update(1)
    plan.tasks = []  # the jobs' records: freed before the manifest is built
    return written


def _settle(plan: AlignPlan, r: FaceResult) -> dict:
    """The manifest entry of one result (for the journal), stored compactly in the plan;
    it says whose crop it is (its inputs), in the journal as in the manifest."""
    entry = r.to_json()
    entry["record"] = plan.faces[r.index].to_json()
    if r.status == OK and r.index in plan.supersedes:
        entry["supersedes"] = plan.supersedes[r.index]
    entry["inputs"] = claimed_by(plan.previous.get(plan.faces[r.index].key), plan.input_ref)
    plan.results[r.index] = plan.compact(dict(entry))
    return entry


# ---- retire: faces that left the input, then the manifest -------------------------

def retire_and_write(plan: AlignPlan, bad: list, out_dir: Path, src_root: Path) -> tuple:
    """(the entries' statuses as a Counter, crops deleted): this run's entries in input
    order, the bad records, and the entries of faces no longer in the input
    (align_manifest.retire_missing), written as aligned.json entry by entry (each record
    filled in as it is written: the whole manifest is never in memory), after which the
    journal is no longer needed."""
    retired, removed = retire_missing(plan.previous, plan.faces, out_dir, src_root, plan.input_ref)

    def entries():
        for i, f in enumerate(plan.faces):
            if i in plan.results:
                yield {**plan.entry(i), "inputs": claimed_by(plan.previous.get(f.key),
                                                             plan.input_ref)}
        for b in bad:
            yield {"record": b.raw, "output": "", "status": BAD_RECORD, "reason": b.reason,
                   "file_md5": "", "pixel_md5": "", "params": plan.params_json,
                   "versions": plan.versions, "inputs": [plan.input_ref]}
        yield from retired

    tally: Counter = Counter()

    def counted(items):
        for e in items:
            tally.update(status_counts([e]))
            yield e

    atomic_write_json_list(out_dir / MANIFEST, counted(entries()))
    (out_dir / JOURNAL).unlink(missing_ok=True)
    return tally, removed


# ---- summarise ---------------------------------------------------------------------

def _status(result) -> Optional[str]:
    """The status of a stored result (an entry or a Reused), None for none."""
    return result.status if isinstance(result, Reused) else \
        result.get("status") if isinstance(result, dict) else None


def summarise(plan: AlignPlan, tally: Counter, out_dir: Path, *, elapsed: float, written: int,
              removed: int) -> AlignSummary:
    """The counts by status (`tally`, of the manifest written) and the lines the CLI prints."""
    total = dict(tally)
    skipped = len(plan.faces) - plan.n_todo - total.get(BAD_PATH, 0)
    live = {k: v for k, v in total.items() if k not in ALIGN_RETIRED}
    line = summarize(live, f"align: {sum(live.values())} faces")
    if skipped:
        line += f" ({skipped} already done)"
    remade = sum(1 for i in plan.supersedes if _status(plan.results.get(i)) == OK)
    lines = [line]
    if remade or removed or plan.record_updated:  # an update reached align
        lines.append(f"align changes: {written} crops written ({remade} re-made), {removed} "
                     f"removed, {plan.record_updated} records updated (crop kept); manifest lists "
                     + ", ".join(f"{total.get(k, 0)} {k}" for k in ALIGN_RETIRED))
    lines.append(f"manifest: {out_dir / MANIFEST}")
    failed = sum(n for k, n in total.items() if k not in (OK,) + ALIGN_RETIRED)
    return AlignSummary(stage="align", counts=total,
                        outputs={"crops": out_dir, "manifest": out_dir / MANIFEST},
                        elapsed=elapsed, failed=failed, lines=lines, reused=skipped,
                        written=written, remade=remade, removed=removed,
                        record_updated=plan.record_updated)
